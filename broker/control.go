package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
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

	mu        sync.Mutex
	workers   map[string]*workerState
	pipelines map[string]*pipelineState
	epoch     uint64
	submitMu  sync.Mutex // one submission at a time: placement sees the slots it used
	subs      []*nats.Subscription
}

type workerState struct {
	info     protocol.WorkerInfo
	lastSeen time.Time
	metrics  protocol.Metrics
	alive    bool
	// confirmed is false for a worker loaded from the saved state until it speaks again.
	confirmed bool
}

// sameInstance reports whether two registrations come from the same worker process.
func sameInstance(a, b protocol.WorkerInfo) bool {
	return a.PID == b.PID && a.Host == b.Host && a.Started.Equal(b.Started)
}

type pipelineState struct {
	doc       *pipeline.Pipeline
	state     string
	reason    string
	err       string
	submitted time.Time
	ended     time.Time
	jobs      map[int]*jobState
	events    []protocol.Event
	cleaned   bool
	deps      map[int]string // executable job id → packed dependencies object
}

type jobState struct {
	job      *pipeline.Job
	worker   string
	state    string
	err      string
	stats    protocol.JobStats
	epoch    uint64
	restarts int
}

func newControl(ctx context.Context, nc *nats.Conn, opts Options, log *slog.Logger) (*control, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	c := &control{
		nc: nc, js: js, opts: opts, log: log, storage: jetstream.FileStorage,
		workers: map[string]*workerState{}, pipelines: map[string]*pipelineState{},
	}
	if opts.Memory {
		c.storage = jetstream.MemoryStorage
	}
	if err := c.createLogStream(ctx); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, js, c.storage)
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
	handlers := map[string]func(*nats.Msg) any{
		protocol.SubjRegister:              c.handleRegister,
		protocol.SubjDeregister:            c.handleDeregister,
		protocol.SubjJobState:              c.handleJobState,
		protocol.SubjSubmit:                c.handleSubmit,
		protocol.SubjStatus:                c.handleStatus,
		protocol.SubjStop:                  c.handleStop,
		protocol.SubjWorkers:               c.handleWorkers,
		protocol.SubjReset:                 c.handleReset,
		protocol.SubjHeartbeatPrefix + "*": c.handleHeartbeat,
	}
	for subj, h := range handlers {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			reply := h(m)
			if m.Reply == "" || reply == nil {
				return
			}
			data, err := json.Marshal(reply)
			if err == nil {
				err = m.Respond(data)
			}
			if err != nil {
				c.log.Warn("reply failed", "subject", m.Subject, "error", err)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("broker: subscribe %s: %w", subj, err)
		}
		c.subs = append(c.subs, sub)
	}
	return c, nc.Flush()
}

func (c *control) createLogStream(ctx context.Context) error {
	_, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: protocol.LogStream, Subjects: []string{protocol.LogSubjects}, Storage: c.storage,
		MaxAge: 24 * time.Hour, MaxBytes: 256 << 20, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("broker: log stream: %w", err)
	}
	return nil
}

// run watches heartbeats until ctx ends.
func (c *control) run(ctx context.Context) {
	defer func() {
		for _, s := range c.subs {
			_ = s.Unsubscribe()
		}
	}()
	t := time.NewTicker(c.opts.HeartbeatTimeout / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			c.checkLiveness(now)
		}
	}
}

// ---- workers ----

func (c *control) handleRegister(m *nats.Msg) any {
	var info protocol.WorkerInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return protocol.Reply{Error: "register: " + err.Error()}
	}
	if err := protocol.CheckName("worker", info.Name); err != nil {
		return protocol.Reply{Error: err.Error()}
	}
	c.mu.Lock()
	old, known := c.workers[info.Name]
	replaced := known && !sameInstance(old.info, info)
	if replaced && old.alive && old.confirmed {
		c.mu.Unlock()
		return protocol.Reply{Error: fmt.Sprintf("worker name %q is taken by a live worker on %s (pid %d); choose another with --name", info.Name, old.info.Host, old.info.PID)}
	}
	c.workers[info.Name] = &workerState{info: info, lastSeen: time.Now(), alive: true, confirmed: true}
	c.mu.Unlock()
	c.saveWorker(info, true)
	if replaced {
		// A new process under a known name: whatever the old one ran is gone.
		c.workerLost(info.Name, "restarted")
	}
	c.log.Info("worker joined", "worker", info.Name, "groups", info.Groups, "slots", info.Slots, "host", info.Host)
	go c.placePending()
	return protocol.Reply{OK: true}
}

