// Package execjob is the local adapter between a job's pipes and an executable (DESIGN.md §5,
// "Executable jobs"): it starts the program with the command line
//
//	PATH PARAMS... INPUT_FLAG in_1 ... OUTPUT_FLAG out_1 ...
//
// where in_k/out_k are absolute paths of named pipes (mode fifo) or numbers of inherited file
// descriptors (mode fd), writes the blocks it is given to the inputs, reads the blocks the
// program writes to its outputs, drains the program's stdout and stderr line by line into a log,
// and stops and reaps the program and everything in its process group.
//
// The package knows nothing of NATS. A worker drives one Process like this:
//
//	p, err := execjob.Start(ctx, spec, logLine)
//	for k := range spec.Outputs { // one reader per output, started before feeding inputs
//		go func() {
//			for buf := []byte(nil); ; {
//				payload, head, err := p.ReadOutput(k, buf[:0])
//				if err == io.EOF { break }          // the program is done with output k
//				if err != nil { fail(err); p.Stop(grace); break } // names job, pipe, byte offset
//				publish(k, head, payload); buf = payload
//			}
//		}()
//	}
//	for each compute block { if err := p.WriteRound(ctx, payloads, heads); err != nil { ... } }
//	p.CloseInputs()                                 // EOF on every input: upstream finished
//	err = p.Wait()                                  // nil: exit status 0; else *ExitError
//
// A WriteRound error that wraps ErrInputClosed means the program no longer reads that input (it
// closed it or exited): stop feeding it and let Wait decide whether the job finished or failed.
package execjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Port is one pipe as the adapter sees it: its id, its codec and its block_count (the number of
// blocks of that input in one compute block; ignored for outputs, whose blocks are read one by
// one).
type Port = job.Port

// Spec describes one executable job instance on a worker.
type Spec struct {
	Pipeline string // pipeline name, for MARVELO_PIPELINE
	JobID    int    // job id, for MARVELO_JOB and messages
	// Name labels the job in messages ("job 6 (reduce.py)"); default: the base name of Exec.Path.
	Name    string
	Worker  string // worker name, for MARVELO_WORKER
	WorkDir string // the job's working directory (unpacked dependencies); must exist
	Exec    pipeline.Exec
	Inputs  []Port
	Outputs []Port
	// Head: every block on every stream is preceded by HeadSize head bytes (big-endian).
	Head     bool
	HeadSize int // 1 to 4; 0 means 1
	// InputSQN: every block written to an input is preceded by its round's SQN (8 bytes,
	// big-endian), while the outputs carry none and answer every round in order. The Python
	// runner uses it to name the round a job failed at. Exec.SQN puts SQNs both ways.
	InputSQN bool
	// Env holds extra "KEY=value" entries added to the worker's environment (they override it;
	// the MARVELO_* variables override them).
	Env []string
	// DefaultCodec holds the pipes whose codec the document does not declare (cbor, the
	// default): an output whose bytes do not fit says so ("pipe 4 is cbor (the default), ...").
	DefaultCodec map[int]bool
	// Grace is the time between SIGTERM and SIGKILL when Start's ctx is cancelled (default
	// DefaultGrace).
	Grace time.Duration
}

// DefaultGrace is the delay between SIGTERM and SIGKILL when a job's context is cancelled.
const DefaultGrace = 2 * time.Second

// StderrTail is the number of stderr lines an ExitError carries.
const StderrTail = 20

// Streams of the log callback.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// fifoRoot is the folder, under the working directory, that holds each process's private folder
// of named pipes.
const fifoRoot = ".marvelo-fifo"

// Label names the job in messages: "job 6 (reduce.py)".
func (s *Spec) Label() string {
	name := s.Name
	if name == "" {
		name = filepath.Base(s.Exec.Path)
	}
	return fmt.Sprintf("job %d (%s)", s.JobID, name)
}

// SpecFromAssignment builds the Spec of an executable job from the worker's assignment: codecs,
// block counts and heads from the pipe bindings. workDir is the job's working directory.
func SpecFromAssignment(a *protocol.Assignment, worker, workDir string) (Spec, error) {
	j := &a.Job
	label := fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
	if j.Exec == nil {
		return Spec{}, fmt.Errorf("%s: not an executable job", label)
	}
	defaults := map[int]bool{}
	ports := func(bs []protocol.PipeBinding, dir string) ([]Port, error) {
		out := make([]Port, len(bs))
		for k, b := range bs {
			c, err := codec.New(b.Codec, b.BlockSize)
			if err != nil {
				return nil, fmt.Errorf("%s: %s pipe %d: %w", label, dir, b.ID, err)
			}
			out[k] = Port{Pipe: b.ID, Codec: c, BlockCount: max(b.BlockCount, 1)}
			if b.CodecDefault {
				defaults[b.ID] = true
			}
		}
		return out, nil
	}
	ins, err := ports(a.Inputs, "input")
	if err != nil {
		return Spec{}, err
	}
	outs, err := ports(a.Outputs, "output")
	if err != nil {
		return Spec{}, err
	}
	return Spec{
		Pipeline: a.Pipeline, JobID: j.ID, Name: j.DisplayName(), Worker: worker, WorkDir: workDir,
		Exec: *j.Exec, Inputs: ins, Outputs: outs, Head: j.Head, HeadSize: j.EffectiveHeadSize(), DefaultCodec: defaults,
	}, nil
}

// Errors a Process reports; match them with errors.Is.
var (
	// ErrInputClosed: the program no longer reads an input (it closed it, or exited).
	ErrInputClosed = errors.New("the program no longer reads this input (it closed it or exited)")
	// ErrStopped: the adapter stopped the program (Stop or a cancelled context).
	ErrStopped = errors.New("the job was stopped")
)

// ExitError is Wait's error for a program that did not exit with status 0.
type ExitError struct {
	Job     string   // "job 6 (reduce.py)"
	Code    int      // exit status, -1 when killed by a signal
	Signal  string   // the signal that killed it ("killed", "terminated"), if any
	Stopped bool     // the adapter stopped it (Stop or a cancelled context)
	Stderr  []string // the last lines the program wrote to stderr (at most StderrTail)
}

func (e *ExitError) Error() string {
	var b strings.Builder
	b.WriteString(e.Job)
	if e.Signal != "" {
		b.WriteString(": killed by signal: " + e.Signal)
	} else {
		b.WriteString(": exit status " + strconv.Itoa(e.Code))
	}
	if e.Stopped {
		b.WriteString(" (stopped by the worker)")
	}
	if len(e.Stderr) > 0 {
		fmt.Fprintf(&b, "; last %d lines of stderr:", len(e.Stderr))
		for _, l := range e.Stderr {
			b.WriteString("\n  " + l)
		}
	}
	return b.String()
}

// Process is one running executable. Its methods may be called from different goroutines:
// WriteRound and CloseInputs from one (the job's), ReadOutput(k) from one per output, Wait, Stop
// and the accessors from any.
type Process struct {
	label    string
	head     bool
	headSize int
	sqnIn    bool // each input block is preceded by its SQN ("exec": {"sqn": true}, InputSQN)
	sqnOut   bool // each output block is preceded by its SQN ("exec": {"sqn": true})
	grace    time.Duration
	args     []string
	cmd      *exec.Cmd
	pid      int
	fifoDir  string // the private folder of named pipes, "" in fd mode

	ins   []*inStream
	outs  []*outStream
	opens *inputOpens // fifo mode: when the program opens its inputs

	watchMu sync.Mutex
	cw      ctxWatch // the context of the last WriteRound

	logs *logSink

	// sigMu orders signals against the reaping: signals go to the process group only while its
	// leader is not yet reaped, so the group id cannot belong to someone else.
	sigMu    sync.Mutex
	reaped   bool
	stopping atomic.Bool // Stop was called
	signaled atomic.Bool // Stop signalled the program before it exited

	exited    chan struct{} // the program (the group leader) has exited and been reaped
	done      chan struct{} // exited, logs drained, folders removed: Wait returns
	waitErr   error
	stopAfter func() bool // unregisters the ctx cancellation hook
}

// Start starts the program of s. ctx bounds its life: when ctx is cancelled the program is
// stopped as by Stop(s.Grace). log receives every line the program writes to stdout and stderr,
// as it comes (stream is Stdout or Stderr); calls are serialised; nil discards them.
func Start(ctx context.Context, s Spec, log func(stream, line string)) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	label := s.Label()
	if s.HeadSize == 0 {
		s.HeadSize = 1
	}
	if s.Head && (s.HeadSize < 1 || s.HeadSize > codec.MaxHeadSize) {
		return nil, fmt.Errorf("%s: head_size %d out of range 1..%d", label, s.HeadSize, codec.MaxHeadSize)
	}
	if s.Grace <= 0 {
		s.Grace = DefaultGrace
	}
	if err := checkPorts(label, s.Inputs, s.Outputs); err != nil {
		return nil, err
	}
	if !supported {
		return nil, fmt.Errorf("%s: executable jobs need Linux", label)
	}
	wd := s.WorkDir
	if wd == "" {
		wd = "."
	}
	wd, err := filepath.Abs(wd)
	if err != nil {
		return nil, fmt.Errorf("%s: working directory %s: %w", label, s.WorkDir, err)
	}
	if fi, err := os.Stat(wd); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, fmt.Errorf("%s: working directory %s: %w", label, wd, err)
	}
	bin, err := resolve(s.Exec.Path, wd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	mode := s.Exec.EffectiveMode()
	if mode != pipeline.ModeFIFO && mode != pipeline.ModeFD {
		return nil, fmt.Errorf("%s: exec.mode %q is not one of %s, %s", label, mode, pipeline.ModeFIFO, pipeline.ModeFD)
	}

	p := &Process{
		label: label, head: s.Head, headSize: s.HeadSize, sqnIn: s.Exec.SQN || s.InputSQN, sqnOut: s.Exec.SQN, grace: s.Grace,
		exited: make(chan struct{}), done: make(chan struct{}),
	}
	var child []*os.File // the program's ends, closed here once it has started
	ok := false
	defer func() {
		for _, f := range child {
			f.Close()
		}
		if !ok {
			p.release()
		}
	}()
	var inArgs, outArgs []string
	if mode == pipeline.ModeFIFO {
		inArgs, outArgs, err = p.openFIFOs(wd, s)
	} else {
		inArgs, outArgs, child, err = p.openPipes(s)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	for _, o := range p.outs {
		o.defaultCodec = s.DefaultCodec[o.pipe]
	}

	args := append([]string{s.Exec.Path}, s.Exec.Params...)
	for _, a := range inArgs {
		args = append(args, s.Exec.EffectiveInputFlag(), a)
	}
	for _, a := range outArgs {
		args = append(args, s.Exec.EffectiveOutputFlag(), a)
	}
	p.args = args

	// A Python program's print() reaches the log when it prints, in its order with what it
	// writes to stderr (a pipe would make its stdout block-buffered); the worker's own setting
	// and the spec's win.
	env := append([]string{"PYTHONUNBUFFERED=1"}, os.Environ()...)
	env = append(env, s.Env...)
	env = append(env,
		"MARVELO_PIPELINE="+s.Pipeline,
		"MARVELO_JOB="+strconv.Itoa(s.JobID),
		"MARVELO_WORKER="+s.Worker,
		"MARVELO_WORKDIR="+wd,
	)
	p.logs, err = newLogSink(log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	// A program file that was just written (unpacked dependencies) can be briefly "busy": a
	// process forked elsewhere in the worker meanwhile may still hold it open for writing until
	// it execs. That passes; other errors do not.
	for attempt := 0; ; attempt++ {
		p.cmd = &exec.Cmd{
			Path: bin, Args: args, Dir: wd, Env: env,
			Stdout: p.logs.stdoutW, Stderr: p.logs.stderrW,
			ExtraFiles:  child,
			SysProcAttr: sysProcAttr(),
		}
		err = p.cmd.Start()
		if err == nil || !errors.Is(err, errTextBusy) || attempt == 20 {
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	if err != nil {
		p.logs.abort()
		return nil, fmt.Errorf("%s: start %s: %w", label, s.Exec.Path, err)
	}
	ok = true
	p.pid = p.cmd.Process.Pid
	p.logs.start()
	p.stopAfter = context.AfterFunc(ctx, func() { p.Stop(p.grace) })
	if p.opens != nil {
		go p.opens.run() // stopped by the waiter
	}
	go p.waiter()
	return p, nil
}

func checkPorts(label string, ins, outs []Port) error {
	seen := map[string]bool{}
	for _, side := range []struct {
		dir   string
		ports []Port
	}{{"input", ins}, {"output", outs}} {
		dir := side.dir
		for _, pt := range side.ports {
			if pt.Codec == nil {
				return fmt.Errorf("%s: %s pipe %d has no codec", label, dir, pt.Pipe)
			}
			key := dir + strconv.Itoa(pt.Pipe)
			if seen[key] {
				return fmt.Errorf("%s: %s pipe %d appears twice", label, dir, pt.Pipe)
			}
			seen[key] = true
		}
	}
	return nil
}

// resolve finds the executable: an absolute path as is, a path with a slash relative to the
// working directory, a bare name in the working directory if it is there, else on PATH.
func resolve(path, wd string) (string, error) {
	switch {
	case path == "":
		return "", errors.New("exec.path is empty")
	case filepath.IsAbs(path):
		return path, nil
	case strings.ContainsRune(path, '/'):
		return filepath.Join(wd, path), nil
	}
	local := filepath.Join(wd, path)
	if fi, err := os.Stat(local); err == nil && !fi.IsDir() {
		return local, nil
	}
	bin, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("executable %q is neither in the working directory %s nor on PATH", path, wd)
	}
	if !filepath.IsAbs(bin) {
		if bin, err = filepath.Abs(bin); err != nil {
			return "", err
		}
	}
	return bin, nil
}

// Args is the command line the program was started with.
func (p *Process) Args() []string { return p.args }

// Pid is the program's process id, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// Label names the job in messages.
func (p *Process) Label() string { return p.label }

// Exited is closed once the program has exited and been reaped.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Done is closed once Wait's result is known.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the program to exit and for its stdout and stderr to be drained. It returns nil
// for exit status 0, else an *ExitError with the status or signal and the tail of stderr.
func (p *Process) Wait() error {
	<-p.done
	return p.waitErr
}

// Stop ends the program: SIGTERM to its whole process group, SIGKILL after grace if the program
// (the group leader) is still running, and returns once it has been reaped. As at any exit of
// the leader, whatever is left in its group is killed (SIGKILL) before it is reaped: no orphan
// survives, no zombie of ours remains. Stop also releases the streams: pending and later
// WriteRound and ReadOutput calls return errors wrapping ErrStopped. Calling it after the program
// has exited only releases the streams. Cancelling Start's context does the same as
// Stop(spec.Grace).
func (p *Process) Stop(grace time.Duration) {
	p.stopping.Store(true)
	sent := p.signalGroup(sigTERM)
	if sent {
		p.signaled.Store(true)
	}
	if sent && grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-p.exited:
		case <-t.C:
		}
		t.Stop()
	}
	p.signalGroup(sigKILL)
	<-p.done
	for _, in := range p.ins {
		in.close()
	}
	for _, o := range p.outs {
		o.close()
	}
}

// signalGroup sends sig to the program's process group unless the leader has been reaped. It
// reports whether the signal was sent.
func (p *Process) signalGroup(sig sysSignal) bool {
	p.sigMu.Lock()
	defer p.sigMu.Unlock()
	if p.reaped {
		return false
	}
	return killGroup(p.pid, sig) == nil
}

// waiter owns the program's end: it notices the exit, kills what is left of the process group
// before reaping the leader (so no orphan survives and the group id stays ours while we signal
// it), reaps, ends the streams the program held, waits for the logs and cleans up.
func (p *Process) waiter() {
	waitExited(p.pid)
	p.sigMu.Lock()
	_ = killGroup(p.pid, sigKILL) // whatever the program left behind in its group
	p.reaped = true
	p.sigMu.Unlock()
	werr := p.cmd.Wait()
	// The program is gone: writes to its inputs fail instead of blocking, and once its data is
	// read its outputs end.
	for _, in := range p.ins {
		in.programGone()
	}
	if p.opens != nil {
		p.opens.stop()
	}
	for _, o := range p.outs {
		o.programGone()
	}
	close(p.exited)
	p.stopAfter()
	p.watchMu.Lock()
	p.unwatch() // nothing left to interrupt: release the context
	p.watchMu.Unlock()
	p.logs.wait()
	if p.fifoDir != "" {
		os.RemoveAll(p.fifoDir)
		os.Remove(filepath.Dir(p.fifoDir)) // only if no other job uses it
	}
	p.waitErr = p.exitError(werr)
	close(p.done)
}

func (p *Process) exitError(werr error) error {
	if werr == nil {
		return nil
	}
	var ee *exec.ExitError
	if !errors.As(werr, &ee) {
		return fmt.Errorf("%s: %w", p.label, werr)
	}
	e := &ExitError{Job: p.label, Code: ee.ExitCode(), Stopped: p.signaled.Load(), Stderr: p.logs.tail()}
	e.Signal = signalName(ee.ProcessState)
	return e
}

// release closes everything Start opened, when it fails before the program runs.
func (p *Process) release() {
	for _, in := range p.ins {
		in.programGone()
	}
	if p.opens != nil {
		p.opens.f.Close() // its goroutine was not started
	}
	for _, o := range p.outs {
		o.close()
		o.programGone()
	}
	if p.fifoDir != "" {
		os.RemoveAll(p.fifoDir)
		os.Remove(filepath.Dir(p.fifoDir))
	}
}
