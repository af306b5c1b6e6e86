// Package worker runs the jobs the broker assigns to it: it registers with its name, groups, slots
// and the Go job types it carries, heartbeats with metrics read from the OS, and drives each job's
// pipes over JetStream (see DESIGN.md §6).
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/deps"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
	"github.com/marvelo/marvelo/worker/objget"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// Options configure a worker.
type Options struct {
	// Name identifies the worker; it must be unique among live workers.
	Name string
	// Groups the worker belongs to, besides ALL.
	Groups []string
	// Slots is how many jobs it runs at once (default: the number of CPUs).
	Slots int
	// WorkDir holds the jobs' working directories.
	WorkDir string
	// SharedWorkDir makes WorkDir itself every job's working directory (marvelo run, the head
	// node's LOCAL worker), instead of WorkDir/<pipeline>/<job>.
	SharedWorkDir bool
	// Local marks the head node's worker, which runs LOCAL jobs.
	Local bool
	// Any makes the worker accept jobs of every group (marvelo run's single worker).
	Any bool
	// Registry holds the Go job types the worker carries.
	Registry *job.Registry
	// Heartbeat is the interval between heartbeats (default 500ms).
	Heartbeat time.Duration
	// Logger is the worker's own log.
	Logger *slog.Logger
	// Python is the interpreter of Python jobs that name none (--python); "" means
	// $MARVELO_PYTHON, then python3 on PATH.
	Python string
}

// reportGrace is how long a stopping worker keeps trying to tell the broker its jobs ended.
const reportGrace = 5 * time.Second

// Worker runs assigned jobs. Create it with New and run it with Run.
type Worker struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger
	info protocol.WorkerInfo
	// python starts Python jobs: the embedded package, the interpreter, its checks.
	python *pyjob.Runtime

	ready  chan struct{}   // closed once registered
	runCtx context.Context // ends some time after Run's ctx: the last job reports get through

	mu    sync.Mutex
	tasks map[taskKey]*task
	// leaving holds the tasks ended because the worker leaves (or is drained): their end is not
	// reported, since the broker moves them, as it moves a dead worker's jobs.
	leaving map[*task]bool
	// reserved holds the slots booked by the broker's placement for jobs not prepared yet, and
	// closing says the worker leaves: it bids for nothing more (offer.go).
	reserved map[taskKey]reservation
	closing  bool
	wg       sync.WaitGroup // running tasks

	lastMetrics atomic.Pointer[protocol.Metrics] // the latest heartbeat's sample, for bids
	// links are the chained pipes between jobs running here (link.go, issue 25).
	links *links
	// shutdown ends Run as its ctx ending does: a shutdown announced to a group (offer.go).
	shutdown context.CancelFunc
}

type taskKey struct {
	pipeline string
	job      int
}

// New checks the options and prepares a worker on an open NATS connection.
func New(nc *nats.Conn, opts Options) (*Worker, error) {
	if opts.Name == "" {
		opts.Name = DefaultName()
	}
	if err := protocol.CheckName("worker", opts.Name); err != nil {
		return nil, err
	}
	if err := (protocol.WorkerInfo{Groups: opts.Groups}).CheckGroups(); err != nil {
		return nil, err
	}
	if opts.Slots <= 0 {
		opts.Slots = runtime.NumCPU()
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 500 * time.Millisecond
	}
	if opts.Registry == nil {
		return nil, errors.New("worker: no job registry")
	}
	if opts.WorkDir == "" {
		opts.WorkDir = "."
	}
	abs, err := filepath.Abs(opts.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("worker: workdir %s: %w", opts.WorkDir, err)
	}
	opts.WorkDir = abs
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	host, _ := os.Hostname()
	w := &Worker{
		nc: nc, js: js, opts: opts, log: opts.Logger.With("worker", opts.Name),
		python: &pyjob.Runtime{Dir: filepath.Join(opts.WorkDir, cacheDir), Interpreter: opts.Python},
		links:  newLinks(),
		tasks:  map[taskKey]*task{}, leaving: map[*task]bool{}, reserved: map[taskKey]reservation{}, ready: make(chan struct{}),
		info: protocol.WorkerInfo{
			Name: opts.Name, Groups: opts.Groups, Slots: opts.Slots, Types: opts.Registry.Names(),
			Specs: opts.Registry.Specs(),
			Local: opts.Local, Any: opts.Any, Version: protocol.Version, Host: host, PID: os.Getpid(),
			Started: time.Now(),
		},
	}
	return w, nil
}