func (c *control) handleDeregister(m *nats.Msg) any {
	var info protocol.WorkerInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return protocol.Reply{Error: "deregister: " + err.Error()}
	}
	c.mu.Lock()
	if w, ok := c.workers[info.Name]; ok {
		w.alive = false
	}
	c.mu.Unlock()
	c.saveWorker(info, false)
	c.log.Info("worker left", "worker", info.Name)
	c.workerLost(info.Name, "left")
	return protocol.Reply{OK: true}
}

func (c *control) handleHeartbeat(m *nats.Msg) any {
	var hb protocol.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		c.log.Warn("bad heartbeat", "subject", m.Subject, "error", err)
		return nil
	}
	c.mu.Lock()
	w, ok := c.workers[hb.Worker]
	if !ok {
		c.mu.Unlock()
		return nil // not registered (yet): it registers on its own
	}
	back := !w.alive
	w.lastSeen, w.metrics, w.confirmed, w.alive = time.Now(), hb.Metrics, true, true
	var stale []protocol.JobRef
	for _, s := range hb.Stats {
		p, ok := c.pipelines[s.Pipeline]
		if !ok {
			continue
		}
		j, ok := p.jobs[s.Job]
		if !ok {
			continue
		}
		if j.worker != hb.Worker || j.epoch != s.Epoch || protocol.Terminal(p.state) && protocol.Terminal(j.state) {
			// An instance the broker has replaced (its worker was declared dead meanwhile).
			stale = append(stale, protocol.JobRef{Pipeline: s.Pipeline, Job: s.Job, Epoch: s.Epoch})
			continue
		}
		if !protocol.Terminal(j.state) {
			j.stats = s.Stats
		}
	}
	info := w.info
	c.mu.Unlock()
	if back {
		c.log.Warn("worker declared dead is heartbeating again", "worker", hb.Worker)
		c.saveWorker(info, true)
	}
	for _, ref := range stale {
		c.log.Warn("stopping a stale job instance", "worker", hb.Worker, "pipeline", ref.Pipeline, "job", ref.Job, "epoch", ref.Epoch)
		go func() {
			if err := c.requestWorker(context.Background(), hb.Worker, protocol.VerbStop, ref); err != nil {
				c.log.Warn("stale job not stopped", "worker", hb.Worker, "error", err)
			}
		}()
	}
	return nil
}

func (c *control) checkLiveness(now time.Time) {
	var lost []protocol.WorkerInfo
	c.mu.Lock()
	for _, w := range c.workers {
		if w.alive && now.Sub(w.lastSeen) > c.opts.HeartbeatTimeout {
			w.alive = false
			lost = append(lost, w.info)
		}
	}
	c.mu.Unlock()
	for _, info := range lost {
		name := info.Name
		c.saveWorker(info, false)
		c.log.Warn("worker missed its heartbeats; declared dead", "worker", name, "timeout", c.opts.HeartbeatTimeout)
		c.workerLost(name, "missed its heartbeats")
	}
}

// workerLost moves the jobs of a worker that is gone (DESIGN.md §8): each to its node, else the
// best live worker of its groups in order; LOCAL jobs stay on the head node. A job no worker can
// take waits as pending and its pipeline shows degraded, until a fitting worker joins.
func (c *control) workerLost(name, why string) {
	detected := time.Now()
	c.submitMu.Lock()
	defer c.submitMu.Unlock()
	var lost []jobRef
	c.mu.Lock()
	for pname, p := range c.pipelines {
		if protocol.Terminal(p.state) {
			continue
		}
		for id, j := range p.jobs {
			if j.worker == name && !protocol.Terminal(j.state) {
				lost = append(lost, jobRef{pname, id})
			}
		}
	}
	c.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	sort.Slice(lost, func(i, k int) bool {
		if lost[i].pipeline != lost[k].pipeline {
			return lost[i].pipeline < lost[k].pipeline
		}
		return lost[i].job < lost[k].job
	})
	for _, r := range lost {
		c.event(r.pipeline, r.job, "worker lost", fmt.Sprintf("job %d: worker %s %s", r.job, name, why))
		c.relocate(r, detected)
	}
}

