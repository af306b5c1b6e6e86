package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Placement: a pipeline placed, prepared and started; pending pipelines retried.

// launch places a pipeline, makes its streams, prepares every job and starts them. Placement is
// all or nothing: where a job cannot be placed, the pipeline stays pending with the reason.
func (c *control) launch(ctx context.Context, p *pipelineState) (string, error) {
	name := p.doc.Name
	c.mu.Lock()
	if p.state != protocol.StatePending {
		state := p.state // stopped (or placed) while it waited
		c.mu.Unlock()
		return string(state), nil
	}
	if p.launching {
		c.mu.Unlock()
		return protocol.StatePending, nil // another launch is offering its jobs right now
	}
	// launching from the first offer on: a second launch of the same pipeline (submit and the
	// placement loop at once) leaves it to this one; failover leaves its jobs to the end of it.
	p.launching = true
	c.epoch++
	epoch := c.epoch
	c.mu.Unlock()
	// Read before the offers go out; run after launched, once a new launch may place it.
	defer c.kickedMeanwhile(c.kicks.Load(), p.doc.Name, 0)
	defer c.launched(p)

	placement, reason := c.placeJobs(ctx, p.doc, epoch) // offers and reservations: no lock held
	c.mu.Lock()
	if p.state != protocol.StatePending {
		state := p.state // stopped while its jobs were offered
		c.mu.Unlock()
		c.releaseReservations(name, placement, epoch)
		return string(state), nil
	}
	if reason != "" {
		again := p.state == protocol.StatePending && p.reason == reason // a retry, nothing new
		if !c.pipeTo(p, pevWaits) {
			c.mu.Unlock()
			return string(p.state), nil
		}
		p.reason = reason
		c.mu.Unlock()
		if !again {
			c.event(name, 0, "pending", reason)
		}
		return protocol.StatePending, nil
	}
	for id, w := range placement {
		j := p.jobs[id]
		j.worker, j.epoch = w, epoch
		c.jobTo(j, jevAssigned)
	}
	c.pipeTo(p, pevPlaced)
	p.reason = ""
	chains := p.chains() // the pipes whose ends were placed on one worker (chain.go)
	c.mu.Unlock()

	if err := c.createPipes(ctx, p.doc, epoch); err != nil {
		c.abort(p, err)
		return "", err
	}
	assigns := c.assignments(p, placement, func(int) uint64 { return epoch }, chains)
	if err := c.prepareAll(ctx, assigns); err != nil {
		c.abort(p, err)
		if allRefusals(err) {
			return "", invalidError{err} // the workers said no: the document must change
		}
		return "", err
	}
	placed := make([]eventNote, 0, len(assigns))
	for _, a := range assigns {
		placed = append(placed, eventNote{a.a.Job.ID, "placed", fmt.Sprintf("%s on worker %s", a.a.Job.Label(), a.worker)})
	}
	c.events(name, placed...) // one save for all
	c.mu.Lock()
	if p.state == protocol.StateStarting {
		c.pipeTo(p, pevStarted)
	}
	c.mu.Unlock()
	if err := c.startAll(ctx, assigns); err != nil {
		c.mu.Lock()
		state, ended := p.state, p.state.terminal()
		c.mu.Unlock()
		if ended {
			// A job that started first failed at once (or the pipeline was stopped): its end
			// had the workers drop the jobs not started yet, whose starts then found nothing to
			// start. The pipeline's own end stands, and submit answers with it, not with those
			// starts (TestFailuresNameTheJob saw "job 3 was not prepared" once in ~10 runs).
			return string(state), nil
		}
		c.abort(p, err)
		return "", err
	}
	c.event(name, 0, "started", "all jobs started")
	return protocol.StateRunning, nil
}

// launched ends a launch: the jobs whose worker was lost or cordoned meanwhile (failover left
// them to launch) move now.
func (c *control) launched(p *pipelineState) {
	c.mu.Lock()
	p.launching = false
	var lost, restarts []jobRef
	from := map[int]string{}
	if !p.state.terminal() {
		for id, j := range p.jobs {
			if w, ok := c.workers[j.worker]; j.worker != "" && !j.state.terminal() && (!ok || !w.alive || w.cordoned) {
				lost = append(lost, jobRef{p.doc.Name, id})
				from[id] = j.worker
			}
			if j.restartDue() { // it failed during the launch and its backoff has passed (restart.go)
				restarts = append(restarts, jobRef{p.doc.Name, id})
			}
		}
	}
	c.mu.Unlock()
	now := time.Now()
	for _, r := range lost {
		c.event(r.pipeline, r.job, "worker lost", fmt.Sprintf("job %d: worker %s was lost while the pipeline started", r.job, from[r.job]))
		c.relocate(r, from[r.job], now)
	}
	for _, r := range restarts {
		c.relocate(r, "", now)
	}
}

