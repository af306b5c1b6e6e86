// Package local runs a pipeline to its end in one process: an embedded broker (NATS with
// JetStream in memory) and one worker that takes every group, talking over a real NATS
// connection — the same broker and worker code a deployment runs, with no simplified runtime.
// It is what `marvelo run` does.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
)

// Options configure a local run.
type Options struct {
	// WorkDir is the working directory of every job (default ".").
	WorkDir string
	// Registry holds the Go job types (default: none; pass builtin.Registry()).
	Registry *job.Registry
	// Output receives each job's output lines, prefixed with the job's name and id.
	Output io.Writer
	// Events, when set, receives each pipeline event.
	Events io.Writer
	// Logger is the log of the embedded broker and worker (default: discard).
	Logger *slog.Logger
	// Input, when set, feeds the pipeline's interactive jobs, line by line.
	Input io.Reader
	// BaseDir is the pipeline document's folder: executables' dependencies folders, and the
	// paths of executables that have none, are relative to it.
	BaseDir string
	// Python is the interpreter of Python jobs that name none ("": $MARVELO_PYTHON, python3).
	Python string
	// Stored makes the embedded broker keep JetStream on disk, in a temporary folder of its own
	// removed at Close, instead of in memory; SyncInterval is then its sync setting (0: sync
	// before every acknowledgement). For measuring the durable path (marvelo bench --sync).
	Stored       bool
	SyncInterval time.Duration
}

// ErrInvalid marks a document the broker rejected (exit code 2).
var ErrInvalid = client.ErrInvalid

// ErrFailed marks a pipeline that ended failed (exit code 1).
var ErrFailed = errors.New("pipeline failed")