type jobRef struct {
	pipeline string
	job      int
}

// relocate places one job anew, moves its input consumers to the new epoch and starts it.
// Callers hold submitMu.
func (c *control) relocate(r jobRef, since time.Time) {
	ctx := context.Background()
	c.mu.Lock()
	p, ok := c.pipelines[r.pipeline]
	if !ok || protocol.Terminal(p.state) {
		c.mu.Unlock()
		return
	}
	j := p.jobs[r.job]
	from := j.worker
	used := c.slotsUsed()
	w, reason := c.chooseWorker(j.job, used)
	if w == "" {
		j.worker, j.state = "", protocol.StatePending
		if p.state != protocol.StateStopping {
			p.state, p.reason = protocol.StateDegraded, fmt.Sprintf("%s: %s", j.job.Label(), reason)
		}
		c.mu.Unlock()
		c.event(r.pipeline, r.job, "pending", fmt.Sprintf("%s waits for a worker: %s", j.job.Label(), reason))
		return
	}
	oldEpoch := j.epoch
	c.epoch++
	newEpoch := c.epoch
	j.worker, j.state, j.epoch = w, protocol.StateStarting, newEpoch
	j.restarts++
	doc := p.doc
	c.mu.Unlock()

	err := c.rebindInputs(ctx, doc, j.job, oldEpoch, newEpoch)
	if err == nil {
		epochs := c.epochs(r.pipeline)
		for _, a := range c.assignments(p, map[int]string{r.job: w}, func(id int) uint64 { return epochs[id] }) {
			if a.a.Job.ID != r.job {
				continue
			}
			if err = c.requestWorker(ctx, w, protocol.VerbPrepare, a.a); err == nil {
				err = c.requestWorker(ctx, w, protocol.VerbStart, a.a.Ref())
			}
		}
	}
	if err != nil {
		c.applyJobState(protocol.JobState{Pipeline: r.pipeline, Job: r.job, Epoch: newEpoch, Worker: w,
			State: protocol.StateFailed, Error: fmt.Sprintf("move to worker %s: %v", w, err), Time: time.Now()})
		return
	}
	c.mu.Lock()
	if p.state == protocol.StateDegraded && !hasPending(p) {
		p.state, p.reason = protocol.StateRunning, ""
	}
	c.mu.Unlock()
	fromText := "worker " + from
	if from == "" {
		fromText = "pending"
	}
	c.event(r.pipeline, r.job, "moved", fmt.Sprintf("%s moved from %s to worker %s, %s after detection",
		j.job.Label(), fromText, w, time.Since(since).Round(time.Millisecond)))
}

// epochs returns the current epoch of every job of a pipeline.
func (c *control) epochs(name string) map[int]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]uint64{}
	if p, ok := c.pipelines[name]; ok {
		for id, j := range p.jobs {
			out[id] = j.epoch
		}
	}
	return out
}

func hasPending(p *pipelineState) bool {
	for _, j := range p.jobs {
		if j.state == protocol.StatePending {
			return true
		}
	}
	return false
}

func (c *control) handleWorkers(*nats.Msg) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	used := c.slotsUsed()
	out := protocol.WorkersReply{Reply: protocol.Reply{OK: true}}
	for _, w := range c.workers {
		out.Workers = append(out.Workers, protocol.WorkerStatus{WorkerInfo: w.info, Alive: w.alive,
			LastHeartbeat: w.lastSeen, Metrics: w.metrics, SlotsUsed: used[w.info.Name]})
	}
	sort.Slice(out.Workers, func(i, k int) bool { return out.Workers[i].Name < out.Workers[k].Name })
	return out
}

// slotsUsed counts the jobs each worker runs. Callers hold mu.
func (c *control) slotsUsed() map[string]int {
	used := map[string]int{}
	for _, p := range c.pipelines {
		for _, j := range p.jobs {
			if j.worker != "" && !protocol.Terminal(j.state) {
				used[j.worker]++
			}
		}
	}
	return used
}

// ---- pipelines ----

