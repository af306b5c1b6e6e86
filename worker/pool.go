package worker

// The data connections (issue 25, item 4; DESIGN.md §6). A worker runs its jobs' pipes — the
// pulls, acknowledgements and publishes of their inputs and outputs — on a small pool of NATS
// connections beside its main one, which keeps the control traffic: registration, heartbeats,
// the broker's requests, job states, logs, stdin, realtime subscriptions made at prepare, and
// the checkpoints (KV).
//
// Why: on one connection one read loop in the server parses every publish of the worker and one
// read loop in the client handles every delivery to it, so the worker's jobs take turns on one
// core each way; on several connections they run side by side. Why a bound: a connection per job
// (DESIGN.md §6, reverted twice) made 1,000 connections for a 1,000-job chain, each of which
// every grant reload re-authorises. The pool holds at most DefaultDataConnections (or
// --data-connections) connections, made lazily, when a job first needs one; each job is given
// the next one in turn at its start and keeps it to its end.
//
// A data connection is the worker's own in every other respect: the same servers (the one the
// main connection is on first), credentials, inbox prefix and client name, so the broker counts
// it as the worker's (broker/disconnect.go: a close while another of the worker's connections is
// open moves nothing) and an identity's permissions apply to it. It reconnects as the main one
// does, and its jobs ride a disconnect out as they ride out one of the main connection. Only a
// connection that closes for good fails its jobs — those on it, not the worker, whose next job
// on that slot gets a new connection. The worker's handlers are not on it: they log at warn and
// judge the worker's link to the broker, which is the main connection's alone.
//
// Checkpoints stay on the main connection: they are a few small requests per job and second at
// most, gain nothing from the pool, and their bucket lookup at a moved job's start was what timed
// out, on the job's separate connection, after a leader's kill when every job had one.

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDataConnections is a worker's bound of data connections when none is set: 4, or 1
// where the process has one CPU to run on (GOMAXPROCS). Measured with marvelo bench linear
// (source → forward → sink, every hop through the broker; 3 jobs, so 4 connections give each its
// own), paired runs against the data path on the main connection: on 2 CPUs 4 connections moved
// 1.20–1.25× the blocks/s at 4–64 KiB with 3–11% less CPU per block, 2 connections 0.99–1.23×
// (two jobs share one); on 1 CPU (taskset) 2 and 4 connections lost 6–15% and cost more CPU per
// block, 1 connection was even (1.00–1.01×).
func DefaultDataConnections() int {
	if runtime.GOMAXPROCS(0) < 2 {
		return 1
	}
	return 4
}

// dataFlush bounds the flush of a data connection's last acknowledgements before it closes.
const dataFlush = time.Second

// dataConns is a worker's pool of data connections.
type dataConns struct {
	main *nats.Conn          // the worker's main connection, whose options the pool's copy
	js   jetstream.JetStream // the main connection's: checkpoints, and every job's pipes without a pool
	log  *slog.Logger

	mu     sync.Mutex
	size   int         // the bound; 0: the jobs' pipes stay on the main connection
	slots  []*dataSlot // made at the first job's start, len size
	next   int         // the slot of the next job
	closed bool        // the worker stopped: jobs started after run on the main connection
}

// dataSlot is one place in the pool, and the connection in it now.
type dataSlot struct {
	index int

	mu      sync.Mutex // held while its connection is made
	conn    *dataConn  // nil until a job needs it; replaced once closed
	retired bool       // the pool closed
}

// dataConn is one data connection.
type dataConn struct {
	index int
	nc    *nats.Conn
	js    jetstream.JetStream
	// gone ends, with the reason, once nc has closed for good.
	gone context.Context
	// jobs are the tasks running on it (guarded by dataConns.mu).
	jobs map[*task]bool
}

func newDataConns(nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) *dataConns {
	return &dataConns{main: nc, js: js, log: log, size: DefaultDataConnections()}
}

// SetDataConnections sets how many NATS connections the worker's jobs' pipes share besides its
// main connection (0: they use the main connection); call it before Run.
func (w *Worker) SetDataConnections(n int) {
	w.pool.mu.Lock()
	defer w.pool.mu.Unlock()
	if w.pool.slots == nil { // none made yet
		w.pool.size = max(n, 0)
	}
}

// run runs t's job on the next data connection (on the main connection when the pool has none)
// to its end. A data connection that closes under the job fails it, naming the connection.
func (p *dataConns) run(ctx context.Context, t *task) error {
	c := p.take(t)
	if c == nil {
		return t.run(ctx, p.js)
	}
	defer p.release(c, t)
	jctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(c.gone, func() { cancel(context.Cause(c.gone)) })
	defer stop()
	err := t.run(jctx, c.js)
	if err != nil && ctx.Err() == nil && c.nc.IsClosed() {
		// Whichever came first: the job's own error (a reader that stopped with the
		// connection), or the end of jctx.
		return fmt.Errorf("data connection %d to the broker closed: %w", c.index, err)
	}
	return err
}