// Run submits doc (JSON or CBOR) to an embedded broker and waits until it ends. When ctx is
// cancelled, the pipeline is stopped cleanly and Run returns ctx's error with the final status.
func Run(ctx context.Context, doc []byte, opts Options) (protocol.PipelineStatus, error) {
	p, err := pipeline.Parse(doc)
	if err != nil {
		return protocol.PipelineStatus{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Output == nil {
		opts.Output = io.Discard
	}
	env, err := Start(opts)
	if err != nil {
		return protocol.PipelineStatus{}, err
	}
	defer env.Close()
	return env.RunPipeline(ctx, p.Name, doc, opts)
}

// Env is an embedded broker with one worker, ready for pipelines.
type Env struct {
	Broker *broker.Broker
	Client *client.Client
	Worker *worker.Worker
	stop   context.CancelFunc
	done   chan struct{}
	closes []func()
}

// Start starts the embedded broker and its worker and waits until the worker is registered.
func Start(opts Options) (*Env, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.WorkDir == "" {
		opts.WorkDir = "."
	}
	if opts.Registry == nil {
		opts.Registry = job.NewRegistry()
	}
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:-1", Memory: !opts.Stored, SyncInterval: opts.SyncInterval, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	env := &Env{Broker: b, done: make(chan struct{})}
	env.closes = append(env.closes, b.Shutdown)
	wnc, err := b.Connect()
	if err != nil {
		env.Close()
		return nil, err
	}
	env.closes = append(env.closes, wnc.Close)
	w, err := worker.New(wnc, worker.Options{Name: "local", Any: true, Local: true, SharedWorkDir: true,
		WorkDir: opts.WorkDir, Registry: opts.Registry, Logger: opts.Logger, Python: opts.Python})
	if err != nil {
		env.Close()
		return nil, err
	}
	env.Worker = w
	ctx, cancel := context.WithCancel(context.Background())
	env.stop = cancel
	errc := make(chan error, 1)
	go func() {
		defer close(env.done)
		errc <- w.Run(ctx)
	}()
	select {
	case <-w.Ready():
	case err := <-errc:
		env.Close()
		return nil, fmt.Errorf("worker: %w", err)
	case <-time.After(10 * time.Second):
		env.Close()
		return nil, errors.New("worker did not register with the embedded broker within 10s")
	}
	cnc, err := b.Connect()
	if err != nil {
		env.Close()
		return nil, err
	}
	env.closes = append(env.closes, cnc.Close)
	env.Client = client.New(cnc)
	return env, nil
}

// Close stops the worker, then the broker.
func (e *Env) Close() {
	if e.stop != nil {
		e.stop()
		<-e.done
		e.stop = nil
	}
	for i := len(e.closes) - 1; i >= 0; i-- {
		e.closes[i]()
	}
	e.closes = nil
}

// RunPipeline submits doc and waits for its end, printing job output as it comes.
func (e *Env) RunPipeline(ctx context.Context, name string, doc []byte, opts Options) (protocol.PipelineStatus, error) {
	f, err := e.Client.Follow(name)
	if err != nil {
		return protocol.PipelineStatus{}, err
	}
	defer f.Close()
	doc, err = localExecPaths(doc, opts.BaseDir)
	if err != nil {
		return protocol.PipelineStatus{}, err
	}
	// The submission is not cut short by an interrupt: a request cut short may still have landed,
	// and a run of this process that nobody stops would go on after it. Its answer comes within
	// the client's request timeout; an interrupt meanwhile is then handled as a stop, below.
	if _, err := e.Client.Submit(context.WithoutCancel(ctx), doc, opts.BaseDir); err != nil {
		return protocol.PipelineStatus{}, err
	}
	if p, err := pipeline.Parse(doc); err == nil && opts.Input != nil {
		if ids := client.InteractiveJobs(p); len(ids) > 0 {
			// Reading a terminal cannot be interrupted: this goroutine lives until the input
			// ends or the process exits, and publishing after Close only returns an error.
			go func() { _ = e.Client.ForwardInput(name, ids, opts.Input) }()
		}
	}
	onLine := func(l protocol.LogLine) {
		if opts.Output != nil {
			fmt.Fprintf(opts.Output, "%s %d | %s\n", l.Name, l.Job, l.Text)
		}
	}
	onEvent := func(ev protocol.Event) {
		if opts.Events != nil {
			fmt.Fprintf(opts.Events, "%s %s: %s\n", ev.Time.Format("15:04:05.000"), ev.Kind, ev.Message)
		}
	}
	st, err := f.Wait(ctx, onLine, onEvent)
	if err != nil && ctx.Err() != nil {
		return e.stopPipeline(name, f, onLine, onEvent, ctx.Err())
	}
	if err != nil {
		return st, err
	}
	if st.State != protocol.StateFinished {
		return st, fmt.Errorf("%w: %s", ErrFailed, describe(st))
	}
	return st, nil
}

// stopPipeline stops the pipeline after an interrupt and waits, bounded, for its jobs to end.
func (e *Env) stopPipeline(name string, f *client.Follower, onLine func(protocol.LogLine), onEvent func(protocol.Event), cause error) (protocol.PipelineStatus, error) {
	// Stop answers once the pipeline has ended (within its grace and kill wait).
	sctx, cancel := context.WithTimeout(context.Background(), protocol.DefaultStopGrace+protocol.StopKillWait+30*time.Second)
	defer cancel()
	if _, err := e.Client.StopWith(sctx, protocol.StopRequest{Pipeline: name}); err != nil {
		return protocol.PipelineStatus{}, errors.Join(cause, err)
	}
	st, err := f.Wait(sctx, onLine, onEvent)
	return st, errors.Join(cause, err)
}

// localExecPaths makes the relative path of an executable without dependencies absolute, against
// the document's folder, when the file is there: in a local run the worker shares this machine,
// so `"path": "./filter.py"` means the script beside the document, as its author expects.
func localExecPaths(doc []byte, baseDir string) ([]byte, error) {
	if baseDir == "" {
		return doc, nil
	}
	p, err := pipeline.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	changed := false
	for i := range p.Jobs {
		e := p.Jobs[i].Exec
		if e == nil || e.Dependencies != "" || filepath.IsAbs(e.Path) {
			continue
		}
		abs := filepath.Join(baseDir, e.Path)
		if _, err := os.Stat(abs); err == nil {
			if abs, err = filepath.Abs(abs); err == nil {
				e.Path, changed = abs, true
			}
		}
	}
	if !changed {
		return doc, nil
	}
	return pipeline.EncodeCBOR(p)
}

func describe(st protocol.PipelineStatus) string {
	if st.Error != "" {
		return fmt.Sprintf("pipeline %s %s: %s", st.Name, st.State, st.Error)
	}
	return fmt.Sprintf("pipeline %s %s", st.Name, st.State)
}