func (c *control) handleSubmit(m *nats.Msg) any {
	var req protocol.SubmitRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: "submit: " + err.Error()}}
	}
	c.submitMu.Lock()
	defer c.submitMu.Unlock()
	doc, err := pipeline.Parse(req.Document)
	if err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: err.Error()}, Invalid: true}
	}
	if err := pipeline.Validate(doc, pipeline.ValidateOptions{KnownType: c.knownType}); err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: err.Error()}, Invalid: true, Pipeline: doc.Name}
	}
	c.mu.Lock()
	if old, ok := c.pipelines[doc.Name]; ok && !protocol.Terminal(old.state) {
		c.mu.Unlock()
		return protocol.SubmitReply{Reply: protocol.Reply{Error: fmt.Sprintf("pipeline %s is already %s; stop it first", doc.Name, old.state)}, Pipeline: doc.Name}
	}
	p := &pipelineState{doc: doc, state: protocol.StatePending, submitted: time.Now(), jobs: map[int]*jobState{}, deps: req.Dependencies}
	for i := range doc.Jobs {
		j := &doc.Jobs[i]
		p.jobs[j.ID] = &jobState{job: j, state: protocol.StatePending}
	}
	c.pipelines[doc.Name] = p
	c.mu.Unlock()
	c.event(doc.Name, 0, "submitted", fmt.Sprintf("%d jobs, %d pipes", len(doc.Jobs), len(doc.Endpoints())))
	state, err := c.launch(context.Background(), p)
	if err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: err.Error()}, Pipeline: doc.Name, Invalid: errors.As(err, new(invalidError))}
	}
	return protocol.SubmitReply{Reply: protocol.Reply{OK: true}, Pipeline: doc.Name, State: state}
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

func (c *control) knownType(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		for _, t := range w.info.Types {
			if t == name && w.alive {
				return true
			}
		}
	}
	return false
}