// SanitizeName turns a host name into a worker name: characters NATS subjects cannot carry
// become '-'.
func SanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "worker"
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// Ready is closed once the broker has accepted the worker's registration and the worker has sent
// its first heartbeat, from which on the broker offers it jobs.
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Name is the worker's name.
func (w *Worker) Name() string { return w.opts.Name }

// Run registers the worker, serves assignments and heartbeats until ctx ends; then it stops its
// jobs and deregisters.
func (w *Worker) Run(ctx context.Context) error {
	// Job reports outlive ctx a little, so a stopping worker still tells the broker its jobs
	// ended; they give up once the reports' own deadline passes.
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.runCtx = rctx
	ctx, w.shutdown = context.WithCancel(ctx)
	defer w.shutdown()
	stopReports := context.AfterFunc(ctx, func() { time.AfterFunc(reportGrace, cancel) })
	defer stopReports()
	subs, err := w.subscribe()
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	if err := w.register(ctx); err != nil {
		return err
	}
	// Offers once registered, before the first heartbeat (offer.go).
	offerSubs, err := w.subscribeOffers()
	subs = append(subs, offerSubs...)
	if err != nil {
		return err
	}
	w.log.Info("worker registered", "groups", w.opts.Groups, "slots", w.opts.Slots, "types", len(w.info.Types))
	// Heartbeats go on while the worker leaves: the broker must not take it for dead while it
	// moves its jobs.
	hbCtx, hbStop := context.WithCancel(context.Background())
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		w.heartbeat(hbCtx) // closes w.ready once the first heartbeat is sent
	}()
	<-ctx.Done()
	w.mu.Lock()
	w.closing = true // no more bids nor reservations
	w.mu.Unlock()
	away := !w.brokerReachable(brokerAwayGrace)
	if away {
		// Nobody to drain this worker, take its jobs' reports or its deregistration: it stops
		// its jobs and exits; a broker that comes back finds it gone and moves them.
		w.log.Warn("the broker is away: stopping without being drained; its jobs move once the broker finds this worker gone",
			"waited", brokerAwayGrace)
		cancel() // the job reports give up at once
	} else {
		w.leave()
	}
	hbStop()
	<-hbDone
	w.stopAll()
	w.wg.Wait()
	if away || !w.brokerReachable(0) {
		return nil
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer dcancel()
	dctx, dstop := w.whileConnected(dctx)
	defer dstop()
	if err := w.request(dctx, protocol.From(protocol.SubjDeregister, w.opts.Name), w.info, nil); err != nil {
		w.log.Warn("deregister failed; the broker will notice the missing heartbeats", "error", err)
	}
	return nil
}

func (w *Worker) subscribe() ([]*nats.Subscription, error) {
	handlers := map[string]func([]byte) (any, error){
		protocol.VerbPrepare: w.handlePrepare,
		protocol.VerbStart:   w.handleStart,
		protocol.VerbStop:    w.handleStop,
		protocol.VerbReset:   w.handleReset,
		protocol.VerbLeave:   w.handleLeave,
		protocol.VerbReserve: w.handleReserve, // placement by offer (offer.go)
	}
	var subs []*nats.Subscription
	for verb, h := range handlers {
		sub, err := w.nc.Subscribe(protocol.WorkerSubject(w.opts.Name, verb), func(m *nats.Msg) {
			reply := protocol.Reply{OK: true}
			if _, err := h(m.Data); err != nil {
				reply = protocol.Reply{Error: err.Error()}
			}
			data, _ := json.Marshal(reply)
			if err := m.Respond(data); err != nil {
				w.log.Warn("reply failed", "subject", m.Subject, "error", err)
			}
		})
		if err != nil {
			return subs, fmt.Errorf("worker: subscribe %s: %w", verb, err)
		}
		subs = append(subs, sub)
	}
	return subs, w.nc.Flush()
}

// register announces the worker, retrying until the broker answers or ctx ends.
func (w *Worker) register(ctx context.Context) error {
	wait := backoff.Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := w.request(rctx, protocol.From(protocol.SubjRegister, w.opts.Name), w.info, nil)
		cancel()
		if err == nil {
			return nil
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return fmt.Errorf("worker %s: broker refused registration: %w", w.opts.Name, err)
		}
		d := wait.Next()
		w.log.Warn("broker not answering; retrying", "error", err, "in", d)
		if !backoff.Pause(ctx, d) {
			return ctx.Err()
		}
	}
}

