package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// control is the control plane: it owns the worker registry and the pipelines. Every handler
// takes mu; requests to workers are made without it.
type control struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	opts    Options
	log     *slog.Logger
	storage jetstream.StorageType
	store   *store
	access  *access // issue 12: the permissions that follow placement (access.go)

	mu        sync.Mutex
	workers   map[string]*workerState
	pipelines map[string]*pipelineState
	epoch     uint64
	subs      []*nats.Subscription
	kick      chan struct{} // a worker or a slot became free: place what is pending (run owns it)
	conns     *connWatch    // the workers' connections, from the server's events (disconnect.go)
	// offerMissed: an offer went unanswered by a live worker (scheduler.go); run's next liveness
	// tick places what is pending again.
	offerMissed atomic.Bool
	// offerRetries counts the placement passes run asked for because an offer went unanswered.
	offerRetries atomic.Uint64
	// kicks counts kickPlacement's calls: a placement that ends pending asks for another pass if
	// a kick came while it offered (a worker that joined meanwhile was not offered the job).
	kicks atomic.Uint64

	// Owned concurrency (spawn): ctx is the control plane's (its term in a cluster); work
	// started by spawn runs on it and run waits for it (spawned) before it returns.
	ctx     context.Context
	spawnMu sync.Mutex // guards closing against spawned.Add: nothing starts once run waits
	closing bool
	spawned sync.WaitGroup
}

func newControl(ctx context.Context, nc *nats.Conn, opts Options, log *slog.Logger) (*control, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	c := &control{
		nc: nc, js: js, opts: opts, log: log, storage: jetstream.FileStorage,
		workers: map[string]*workerState{}, pipelines: map[string]*pipelineState{},
		access: opts.access, // issue 12
		kick:   make(chan struct{}, 1),
		conns:  newConnWatch(opts.DisconnectGrace),
		ctx:    ctx,
	}
	if opts.Memory {
		c.storage = jetstream.MemoryStorage
	}
	if err := c.createLogStream(ctx); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, js, c.storage, opts.Replicas)
	if err != nil {
		return nil, err
	}
	c.store = st
	if c.pipelines, c.workers, c.epoch, err = st.load(ctx); err != nil {
		return nil, fmt.Errorf("broker: load saved state: %w", err)
	}
	if n := len(c.pipelines); n > 0 {
		log.Info("recovered saved state", "pipelines", n, "workers", len(c.workers))
	}
	if err := c.matchPipeReplicas(ctx); err != nil { // cluster.go: --replicas changed
		return nil, err
	}
	handlers := map[string]func(*nats.Msg) any{
		protocol.From(protocol.SubjRegister, "*"):   c.handleRegister,   // access (issue 12): per-worker subjects
		protocol.From(protocol.SubjDeregister, "*"): c.handleDeregister, // access (issue 12)
		protocol.From(protocol.SubjJobState, "*"):   c.handleJobState,   // access (issue 12)
		protocol.SubjSubmit:                         c.handleSubmit,
		protocol.SubjStatus:                         c.handleStatus,
		protocol.SubjStop:                           c.handleStop,
		protocol.SubjWorkers:                        c.handleWorkers,
		protocol.SubjReset:                          c.handleReset,
		protocol.From(protocol.SubjLeave, "*"):      c.handleLeave, // a worker asks to be drained
		protocol.SubjDrain:                          c.handleDrain,
		protocol.SubjUncordon:                       c.handleUncordon,
		protocol.SubjRemove:                         c.handleRemove, // remove.go
		protocol.SubjHeartbeatPrefix + "*":          c.handleHeartbeat,
	}
	// A job state report is answered once the pipeline is saved (a lost "finished" would leave it
	// running for ever), and saving a big pipeline takes a while: one report after another, the
	// 1000 jobs of a chain starting at once waited for 1000 saves in a row, timed out and asked
	// again. Each on a goroutine of its own, the reports that come during a save share the next
	// (store.inLine). A worker sends a job's reports one at a time, each once the one before was
	// answered, and a late copy of one (a retry's original) finds the job past it.
	for subj, h := range handlers {
		handle := func(m *nats.Msg) {
			if reply := h(m); reply != nil {
				c.respond(m, reply)
			}
		}
		if subj == protocol.From(protocol.SubjJobState, "*") {
			serial := handle
			handle = func(m *nats.Msg) {
				c.spawn("a job state report", func(context.Context) { serial(m) }) // refused once stopping: the worker asks again
			}
		}
		sub, err := nc.Subscribe(subj, handle)
		if err != nil {
			return nil, fmt.Errorf("broker: subscribe %s: %w", subj, err)
		}
		c.subs = append(c.subs, sub)
	}
	if err := c.watchLiveness(); err != nil {
		return nil, err
	}
	return c, nc.Flush()
}