// take returns the next slot's connection for t, made now if the slot has none open; nil when
// t's pipes are to run on the main connection.
func (p *dataConns) take(t *task) *dataConn {
	p.mu.Lock()
	if p.closed || p.size == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.slots == nil {
		p.slots = make([]*dataSlot, p.size)
		for i := range p.slots {
			p.slots[i] = &dataSlot{index: i}
		}
	}
	s := p.slots[p.next%len(p.slots)]
	p.next++
	p.mu.Unlock()
	c := p.connect(s, t.label)
	if c == nil {
		return nil
	}
	p.mu.Lock()
	c.jobs[t] = true
	p.mu.Unlock()
	p.log.Debug("job's pipes on a data connection", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "connection", c.index)
	return c
}

// release records the end of t's job on c.
func (p *dataConns) release(c *dataConn, t *task) {
	p.mu.Lock()
	delete(c.jobs, t)
	p.mu.Unlock()
}

// connect returns s's connection, made if it has none open; nil if the pool closed or it could
// not be made (the job then runs on the main connection, which is logged).
func (p *dataConns) connect(s *dataSlot, label string) *dataConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired {
		return nil
	}
	if s.conn != nil && !s.conn.nc.IsClosed() {
		return s.conn
	}
	c, err := p.open(s.index)
	if err != nil {
		p.log.Warn("job's pipes run on the worker's main connection: a data connection could not be made",
			"job", label, "connection", s.index, "error", err)
		return nil
	}
	s.conn = c
	return c
}

// open makes data connection index with the main connection's options, without its handlers.
func (p *dataConns) open(index int) (*dataConn, error) {
	o := p.main.Opts
	gone, closed := context.WithCancelCause(context.Background())
	o.ClosedCB = func(*nats.Conn) { closed(fmt.Errorf("data connection %d to the broker closed", index)) }
	o.DisconnectedErrCB = func(_ *nats.Conn, err error) {
		p.log.Debug("data connection disconnected; reconnecting", "connection", index, "error", err)
	}
	o.ReconnectedCB = func(nc *nats.Conn) {
		p.log.Debug("data connection reconnected", "connection", index, "url", nc.ConnectedUrlRedacted())
	}
	o.DisconnectedCB, o.ConnectedCB, o.DiscoveredServersCB, o.LameDuckModeHandler, o.ReconnectErrCB = nil, nil, nil, nil, nil
	if url := p.main.ConnectedUrl(); url != "" {
		o.Url = url // tried first: the server the worker is on now
	}
	nc, err := o.Connect()
	if err != nil {
		closed(err)
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &dataConn{index: index, nc: nc, js: dataJS{JetStream: js, kv: p.js}, gone: gone, jobs: map[*task]bool{}}, nil
}

// close flushes and closes the data connections; the worker calls it once its jobs have ended.
// A job started after it runs on the main connection.
func (p *dataConns) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.closed = true
	slots := p.slots
	p.mu.Unlock()
	for _, s := range slots {
		s.mu.Lock()
		s.retired = true
		c := s.conn
		s.mu.Unlock()
		if c == nil {
			continue
		}
		// The last acknowledgements: any not flushed are delivered again to the jobs' next
		// instances, which drop them by SQN. No flush while the broker is away: it cannot succeed.
		if c.nc.IsConnected() {
			if err := c.nc.FlushTimeout(dataFlush); err != nil {
				p.log.Debug("data connection: last acknowledgements not flushed", "connection", c.index, "error", err)
			}
		}
		c.nc.Close()
	}
}

// dataJS is a data connection's JetStream with the key-value buckets (the checkpoints) on the
// main connection's.
type dataJS struct {
	jetstream.JetStream
	kv jetstream.KeyValueManager
}

func (d dataJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return d.kv.KeyValue(ctx, bucket)
}

func (d dataJS) CreateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return d.kv.CreateKeyValue(ctx, cfg)
}

func (d dataJS) UpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return d.kv.UpdateKeyValue(ctx, cfg)
}

func (d dataJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return d.kv.CreateOrUpdateKeyValue(ctx, cfg)
}

func (d dataJS) DeleteKeyValue(ctx context.Context, bucket string) error {
	return d.kv.DeleteKeyValue(ctx, bucket)
}

func (d dataJS) KeyValueStoreNames(ctx context.Context) jetstream.KeyValueNamesLister {
	return d.kv.KeyValueStoreNames(ctx)
}

func (d dataJS) KeyValueStores(ctx context.Context) jetstream.KeyValueLister {
	return d.kv.KeyValueStores(ctx)
}