// launch places a pipeline, makes its streams, prepares every job and starts them. Placement is
// all or nothing: where a job cannot be placed, the pipeline stays pending with the reason.
func (c *control) launch(ctx context.Context, p *pipelineState) (string, error) {
	name := p.doc.Name
	c.mu.Lock()
	placement, reason := c.place(p.doc)
	if reason != "" {
		p.state, p.reason = protocol.StatePending, reason
		c.mu.Unlock()
		c.event(name, 0, "pending", reason)
		return protocol.StatePending, nil
	}
	c.epoch++
	epoch := c.epoch
	for id, w := range placement {
		j := p.jobs[id]
		j.worker, j.state, j.epoch = w, protocol.StateStarting, epoch
	}
	p.state, p.reason = protocol.StateStarting, ""
	c.mu.Unlock()

	if err := c.createPipes(ctx, p.doc, epoch); err != nil {
		c.abort(p, err)
		return "", err
	}
	assigns := c.assignments(p, placement, func(int) uint64 { return epoch })
	if err := c.prepareAll(ctx, assigns); err != nil {
		c.abort(p, err)
		if allRefusals(err) {
			return "", invalidError{err} // the workers said no: the document must change
		}
		return "", err
	}
	for _, a := range assigns {
		c.event(name, a.a.Job.ID, "placed", fmt.Sprintf("%s on worker %s", a.a.Job.Label(), a.worker))
	}
	c.mu.Lock()
	if p.state == protocol.StateStarting {
		p.state = protocol.StateRunning
	}
	c.mu.Unlock()
	var errs []error
	for _, a := range assigns {
		if err := c.requestWorker(ctx, a.worker, protocol.VerbStart, a.a.Ref()); err != nil {
			errs = append(errs, fmt.Errorf("%s on worker %s: start: %w", a.a.Job.Label(), a.worker, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		c.abort(p, err)
		return "", err
	}
	c.event(name, 0, "started", "all jobs started")
	return protocol.StateRunning, nil
}

type placedAssignment struct {
	worker string
	a      protocol.Assignment
}

// assignments builds the assignment of every job of doc; epochOf gives each job's epoch.
func (c *control) assignments(p *pipelineState, placement map[int]string, epochOf func(job int) uint64) []placedAssignment {
	doc := p.doc
	ends := doc.Endpoints()
	binding := func(pipeID int) protocol.PipeBinding {
		pp := doc.PipeByID(pipeID)
		src, dst := doc.JobByID(ends[pipeID][0]), doc.JobByID(ends[pipeID][1])
		b := protocol.PipeBinding{
			ID: pipeID, Subject: protocol.PipeSubject(doc.Name, pipeID), Stream: protocol.PipeStream(doc.Name, pipeID),
			Codec: pp.EffectiveCodec(), BlockSize: pp.BlockSize,
			BlockCount: pp.EffectiveBlockCount(), Async: pp.IsAsync(), Optional: pp.Optional, HeadSize: 1,
			Realtime: pp.IsRealtime(),
		}
		if src != nil {
			b.HeadSize = src.EffectiveHeadSize()
		}
		if dst != nil {
			b.MaxQueue = dst.MaxQueue
			b.Consumer = protocol.PipeConsumer(dst.ID, epochOf(dst.ID))
		}
		return b
	}
	var out []placedAssignment
	for i := range doc.Jobs {
		j := doc.Jobs[i]
		a := protocol.Assignment{Pipeline: doc.Name, Epoch: epochOf(j.ID), Job: j, Dependencies: p.deps[j.ID]}
		for _, id := range j.Inputs {
			a.Inputs = append(a.Inputs, binding(id))
		}
		for _, id := range j.Outputs {
			a.Outputs = append(a.Outputs, binding(id))
		}
		out = append(out, placedAssignment{worker: placement[j.ID], a: a})
	}
	return out
}

// Pipe stream limits: a pipe without max_queue holds up to this much unread data and then makes
// its writer wait (backpressure), so a slow job never grows memory without bound.
const (
	pipeMaxMsgs  = 4096
	pipeMaxBytes = 64 << 20
)

func (c *control) createPipes(ctx context.Context, doc *pipeline.Pipeline, epoch uint64) error {
	if err := c.store.forgetCheckpoints(ctx, doc); err != nil {
		return err
	}
	ends := doc.Endpoints()
	for id, e := range ends {
		if pp := doc.PipeByID(id); pp.IsRealtime() {
			continue // core NATS: a subject, no stream
		}
		dst := doc.JobByID(e[1])
		maxQueue := 0
		if dst != nil {
			maxQueue = dst.MaxQueue
		}
		cfg := jetstream.StreamConfig{
			Name: protocol.PipeStream(doc.Name, id), Subjects: []string{protocol.PipeSubject(doc.Name, id)},
			Retention: jetstream.WorkQueuePolicy, Storage: c.storage, Discard: jetstream.DiscardNew,
			MaxMsgs: pipeMaxMsgs, MaxBytes: pipeMaxBytes,
		}
		if maxQueue > 0 {
			cfg.Discard, cfg.MaxMsgs, cfg.MaxBytes = jetstream.DiscardOld, int64(maxQueue), -1
		}
		// A pipeline submitted again under the same name starts from empty pipes.
		if err := c.js.DeleteStream(ctx, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("pipe %d: delete old stream: %w", id, err)
		}
		st, err := c.js.CreateStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("pipe %d: create stream %s: %w", id, cfg.Name, err)
		}
		if dst == nil {
			continue
		}
		if _, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(dst, epoch)); err != nil {
			return fmt.Errorf("pipe %d: create consumer: %w", id, err)
		}
	}
	return nil
}

// consumerConfig is the durable consumer of a pipe read by job dst at an epoch. In-flight
// blocks are bounded (MaxAckPending, in messages): a slow job pushes back instead of growing
// memory; a max_queue pipe keeps its queue in the stream, where the oldest block is dropped.
func consumerConfig(dst *pipeline.Job, epoch uint64) jetstream.ConsumerConfig {
	maxAck := 64
	if dst.MaxQueue > 0 {
		maxAck = 1
	}
	return jetstream.ConsumerConfig{
		Durable: protocol.PipeConsumer(dst.ID, epoch), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxAck,
		// A delivery lost in transit (a connection cut) comes again after AckWait; the worker
		// holds later blocks meanwhile (worker/input.go), so keep it short.
		AckWait: 5 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
	}
}

// rebindInputs replaces the consumers of a job's input pipes by ones of the new epoch. On a
// work-queue stream the new consumer is delivered every block not yet acknowledged, at once.
func (c *control) rebindInputs(ctx context.Context, doc *pipeline.Pipeline, j *pipeline.Job, oldEpoch, newEpoch uint64) error {
	for _, id := range j.Inputs {
		if pp := doc.PipeByID(id); pp.IsRealtime() {
			continue
		}
		st, err := c.js.Stream(ctx, protocol.PipeStream(doc.Name, id))
		if err != nil {
			return fmt.Errorf("pipe %d: %w", id, err)
		}
		if err := st.DeleteConsumer(ctx, protocol.PipeConsumer(j.ID, oldEpoch)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("pipe %d: delete consumer of epoch %d: %w", id, oldEpoch, err)
		}
		if _, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(j, newEpoch)); err != nil {
			return fmt.Errorf("pipe %d: create consumer of epoch %d: %w", id, newEpoch, err)
		}
	}
	return nil
}

