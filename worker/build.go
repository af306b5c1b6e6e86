package worker

// Building a task from an assignment: a Go job, an executable job or a Python job, and its ports.

import (
	"fmt"
	"log/slog"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
)

func (w *Worker) buildTask(a *protocol.Assignment) (*task, error) {
	label := fmt.Sprintf("job %d (%s)", a.Job.ID, a.Job.DisplayName())
	if a.Job.Exec != nil {
		return w.buildExecTask(a, label)
	}
	if a.Job.Python != nil {
		return w.buildPythonTask(a, label)
	}
	j, err := w.opts.Registry.New(a.Job.Type, a.Job.Args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	ins, err := ports(a.Inputs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	outs, err := ports(a.Outputs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if a.Job.Log {
		// log: true — the last output is the logging pipe (the old LoggingJob's logging_output).
		if len(outs) == 0 {
			return nil, fmt.Errorf("%s: log: true needs an output for the logging rows (the last output)", label)
		}
		outs = outs[:len(outs)-1]
	}
	runner, err := job.Bind(j, label, ins, outs)
	if err != nil {
		return nil, err
	}
	workDir, err := w.jobDir(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	t, err := w.newTask(a, label, workDir, len(ins), len(outs))
	if err != nil {
		return nil, err
	}
	t.runner = runner
	return t, nil
}

// newTask makes the parts every job has: its log, input, realtime subscriptions, sequencer.
func (w *Worker) newTask(a *protocol.Assignment, label, workDir string, ins, outs int) (*task, error) {
	rt, err := realtimeInputs(w.nc, a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	jl := newJobLog(w.nc, a, w.opts.Name, w.log)
	t := &task{
		assign: *a, label: label, headSize: a.Job.EffectiveHeadSize(),
		log: slog.New(jl.handler()), done: make(chan struct{}),
		stdin:     newStdinReader(w.nc, protocol.StdinSubject(a.Pipeline, a.Job.ID)),
		sequencer: align.NewSourceSequencer(),
		rt:        rt,
		skipSQN:   a.SkipSQN,
		links:     w.links,
	}
	t.ctxConfig = job.ContextConfig{
		Pipeline: a.Pipeline, Name: a.Job.DisplayName(), Worker: w.opts.Name, WorkDir: workDir,
		JobID: a.Job.ID, HeadSize: t.headSize, Inputs: ins, Outputs: outs,
		InputPipes: a.Job.Inputs, OutputPipes: a.Job.Outputs[:outs],
		Log: t.log, Out: jl.writer("out"), In: t.stdin,
		Notice: func(msg string) { w.notice(t, msg) }, // engine: notice.go
	}
	return t, nil
}

// buildExecTask prepares an executable job: its working directory with the dependencies, and
// the adapter's description of its pipes.
func (w *Worker) buildExecTask(a *protocol.Assignment, label string) (*task, error) {
	if a.Job.Log {
		return nil, fmt.Errorf("%s: log: true is for Go jobs; an executable writes its own rows", label)
	}
	workDir, err := w.execDir(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	if a.Dependencies != "" {
		if err := w.unpackDependencies(a.Dependencies, workDir); err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
	}
	spec, err := execjob.SpecFromAssignment(a, w.opts.Name, workDir)
	if err != nil {
		return nil, err
	}
	t, err := w.newTask(a, label, workDir, len(a.Inputs), len(a.Outputs))
	if err != nil {
		return nil, err
	}
	t.execSpec = &spec
	t.stats.usage.setPid(noProcess) // its CPU and memory are its program's, once it runs (metrics.go)
	return t, nil
}

// buildPythonTask prepares a Python job: an executable job whose program is the Python runner,
// in a working directory holding its unpacked dependencies (its import root), or the job's own
// folder without them. The streams always carry heads (Spec), so the engine treats the job as
// one that sees heads: a round answered with the corrupted bit is skipped.
func (w *Worker) buildPythonTask(a *protocol.Assignment, label string) (*task, error) {
	if a.Job.Log {
		return nil, fmt.Errorf("%s: log: true is for Go jobs; a Python job writes its own rows", label)
	}
	var workDir string
	var err error
	if a.Dependencies != "" {
		if workDir, err = w.execDir(a); err == nil {
			err = w.unpackDependencies(a.Dependencies, workDir)
		}
	} else {
		workDir, err = w.jobDir(a)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	spec, err := w.python.Spec(a, w.opts.Name, workDir)
	if err != nil {
		return nil, err
	}
	rootKey := a.Dependencies // the archive's digest names the import root's content
	if rootKey == "" {
		rootKey = workDir
	}
	if err := w.python.CheckClass(w.runCtx, spec, a.Job.Python.Class, rootKey); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	t, err := w.newTask(a, label, workDir, len(a.Inputs), len(a.Outputs))
	if err != nil {
		return nil, err
	}
	t.assign.Job.Head = true // the runner reads and writes heads on every stream
	t.execSpec = &spec
	t.stats.usage.setPid(noProcess) // its CPU and memory are its interpreter's, once it runs
	return t, nil
}

func ports(bs []protocol.PipeBinding) ([]job.Port, error) {
	out := make([]job.Port, len(bs))
	for k, b := range bs {
		c, err := codec.New(b.Codec, b.BlockSize)
		if err != nil {
			return nil, fmt.Errorf("pipe %d: %w", b.ID, err)
		}
		out[k] = job.Port{Pipe: b.ID, Codec: c, BlockCount: max(b.BlockCount, 1)}
	}
	return out, nil
}
