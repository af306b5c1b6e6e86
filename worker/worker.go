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

	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
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
	// pool holds the data connections the jobs' pipes run on (pool.go, issue 25).
	pool *dataConns
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
	w.pool = newDataConns(nc, js, w.log)
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
	if !away && !w.leave() {
		// The connection dropped while the broker was asked to drain: it went away just then (a
		// SIGTERM right after the broker died, before the connection noticed). Given the same
		// grace to come back, it is away as above, not waited for by every job's report.
		away = !w.brokerReachable(brokerAwayGrace)
	}
	if away {
		// Nobody to drain this worker, take its jobs' reports or its deregistration: it stops
		// its jobs and exits; a broker that comes back finds it gone and moves them.
		w.log.Warn("the broker is away: stopping without being drained; its jobs move once the broker finds this worker gone",
			"waited", brokerAwayGrace)
		cancel() // the job reports give up at once
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
		// The handlers decode their requests themselves; Serve answers with the reply envelope.
		serve := protocol.Serve(func(data json.RawMessage) (any, error) { return h(data) })
		sub, err := w.nc.Subscribe(protocol.WorkerSubject(w.opts.Name, verb), func(m *nats.Msg) {
			if err := m.Respond(serve(m.Data)); err != nil {
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