func (c *control) deletePipes(doc *pipeline.Pipeline) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id := range doc.Endpoints() {
		if err := c.js.DeleteStream(ctx, protocol.PipeStream(doc.Name, id)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			c.log.Warn("pipe stream not deleted", "pipeline", doc.Name, "pipe", id, "error", err)
		}
	}
}

// prepareAll asks each worker to build its jobs; it reports every failure at once.
func (c *control) prepareAll(ctx context.Context, assigns []placedAssignment) error {
	errs := make([]error, len(assigns))
	var wg sync.WaitGroup
	for i, a := range assigns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.requestWorker(ctx, a.worker, protocol.VerbPrepare, a.a); err != nil {
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// requestWorker sends a control request to one worker.
func (c *control) requestWorker(ctx context.Context, worker, verb string, req any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := c.nc.RequestWithContext(rctx, protocol.WorkerSubject(worker, verb), data)
	if err != nil {
		return fmt.Errorf("worker %s: %s: %w", worker, verb, err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("worker %s: %s: bad reply: %w", worker, verb, err)
	}
	if err := r.Err(); err != nil {
		return refusal{err}
	}
	return nil
}

// abort ends a pipeline that could not start: its jobs are stopped and its pipes removed.
func (c *control) abort(p *pipelineState, err error) {
	c.mu.Lock()
	p.state, p.err, p.ended = protocol.StateFailed, err.Error(), time.Now()
	workers := map[string]bool{}
	for _, j := range p.jobs {
		if j.worker != "" {
			workers[j.worker] = true
		}
		if !protocol.Terminal(j.state) {
			j.state = protocol.StateStopped
		}
	}
	c.mu.Unlock()
	c.stopOnWorkers(p.doc.Name, workers)
	c.deletePipes(p.doc)
	c.event(p.doc.Name, 0, "failed", err.Error())
}

func (c *control) stopOnWorkers(name string, workers map[string]bool) {
	for w := range workers {
		if err := c.requestWorker(context.Background(), w, protocol.VerbStop, protocol.JobRef{Pipeline: name}); err != nil {
			c.log.Warn("stop request failed", "pipeline", name, "worker", w, "error", err)
		}
	}
}

// placePending retries the pipelines waiting for workers.
func (c *control) placePending() {
	c.submitMu.Lock()
	defer c.submitMu.Unlock()
	c.mu.Lock()
	var waiting []*pipelineState
	var stranded []jobRef
	for name, p := range c.pipelines {
		switch p.state {
		case protocol.StatePending:
			waiting = append(waiting, p)
		case protocol.StateDegraded:
			for id, j := range p.jobs {
				if j.state == protocol.StatePending {
					stranded = append(stranded, jobRef{name, id})
				}
			}
		}
	}
	c.mu.Unlock()
	for _, p := range waiting {
		if _, err := c.launch(context.Background(), p); err != nil {
			c.log.Warn("pending pipeline failed to start", "pipeline", p.doc.Name, "error", err)
		}
	}
	now := time.Now()
	for _, r := range stranded {
		c.relocate(r, now)
	}
}

func (c *control) handleJobState(m *nats.Msg) any {
	var s protocol.JobState
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return protocol.Reply{Error: "jobstate: " + err.Error()}
	}
	c.applyJobState(s)
	return protocol.Reply{OK: true}
}

// applyJobState records a job's new state and derives the pipeline's.
func (c *control) applyJobState(s protocol.JobState) {
	c.mu.Lock()
	p, ok := c.pipelines[s.Pipeline]
	if !ok {
		c.mu.Unlock()
		return
	}
	j, ok := p.jobs[s.Job]
	if !ok || (s.Epoch != 0 && j.epoch != 0 && s.Epoch != j.epoch) || protocol.Terminal(j.state) {
		c.mu.Unlock()
		return // a stale instance, or a job already ended
	}
	j.state, j.err, j.stats = s.State, s.Error, s.Stats
	var stopWorkers map[string]bool
	var pipelineEvent, pipelineMsg string
	switch {
	case s.State == protocol.StateFailed && !protocol.Terminal(p.state) && p.state != protocol.StateStopping:
		p.state, p.err = protocol.StateFailed, fmt.Sprintf("%s: %s", j.job.Label(), s.Error)
		p.ended = time.Now()
		stopWorkers = c.otherWorkers(p)
		pipelineEvent, pipelineMsg = "failed", p.err
	case allTerminal(p) && p.state == protocol.StateStopping:
		p.state, p.ended = protocol.StateStopped, time.Now()
		pipelineEvent, pipelineMsg = "stopped", "stopped on request"
	case allTerminal(p) && !protocol.Terminal(p.state):
		p.state, p.ended = protocol.StateFinished, time.Now()
		pipelineEvent, pipelineMsg = "finished", fmt.Sprintf("all %d jobs finished in %s", len(p.jobs), p.ended.Sub(p.submitted).Round(time.Millisecond))
	}
	cleanup := allTerminal(p) && protocol.Terminal(p.state) && !p.cleaned
	if cleanup {
		p.cleaned = true
	}
	c.mu.Unlock()

	msg := fmt.Sprintf("%s %s on worker %s", j.job.Label(), s.State, s.Worker)
	if s.Error != "" {
		msg += ": " + s.Error
	}
	c.event(s.Pipeline, s.Job, "job "+s.State, msg)
	if stopWorkers != nil {
		c.stopOnWorkers(s.Pipeline, stopWorkers)
	}
	if cleanup {
		c.deletePipes(p.doc)
	}
	if pipelineEvent != "" {
		c.event(s.Pipeline, 0, pipelineEvent, pipelineMsg)
	}
}

// otherWorkers lists the workers still running jobs of p. Callers hold mu.
func (c *control) otherWorkers(p *pipelineState) map[string]bool {
	ws := map[string]bool{}
	for _, j := range p.jobs {
		if j.worker != "" && !protocol.Terminal(j.state) {
			ws[j.worker] = true
		}
	}
	return ws
}

func allTerminal(p *pipelineState) bool {
	for _, j := range p.jobs {
		if !protocol.Terminal(j.state) {
			return false
		}
	}
	return true
}

// drainTimeout bounds a graceful stop: jobs still running then are stopped outright.
const drainTimeout = 10 * time.Second

func (c *control) handleStop(m *nats.Msg) any {
	var req protocol.NameRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.Reply{Error: "stop: " + err.Error()}
	}
	c.mu.Lock()
	p, ok := c.pipelines[req.Pipeline]
	if !ok {
		c.mu.Unlock()
		return protocol.Reply{Error: fmt.Sprintf("no pipeline named %q", req.Pipeline)}
	}
	if protocol.Terminal(p.state) || p.state == protocol.StateStopping {
		state := p.state
		c.mu.Unlock()
		return protocol.Reply{Error: fmt.Sprintf("pipeline %s is already %s", req.Pipeline, state)}
	}
	p.state = protocol.StateStopping
	workers := c.otherWorkers(p)
	for _, j := range p.jobs {
		if j.worker == "" && !protocol.Terminal(j.state) {
			j.state = protocol.StateStopped // pending, never placed
		}
	}
	done := allTerminal(p)
	if done {
		p.state, p.ended = protocol.StateStopped, time.Now()
	}
	c.mu.Unlock()
	if done {
		c.event(req.Pipeline, 0, "stopped", "stopped on request")
		return protocol.Reply{OK: true}
	}
	c.event(req.Pipeline, 0, "stopping", "draining: sources end, the other jobs finish what is in flight")
	for w := range workers {
		ref := protocol.JobRef{Pipeline: req.Pipeline, Drain: true}
		if err := c.requestWorker(context.Background(), w, protocol.VerbStop, ref); err != nil {
			c.log.Warn("drain request failed", "pipeline", req.Pipeline, "worker", w, "error", err)
		}
	}
	time.AfterFunc(drainTimeout, func() { c.forceStop(req.Pipeline) })
	return protocol.Reply{OK: true}
}

// forceStop stops outright the jobs of a pipeline that did not drain in time.
func (c *control) forceStop(name string) {
	c.mu.Lock()
	p, ok := c.pipelines[name]
	if !ok || p.state != protocol.StateStopping {
		c.mu.Unlock()
		return
	}
	workers := c.otherWorkers(p)
	c.mu.Unlock()
	c.log.Warn("pipeline did not drain in time; stopping its jobs", "pipeline", name, "timeout", drainTimeout)
	c.stopOnWorkers(name, workers)
}

// handleReset forwards a reset to the workers running the pipeline's jobs; each worker restarts
// the numbering of its sources and all-async jobs.
func (c *control) handleReset(m *nats.Msg) any {
	var req protocol.ResetRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.Reply{Error: "reset: " + err.Error()}
	}
	c.mu.Lock()
	p, ok := c.pipelines[req.Pipeline]
	if !ok || protocol.Terminal(p.state) {
		c.mu.Unlock()
		return protocol.Reply{Error: fmt.Sprintf("no running pipeline named %q", req.Pipeline)}
	}
	workers := c.otherWorkers(p)
	c.mu.Unlock()
	var errs []error
	for w := range workers {
		if err := c.requestWorker(context.Background(), w, protocol.VerbReset, req); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return protocol.Reply{Error: err.Error()}
	}
	when := "now"
	if !req.At.IsZero() {
		when = "at " + req.At.Format(time.RFC3339Nano)
	}
	c.event(req.Pipeline, 0, "reset", "sources restart their numbering "+when)
	return protocol.Reply{OK: true}
}