// respond answers a request (a message without a reply subject needs none).
func (c *control) respond(m *nats.Msg, reply any) {
	if m.Reply == "" {
		return
	}
	if err := m.Respond(protocol.Answer(reply, nil)); err != nil {
		c.log.Warn("reply failed", "subject", m.Subject, "error", err)
	}
}

// spawn runs f on a goroutine of the control plane, with its context: the one way control-plane
// work leaves the goroutine that asked for it (a subscription's, run's). The slow work goes
// inside f — arguments of a plain `go` statement are evaluated by the caller. run waits for
// every spawned f before it returns, so Shutdown (and the end of a term) waits for them too; f
// must end soon once ctx does. It reports false, and runs nothing, once run is stopping (as
// nats-server's startGoRoutine does).
func (c *control) spawn(name string, f func(ctx context.Context)) bool {
	c.spawnMu.Lock()
	if c.closing {
		c.spawnMu.Unlock()
		c.log.Debug("not started: the control plane is stopping", "work", name)
		return false
	}
	c.spawned.Add(1)
	c.spawnMu.Unlock()
	go func() {
		defer c.spawned.Done()
		f(c.context())
	}()
	return true
}

// context is the control plane's context (Background for a control built by hand in a test).
func (c *control) context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// respondLater answers a request with what f returns, computed on a spawned goroutine: a request
// whose answer takes long (a stop, a drain) never holds up the next one on its subscription.
func (c *control) respondLater(m *nats.Msg, name string, f func(ctx context.Context) any) {
	if !c.spawn(name, func(ctx context.Context) { c.respond(m, f(ctx)) }) {
		c.respond(m, protocol.Reply{Error: name + ": the broker's control plane is stopping; try again"})
	}
}

// stopSpawning refuses new spawned work and waits for what runs (run calls it as it ends).
func (c *control) stopSpawning() {
	c.spawnMu.Lock()
	c.closing = true
	c.spawnMu.Unlock()
	c.spawned.Wait()
}

// kickPlacement asks run to place the pending jobs: a worker joined, came back, was uncordoned
// or freed a slot. Kicks coalesce; placement runs on run's goroutine, one pass at a time.
func (c *control) kickPlacement() {
	c.kicks.Add(1)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// run watches heartbeats and places pending jobs until ctx ends.
func (c *control) run(ctx context.Context) {
	defer func() {
		for _, s := range c.subs {
			_ = s.Unsubscribe()
		}
		c.conns.stop()
		c.stopSpawning() // ctx has ended: what was spawned on it ends soon
	}()
	t := time.NewTicker(livenessTick(c.opts.HeartbeatTimeout))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.checkLiveness(now)
			if c.offerMissed.Swap(false) {
				c.offerRetries.Add(1)
				c.kickPlacement()
			}
		case <-c.kick:
			c.placePending()
		}
	}
}

type jobRef struct {
	pipeline string
	job      int
}

// refusal is a worker's answer "no" to a request, as opposed to no answer at all.
type refusal struct{ err error }

func (r refusal) Error() string { return r.err.Error() }

func (r refusal) Unwrap() error { return r.err }

// allRefusals reports whether every error joined in err is a worker's refusal.
func allRefusals(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !allRefusals(e) {
				return false
			}
		}
		return true
	}
	return errors.As(err, new(refusal))
}

// invalidError marks a submission that failed because of the document (a job's args, a type
// the workers cannot build): the user must fix the document, not the system.
type invalidError struct{ err error }

func (e invalidError) Error() string { return e.err.Error() }

func (e invalidError) Unwrap() error { return e.err }

// requestWorker sends a control request to one worker.
func (c *control) requestWorker(ctx context.Context, worker, verb string, req any) (err error) {
	if err := c.opts.fenced(); err != nil {
		return err
	}
	if err := c.access.beforeRequest(worker, verb, req); err != nil { // access (issue 12)
		return err
	}
	defer func() { c.access.afterRequest(worker, verb, req, err) }() // access (issue 12)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	send := func(ctx context.Context, subject string, data []byte) ([]byte, error) {
		m, err := c.nc.RequestWithContext(ctx, subject, data)
		if err != nil {
			return nil, fmt.Errorf("worker %s: %s: %w", worker, verb, err)
		}
		return m.Data, nil
	}
	_, err = protocol.Call[protocol.Reply](rctx, send, protocol.WorkerSubject(worker, verb), req)
	var rf *protocol.Refusal
	if errors.As(err, &rf) {
		return refusal{errors.New(rf.Reason)} // the worker's own words, as the broker's messages quote them
	}
	return err
}