type placedAssignment struct {
	worker string
	a      protocol.Assignment
}

// assignments builds the assignment of every job of doc; epochOf gives each job's epoch and
// chains the chained pipes (chain.go).
func (c *control) assignments(p *pipelineState, placement map[int]string, epochOf func(job int) uint64, chains map[int]uint64) []placedAssignment {
	doc := p.doc
	ends := doc.Endpoints()
	binding := func(pipeID int) protocol.PipeBinding {
		pp := doc.PipeByID(pipeID)
		src, dst := doc.JobByID(ends[pipeID][0]), doc.JobByID(ends[pipeID][1])
		b := protocol.PipeBinding{
			ID: pipeID, Subject: protocol.PipeSubject(doc.Name, pipeID), Stream: protocol.PipeStream(doc.Name, pipeID),
			Codec: pp.EffectiveCodec(), CodecDefault: pp.Codec == "", BlockSize: pp.BlockSize,
			BlockCount: pp.EffectiveBlockCount(), Async: pp.IsAsync(), Optional: pp.Optional, HeadSize: 1,
			Realtime: pp.IsRealtime(), Dtype: pp.Dtype, Chain: chains[pipeID],
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

// prepareAll grants every job's subjects to its worker, all with one reload of the server
// (DESIGN.md §10), then asks each worker to build its jobs; it reports every failure at once.
func (c *control) prepareAll(ctx context.Context, assigns []placedAssignment) error {
	if err := c.access.grantPlaced(assigns); err != nil {
		if len(assigns) > 0 {
			c.access.revokePipeline(assigns[0].a.Pipeline) // what was granted: none is prepared
		}
		return err
	}
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

// startAll starts every prepared job, the requests all sent at once (each worker answers its
// own in turn); it reports every failure at once.
func (c *control) startAll(ctx context.Context, assigns []placedAssignment) error {
	errs := make([]error, len(assigns))
	var wg sync.WaitGroup
	for i, a := range assigns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.requestWorker(ctx, a.worker, protocol.VerbStart, a.a.Ref()); err != nil {
				errs[i] = fmt.Errorf("%s on worker %s: start: %w", a.a.Job.Label(), a.worker, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// placePending retries the pipelines waiting for workers.
func (c *control) placePending() {
	c.mu.Lock()
	var waiting []*pipelineState
	var stranded []jobRef
	for name, p := range c.pipelines {
		switch p.state {
		case protocol.StatePending:
			waiting = append(waiting, p)
		case protocol.StateDegraded:
			for id, j := range p.jobs {
				if j.state == protocol.StatePending && !j.backoff { // a restart's backoff has its own timer (restart.go)
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
		c.relocate(r, "", now)
	}
}

// movable returns the job r if it is still to be moved from worker from ("" for a pending job):
// its pipeline is neither ended nor being launched, and the job has neither ended nor moved.
// relocate checks it before offering the job and again after. Callers hold mu.
func (c *control) movable(r jobRef, from string) (*pipelineState, *jobState, bool) {
	p, ok := c.pipelines[r.pipeline]
	if !ok || p.state.terminal() || p.launching {
		return nil, nil, false
	}
	j, ok := p.jobs[r.job]
	if !ok || j.worker != from || j.state.terminal() {
		return nil, nil, false
	}
	return p, j, true
}

// kickedMeanwhile is deferred by a placement that started when kicks was at gen: if it left the
// job (or, job 0, the pipeline) pending while a kick came — a worker joined or a slot was freed
// after the offers went out, or a second placement of it stepped aside — it asks for another pass.
func (c *control) kickedMeanwhile(gen uint64, pipelineName string, job int) {
	if c.kicks.Load() == gen {
		return
	}
	c.mu.Lock()
	pending := false
	if p, ok := c.pipelines[pipelineName]; ok {
		if job == 0 {
			pending = p.state == protocol.StatePending
		} else if j, ok := p.jobs[job]; ok {
			pending = j.state == protocol.StatePending
		}
	}
	c.mu.Unlock()
	if pending {
		c.kickPlacement()
	}
}