func (c *control) handleStatus(m *nats.Msg) any {
	var req protocol.NameRequest
	_ = json.Unmarshal(m.Data, &req)
	c.mu.Lock()
	defer c.mu.Unlock()
	out := protocol.StatusReply{Reply: protocol.Reply{OK: true}}
	for name, p := range c.pipelines {
		if req.Pipeline != "" && name != req.Pipeline {
			continue
		}
		out.Pipelines = append(out.Pipelines, p.status())
	}
	if req.Pipeline != "" && len(out.Pipelines) == 0 {
		return protocol.StatusReply{Reply: protocol.Reply{Error: fmt.Sprintf("no pipeline named %q", req.Pipeline)}}
	}
	sort.Slice(out.Pipelines, func(i, k int) bool { return out.Pipelines[i].Name < out.Pipelines[k].Name })
	return out
}

func (p *pipelineState) status() protocol.PipelineStatus {
	st := protocol.PipelineStatus{Name: p.doc.Name, State: p.state, Reason: p.reason, Error: p.err,
		Submitted: p.submitted, Ended: p.ended, Events: append([]protocol.Event(nil), p.events...)}
	for _, jd := range p.doc.Jobs {
		j := p.jobs[jd.ID]
		st.Jobs = append(st.Jobs, protocol.JobStatus{ID: jd.ID, Name: jd.DisplayName(), Worker: j.worker,
			State: j.state, Error: j.err, Stats: j.stats, Restarts: j.restarts})
	}
	return st
}