type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// request sends a JSON request and decodes a Reply (or into out when not nil).
func (w *Worker) request(ctx context.Context, subject string, req, out any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m, err := w.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return err
	}
	var r protocol.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	if !r.OK {
		return &refusedError{msg: r.Error}
	}
	if out != nil {
		return json.Unmarshal(m.Data, out)
	}
	return nil
}

// heartbeat publishes the worker's metrics and jobs until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	mr := &metricsReader{dir: w.opts.WorkDir}
	t := time.NewTicker(w.opts.Heartbeat)
	defer t.Stop()
	reconnects := w.nc.Stats().Reconnects
	first := true
	for {
		// A reconnect may mean a restarted broker: register again so it knows this worker's
		// groups, slots and types even if it lost them.
		if r := w.nc.Stats().Reconnects; r != reconnects {
			reconnects = r
			if err := w.register(ctx); err != nil {
				w.log.Warn("re-registration failed", "error", err)
			} else {
				w.log.Info("registered again after reconnecting")
			}
		}
		hb := protocol.Heartbeat{Worker: w.opts.Name, Time: time.Now(), Metrics: mr.sample(), Stats: w.jobStats()}
		w.lastMetrics.Store(&hb.Metrics)
		if data, err := json.Marshal(hb); err == nil {
			if err := w.nc.Publish(protocol.SubjHeartbeatPrefix+w.opts.Name, data); err != nil {
				w.log.Warn("heartbeat not sent", "error", err)
			}
		}
		if first {
			first = false
			if err := w.nc.Flush(); err != nil {
				w.log.Warn("first heartbeat not confirmed", "error", err)
			}
			close(w.ready)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) jobStats() []protocol.JobState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]protocol.JobState, 0, len(w.tasks))
	for k, t := range w.tasks {
		out = append(out, protocol.JobState{Pipeline: k.pipeline, Job: k.job, Epoch: t.assign.Epoch, Worker: w.opts.Name, State: protocol.StateRunning, Stats: t.stats.snapshot()})
	}
	return out
}

// handlePrepare builds the job of an assignment and checks it can run here; it does not start it.
func (w *Worker) handlePrepare(data []byte) (any, error) {
	var a protocol.Assignment
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("prepare: bad assignment: %w", err)
	}
	key := taskKey{a.Pipeline, a.Job.ID}
	t, err := w.buildTask(&a)
	if err != nil {
		w.mu.Lock()
		delete(w.reserved, key) // the job will not run here: its reserved slot is free again
		w.mu.Unlock()
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.reserved, key) // its reserved slot is the task's now
	if old, ok := w.tasks[key]; ok && old.cancel != nil {
		if old.assign.Epoch >= a.Epoch {
			return nil, fmt.Errorf("pipeline %s: %s is already running here", a.Pipeline, t.label)
		}
		old.cancel() // an older instance of the same job: the broker moved it back here
	}
	w.tasks[key] = t
	return nil, nil
}

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

// cacheDir is the worker's cache under its working directory: dependency archives and the Python
// package.
const cacheDir = ".marvelo-cache"

// unpackDependencies unpacks a packed dependencies folder into dir, fetching it from the broker's
// object store unless this worker has it already (archives are named by their content). The
// name is the archive's digest end to end: a cached archive that no longer matches it is fetched
// again, and a fetched one that does not match is refused, neither cached nor unpacked.
func (w *Worker) unpackDependencies(digest, dir string) error {
	if !isDigest(digest) {
		return fmt.Errorf("dependencies %q: not a SHA-256 digest: refused", digest)
	}
	cache := filepath.Join(w.opts.WorkDir, cacheDir, "deps", digest+".tar.gz")
	archive, err := os.ReadFile(cache)
	if err == nil {
		if got := deps.Digest(archive); got != digest {
			w.log.Warn("cached dependencies do not match their digest: fetched again", "digest", digest, "got", got, "cache", cache)
			err = errors.New("cache altered")
		}
	}
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if archive, err = w.fetchDependencies(ctx, digest); err != nil {
			return err
		}
		if err := writeFileAtomic(cache, archive); err != nil {
			w.log.Warn("dependencies not cached", "digest", digest, "error", err)
		}
	}
	if err := deps.Unpack(archive, dir); err != nil {
		return fmt.Errorf("unpack dependencies %s: %w", digest, err)
	}
	return nil
}