func (c *control) saveWorker(info protocol.WorkerInfo, alive bool) {
	if err := c.store.saveWorker(context.Background(), info, alive); err != nil {
		c.log.Error("worker state not saved", "worker", info.Name, "error", err)
	}
}

// event records, saves and publishes one event of a pipeline.
func (c *control) event(name string, jobID int, kind, msg string) {
	c.mu.Lock()
	ev := protocol.Event{Time: time.Now(), Pipeline: name, Job: jobID, Kind: kind, Message: msg}
	var saved savedPipeline
	var snapErr error
	p, ok := c.pipelines[name]
	if ok {
		ev.State = p.state
		p.events = append(p.events, ev)
		if len(p.events) > 200 {
			p.events = p.events[len(p.events)-200:]
		}
		saved, snapErr = p.snapshot()
	}
	c.mu.Unlock()
	// Every change of a pipeline's state comes with an event: saving here keeps KV current.
	if ok {
		if snapErr == nil {
			snapErr = c.store.savePipeline(context.Background(), name, saved)
		}
		if snapErr != nil {
			c.log.Error("pipeline state not saved", "pipeline", name, "error", snapErr)
		}
	}
	c.log.Info("event", "pipeline", name, "job", jobID, "kind", kind, "message", msg)
	data, err := json.Marshal(ev)
	if err == nil {
		err = c.nc.Publish(protocol.EventSubject(name), data)
	}
	if err != nil {
		c.log.Warn("event not published", "pipeline", name, "error", err)
	}
}