// fetchDependencies reads the archive named digest from the dependencies bucket with direct gets
// only (a worker may not create consumers), and refuses it unless its SHA-256 is that name.
func (w *Worker) fetchDependencies(ctx context.Context, digest string) ([]byte, error) {
	var archive []byte
	err := untilSettled(ctx, func(ctx context.Context) error {
		var err error
		archive, _, err = objget.GetBytes(ctx, w.nc, protocol.DepsBucket, digest)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fetch dependencies %s: %w", digest, err)
	}
	if got := deps.Digest(archive); got != digest {
		return nil, fmt.Errorf("dependencies %s: archive digest is %s, not the name it was fetched by: refused", digest, got)
	}
	return archive, nil
}

// isDigest tells whether s is a digest as deps.Digest writes it: 64 lower-case hex digits (so it
// is also a safe file name in the cache).
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// writeFileAtomic writes a file through a temporary one, so a crash never leaves half a file
// under the final name.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// execDir is an executable job's own working directory, where its dependencies are unpacked:
// under WorkDir even on a worker whose Go jobs share WorkDir itself.
func (w *Worker) execDir(a *protocol.Assignment) (string, error) {
	dir := filepath.Join(w.opts.WorkDir, a.Pipeline, fmt.Sprint(a.Job.ID))
	if w.opts.SharedWorkDir {
		dir = filepath.Join(w.opts.WorkDir, ".marvelo", a.Pipeline, fmt.Sprint(a.Job.ID))
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	return dir, nil
}

func (w *Worker) jobDir(a *protocol.Assignment) (string, error) {
	if w.opts.SharedWorkDir {
		return w.opts.WorkDir, nil
	}
	dir := filepath.Join(w.opts.WorkDir, a.Pipeline, fmt.Sprint(a.Job.ID))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	return dir, nil
}

// handleStart starts a prepared job.
func (w *Worker) handleStart(data []byte) (any, error) {
	var ref protocol.JobRef
	if err := json.Unmarshal(data, &ref); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.tasks[taskKey{ref.Pipeline, ref.Job}]
	if !ok {
		return nil, fmt.Errorf("pipeline %s: job %d was not prepared on worker %s", ref.Pipeline, ref.Job, w.opts.Name)
	}
	if t.cancel != nil {
		return nil, nil // already running: a retried start
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.drainCtx, t.drain = context.WithCancel(ctx)
	w.wg.Add(1)
	go w.runTask(ctx, t)
	return nil, nil
}

// runTask runs one job and reports its states to the broker.
func (w *Worker) runTask(ctx context.Context, t *task) {
	defer w.wg.Done()
	defer t.cancel()
	key := taskKey{t.assign.Pipeline, t.assign.Job.ID}
	w.report(t, protocol.StateRunning, nil)
	started := time.Now()
	err := t.run(ctx, w.js)
	state := protocol.StateFinished
	switch {
	case err != nil && ctx.Err() != nil:
		state, err = protocol.StateStopped, nil
	case err != nil:
		state = protocol.StateFailed
	}
	t.err = err
	st := t.stats.snapshot()
	t.log.Info("job "+state, "blocks_in", st.BlocksIn, "blocks_out", st.BlocksOut, "rounds", st.Rounds,
		"stale", st.Stale, "dummies", st.Dummies, "queue_drops", st.QueueDrops, "duration", time.Since(started).Round(time.Millisecond))
	if err != nil {
		w.log.Error("job failed", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "epoch", t.assign.Epoch, "error", err)
	} else {
		w.log.Info("job ended", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "epoch", t.assign.Epoch, "state", state)
	}
	w.mu.Lock()
	if w.tasks[key] == t { // a newer instance may have taken the key
		delete(w.tasks, key)
	}
	moving := w.leaving[t]
	delete(w.leaving, t)
	w.mu.Unlock()
	if moving && state != protocol.StateFinished {
		w.log.Info("job ended to move to another worker", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "epoch", t.assign.Epoch)
	} else {
		w.report(t, state, err)
	}
	close(t.done)
}

// report tells the broker about a job's state, retrying a few times: a lost "finished" would
// leave the pipeline running forever.
func (w *Worker) report(t *task, state string, jobErr error) {
	js := protocol.JobState{
		Pipeline: t.assign.Pipeline, Job: t.assign.Job.ID, Epoch: t.assign.Epoch, Worker: w.opts.Name,
		State: state, Stats: t.stats.snapshot(), Time: time.Now(),
	}
	if jobErr != nil {
		js.Error = jobErr.Error()
		js.SQN = t.failedSQN // the round it failed at, when known (restart policies count it)
	}
	wait := backoff.Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		ctx, cancel := context.WithTimeout(w.runCtx, 2*time.Second)
		err := w.request(ctx, protocol.From(protocol.SubjJobState, w.opts.Name), js, nil)
		cancel()
		if err == nil {
			return
		}
		var refused *refusedError
		if errors.As(err, &refused) || w.runCtx.Err() != nil {
			w.log.Warn("job state not reported", "pipeline", js.Pipeline, "job", js.Job, "state", state, "error", err)
			return
		}
		w.log.Warn("job state not reported yet; retrying", "pipeline", js.Pipeline, "job", js.Job, "state", state, "error", err)
		wait.Wait(w.runCtx) // an end of runCtx is noticed by the next attempt's check
	}
}

// handleStop stops one job, or every job of a pipeline when the job id is 0.
func (w *Worker) handleStop(data []byte) (any, error) {
	var ref protocol.JobRef
	if err := json.Unmarshal(data, &ref); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.releaseReservationsLocked(ref)
	for k, t := range w.tasks {
		if k.pipeline != ref.Pipeline || (ref.Job != 0 && k.job != ref.Job) || (ref.Epoch != 0 && t.assign.Epoch != ref.Epoch) {
			continue
		}
		switch {
		case t.cancel == nil:
			delete(w.tasks, k) // prepared, never started
			t.closeRealtime()
			t.stdin.Close()
		case ref.Drain:
			t.drain() // sources end their streams; the others finish what is in flight
		default:
			t.cancel()
		}
	}
	return nil, nil
}

// handleReset restarts the numbering of this worker's sources (and all-async jobs) of a pipeline.
func (w *Worker) handleReset(data []byte) (any, error) {
	var req protocol.ResetRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("reset: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, t := range w.tasks {
		if k.pipeline == req.Pipeline {
			// Only sources and all-async jobs consult their sequencer; others ignore it.
			t.sequencer.Reset(req.At)
		}
	}
	return nil, nil
}

// leave asks the broker to drain this worker before it stops: the broker cordons it, has it end
// its jobs (handleLeave) and moves them, then answers. Bounded: a broker that does not answer
// finds the worker gone by its missing heartbeats and moves the jobs then.
func (w *Worker) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), protocol.LeaveGrace+10*time.Second)
	defer cancel()
	ctx, stop := w.whileConnected(ctx) // a broker that goes away meanwhile drains nothing
	defer stop()
	var r protocol.DrainReply
	if err := w.request(ctx, protocol.From(protocol.SubjLeave, w.opts.Name), protocol.WorkerRequest{Worker: w.opts.Name}, &r); err != nil {
		w.log.Warn("broker did not drain this worker; its jobs move once it is found gone", "error", err)
		return
	}
	w.log.Info("drained: jobs moved to other workers", "jobs", len(r.Moved))
}

// handleLeave ends every job here without reporting its end, so that the broker moves it, and
// answers once they have ended or the grace has passed.
func (w *Worker) handleLeave(data []byte) (any, error) {
	var req protocol.LeaveRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("leave: %w", err)
	}
	w.mu.Lock()
	clear(w.reserved) // jobs placed here and not prepared yet move with the rest
	var done []chan struct{}
	for k, t := range w.tasks {
		if t.cancel == nil {
			delete(w.tasks, k) // prepared, never started
			t.closeRealtime()
			t.stdin.Close()
			continue
		}
		w.leaving[t] = true
		t.cancel()
		done = append(done, t.done)
	}
	w.mu.Unlock()
	timer := time.NewTimer(max(req.Grace, time.Millisecond))
	defer timer.Stop()
	for _, d := range done {
		select {
		case <-d:
		case <-timer.C:
			return nil, fmt.Errorf("worker %s: %d jobs did not end within %s", w.opts.Name, len(done), req.Grace)
		}
	}
	return nil, nil
}

func (w *Worker) stopAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range w.tasks {
		if t.cancel != nil {
			t.cancel()
		}
	}
}
