package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The pipeline lifecycle: submit, job states, the end of a pipeline, stop.

type pipelineState struct {
	doc       *pipeline.Pipeline
	state     pipeState
	reason    string
	err       string
	submitted time.Time
	run       int            // the submission's number among the runs of this name, from 1
	prevRuns  []protocol.Run // the earlier runs of this name, oldest first (at most maxRuns)
	ended     time.Time
	jobs      map[int]*jobState
	events    []protocol.Event
	cleaned   bool
	deps      map[int]string // executable job id → packed dependencies object
	endCh     chan struct{}  // closed when the pipeline reaches a final state
	launching bool           // launch is under way: failover leaves its jobs to launch
	removing  bool           // marvelo rm is forgetting it (remove.go): its name is not free yet
	ends      map[int][2]int // the document's pipe ends, made once (chain.go: endpoints)
	chainable map[int]bool   // its chainable pipes, made with ends
}

type jobState struct {
	job      *pipeline.Job
	worker   string
	state    jobPhase
	err      string
	stats    protocol.JobStats // as its current instance last reported them
	prior    protocol.JobStats // the counts of its earlier instances in this run (it moved)
	epoch    uint64
	restarts int
	// placing: a move of the job is offering it (relocate, placement by offer); another move
	// leaves it alone meanwhile.
	placing bool
	// recovered: loaded from the saved state by a restarted broker; its worker's deliveries in
	// flight were lost with the broker, so it resumes with new consumers once the worker is back.
	recovered bool
	// waiting: why its last move found no worker (it is pending); a drain reports it.
	waiting string
	// unneeded: every consumer of its outputs has ended (endUpstream): its worker was told to
	// stop it, and its own report ends it, as finished, with its final counts.
	unneeded bool
	// The restart policy (restart.go; saved with the pipeline but for backoff and restartNote).
	// failureRestarts: the restarts after a failure so far. failSQN and failStreak: the round the
	// last failure was at (0 unknown) and how many failures in a row were at it. skipSQN: the
	// round its instances skip as a dummy (a poison round). backoff: it waits out the backoff of
	// a restart, and placement leaves it alone. restartNote: a restart is under way ("restart 1
	// of 5"): the move that places it says "restarted".
	failureRestarts int
	failSQN         uint64
	failStreak      int
	skipSQN         uint64
	backoff         bool
	restartNote     string
}

func (c *control) handleSubmit(m *nats.Msg) any {
	var req protocol.SubmitRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: "submit: " + err.Error()}}
	}
	doc, err := pipeline.Parse(req.Document)
	if err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: err.Error()}, Invalid: true}
	}
	if err := pipeline.Validate(doc, pipeline.ValidateOptions{Types: c.typeSpec}); err != nil {
		return protocol.SubmitReply{Reply: protocol.Reply{Error: err.Error()}, Invalid: true, Pipeline: doc.Name}
	}
	c.mu.Lock()
	old, hadOld := c.pipelines[doc.Name]
	if hadOld && !old.state.terminal() {
		c.mu.Unlock()
		why := "stop it first (marvelo stop " + doc.Name + ")"
		if old.state == protocol.StateStopping {
			why = "its stop has not ended yet"
		}
		return protocol.SubmitReply{Reply: protocol.Reply{Error: fmt.Sprintf("pipeline %s is still %s: %s", doc.Name, old.state, why)}, Pipeline: doc.Name}
	}
	if hadOld && old.removing {
		c.mu.Unlock()
		return protocol.SubmitReply{Reply: protocol.Reply{Error: fmt.Sprintf("pipeline %s is being removed (marvelo rm): submit it again in a moment", doc.Name)}, Pipeline: doc.Name}
	}
	p := &pipelineState{doc: doc, state: protocol.StatePending, submitted: time.Now(), jobs: map[int]*jobState{}, deps: req.Dependencies,
		endCh: make(chan struct{}), run: 1}
	if hadOld {
		p.run = old.run + 1
		p.prevRuns = append(append([]protocol.Run(nil), old.prevRuns...), old.runInfo())
		if len(p.prevRuns) > maxRuns {
			p.prevRuns = p.prevRuns[len(p.prevRuns)-maxRuns:]
		}
	}
	for i := range doc.Jobs {
		j := &doc.Jobs[i]
		p.jobs[j.ID] = &jobState{job: j, state: protocol.StatePending}
	}
	c.pipelines[doc.Name] = p
	c.mu.Unlock()
	c.event(doc.Name, 0, "submitted", fmt.Sprintf("%d jobs, %d pipes", len(doc.Jobs), len(doc.Endpoints())))
	state, err := c.launch(context.Background(), p)
	if err != nil {
		invalid := errors.As(err, new(invalidError))
		if invalid {
			c.forgetRefused(p, old)
		}
		return protocol.SubmitReply{Reply: protocol.Reply{Error: err.Error()}, Pipeline: doc.Name, Invalid: invalid}
	}
	return protocol.SubmitReply{Reply: protocol.Reply{OK: true}, Pipeline: doc.Name, State: state}
}

// maxRuns is how many earlier runs of a name the status keeps.
const maxRuns = 20

// runInfo describes the pipeline's run. Callers hold mu.
func (p *pipelineState) runInfo() protocol.Run {
	return protocol.Run{ID: p.run, State: string(p.state), Submitted: p.submitted, Ended: p.ended}
}

// forgetRefused removes a run the workers refused because of its document: it never existed,
// and the run it replaced (prev, or nil) is the pipeline's latest again.
func (c *control) forgetRefused(p *pipelineState, prev *pipelineState) {
	name := p.doc.Name
	var saved *savedPipeline
	c.mu.Lock()
	if c.pipelines[name] != p {
		c.mu.Unlock()
		return
	}
	if prev != nil {
		c.pipelines[name] = prev
		if sp, err := prev.snapshot(); err == nil {
			saved = &sp
		}
	} else {
		delete(c.pipelines, name)
	}
	c.mu.Unlock()
	if err := c.store.deletePipeline(context.Background(), name, saved); err != nil {
		c.log.Error("refused pipeline not forgotten", "pipeline", name, "error", err)
	}
	c.log.Info("document refused at submit; no pipeline kept", "pipeline", name)
}

// abort ends a pipeline that could not start: its jobs are stopped and its pipes removed.
func (c *control) abort(p *pipelineState, err error) {
	c.mu.Lock()
	p.err = err.Error()
	c.endPipeline(p, pevAborted)
	workers := map[string]bool{}
	for _, j := range p.jobs {
		if j.worker != "" {
			workers[j.worker] = true
		}
		if !j.state.terminal() {
			c.jobTo(j, jevStopped)
		}
	}
	c.mu.Unlock()
	c.stopOnWorkers(c.context(), p.doc.Name, workers)
	c.deletePipes(p.doc)
	c.event(p.doc.Name, 0, "failed", err.Error())
}

func (c *control) stopOnWorkers(ctx context.Context, name string, workers map[string]bool) {
	for w := range workers {
		if err := c.requestWorker(ctx, w, protocol.VerbStop, protocol.JobRef{Pipeline: name}); err != nil {
			c.log.Warn("stop request failed", "pipeline", name, "worker", w, "error", err)
		}
	}
}

func (c *control) handleJobState(m *nats.Msg) any {
	var s protocol.JobState
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return protocol.Reply{Error: "jobstate: " + err.Error()}
	}
	if err := senderIs(m.Subject, s.Worker); err != nil { // access (issue 12)
		return protocol.Reply{Error: err.Error()}
	}
	if s.Notice != "" {
		c.applyNotice(s) // engine: a notice changes no state (notice.go)
		return protocol.Reply{OK: true}
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
	if !ok || (s.Epoch != 0 && j.epoch != 0 && s.Epoch != j.epoch) || j.state.terminal() ||
		s.Worker != j.worker { // only the job's worker reports it (access, issue 12); a pending job has none
		if ok && j.unneeded && s.Worker == j.worker && s.Epoch == j.epoch && protocol.Terminal(s.State) {
			j.stats = s.Stats // the last counts of a job ended for want of consumers
		}
		c.mu.Unlock()
		return // a stale instance (its job moved, or waits pending), or a job already ended
	}
	ev, ok := reportEvent(s.State)
	if ok && j.unneeded && ev == jevStopped {
		ev = jevFinished // stopped because what it makes goes nowhere: its work is done
	}
	if !ok {
		c.mu.Unlock()
		c.log.Warn("job state report with an unknown state", "pipeline", s.Pipeline, "job", s.Job, "state", s.State)
		return
	}
	exhausted := "" // why the job's restart policy did not restart it (restart.go)
	if ev == jevFailed && !p.state.terminal() && p.state != protocol.StateStopping && !j.unneeded {
		plan, restart, why := c.planRestart(p, j, s)
		if restart {
			c.mu.Unlock()
			c.restartAfter(s, plan)
			return
		}
		exhausted = why
	}
	if err := j.to(ev); err != nil {
		c.mu.Unlock()
		c.log.Warn("job state report refused", "worker", s.Worker, "error", err)
		return
	}
	j.err, j.stats = s.Error, s.Stats
	var unneeded []upstreamEnd
	if ev != jevFailed && !p.state.terminal() && p.state != protocol.StateStopping {
		unneeded = c.endUpstream(p) // upstream ending (issue 23)
	}
	var stopWorkers map[string]bool
	var pipelineEvent, pipelineMsg string
	switch {
	case ev == jevFailed && !p.state.terminal() && p.state != protocol.StateStopping:
		p.err = fmt.Sprintf("%s: %s", j.job.Label(), s.Error)
		if exhausted != "" {
			p.err = fmt.Sprintf("%s failed and %s: %s", j.job.Label(), exhausted, s.Error)
		}
		c.endPipeline(p, pevJobFailed)
		stopWorkers = c.otherWorkers(p)
		pipelineEvent, pipelineMsg = "failed", p.err
	case allTerminal(p) && p.state == protocol.StateStopping:
		c.endPipeline(p, pevAllEnded)
		pipelineEvent, pipelineMsg = "stopped", "stopped on request"
	case allTerminal(p) && !p.state.terminal():
		c.endPipeline(p, pevAllEnded)
		pipelineEvent, pipelineMsg = "finished", fmt.Sprintf("all %d jobs finished in %s", len(p.jobs), p.ended.Sub(p.submitted).Round(time.Millisecond))
	}
	cleanup := allTerminal(p) && p.state.terminal() && !p.cleaned
	if cleanup {
		p.cleaned = true
	}
	c.mu.Unlock()
	if protocol.Terminal(s.State) { // access (issue 12): an ended job's subjects are taken back
		c.revokeEnded(s)
		c.kickPlacement() // a slot is free
	}

	msg := fmt.Sprintf("%s %s on worker %s", j.job.Label(), s.State, s.Worker)
	if s.SQN != 0 && ev == jevFailed {
		msg += fmt.Sprintf(" at SQN %d", s.SQN)
	}
	if exhausted != "" {
		msg += "; " + exhausted
	}
	if s.Error != "" {
		msg += ": " + s.Error
	}
	c.event(s.Pipeline, s.Job, "job "+s.State, msg)
	c.stopUnneeded(c.context(), s.Pipeline, unneeded) // before the pipes go with a cleanup
	if stopWorkers != nil {
		c.stopOnWorkers(c.context(), s.Pipeline, stopWorkers)
	}
	if cleanup {
		c.access.revokePipeline(s.Pipeline) // access (issue 12)
		c.deletePipes(p.doc)
	}
	if pipelineEvent != "" {
		c.event(s.Pipeline, 0, pipelineEvent, pipelineMsg)
	}
}

// upstreamEnd is a job ended because every consumer of its outputs had ended.
type upstreamEnd struct {
	ref    protocol.JobRef // its instance; Drain for a source (its stream ends cleanly)
	worker string          // "" for a job that was pending
	label  string
	why    string // the consumers and their states
}

// endUpstream ends every job of p all of whose consumers have ended (upstream ending, issue
// 23): what it makes goes nowhere. Without it a source whose consumers had all ended — an endless
// clock on the optional input of a job that finished — ran for ever and the pipeline never
// finished. A job placed on a worker is told to stop (stopUnneeded) and ends with its own report,
// as finished, with its final counts: the pipeline is not finished before the counts are in (a job
// finishing on its own at the same moment simply reports it). A job that was pending ends now,
// and so on up the graph. Callers hold mu.
func (c *control) endUpstream(p *pipelineState) []upstreamEnd {
	ends := p.doc.Endpoints()
	var out []upstreamEnd
	for changed := true; changed; {
		changed = false
		for _, jd := range p.doc.Jobs {
			j := p.jobs[jd.ID]
			if j.state.terminal() || j.unneeded || len(jd.Outputs) == 0 {
				continue
			}
			var consumers []string
			for _, pipe := range jd.Outputs {
				to := ends[pipe][1]
				if to == 0 || !p.jobs[to].state.terminal() {
					consumers = nil // a consumer still running (or a pipe nobody reads)
					break
				}
				consumers = append(consumers, fmt.Sprintf("%s %s", p.jobs[to].job.Label(), p.jobs[to].state))
			}
			if consumers == nil {
				continue
			}
			worker, epoch := j.worker, j.epoch
			if worker != "" {
				j.unneeded = true // its report ends it
			} else if !c.jobTo(j, jevUnneeded) {
				continue
			} else {
				j.unneeded, changed = true, true // nothing runs: ended now, its producers may follow
			}
			out = append(out, upstreamEnd{ref: protocol.JobRef{Pipeline: p.doc.Name, Job: jd.ID, Epoch: epoch, Drain: len(jd.Inputs) == 0},
				worker: worker, label: jd.Label(), why: strings.Join(consumers, ", ")})
		}
	}
	return out
}

// stopUnneeded has the workers stop the jobs endUpstream found unneeded and records why. A
// source is drained (its stream ends as at the end of its count), any other job stopped; its
// report then ends it. A worker that does not answer is told again when it heartbeats the
// instance (a stale instance, registry.go).
func (c *control) stopUnneeded(ctx context.Context, name string, ended []upstreamEnd) {
	for _, u := range ended {
		if u.worker == "" {
			c.event(name, u.ref.Job, "job finished", fmt.Sprintf("%s finished: every consumer of its output has ended (%s)", u.label, u.why))
			continue // it was pending: nothing runs
		}
		c.event(name, u.ref.Job, "job ending", fmt.Sprintf("%s ends: every consumer of its output has ended (%s)", u.label, u.why))
		if err := c.requestWorker(ctx, u.worker, protocol.VerbStop, u.ref); err != nil {
			c.log.Warn("stop of a job whose consumers have ended failed", "pipeline", name, "job", u.ref.Job, "worker", u.worker, "error", err)
		}
	}
	if len(ended) > 0 {
		c.kickPlacement() // slots are free
	}
}

// otherWorkers lists the workers still running jobs of p. Callers hold mu.
func (c *control) otherWorkers(p *pipelineState) map[string]bool {
	ws := map[string]bool{}
	for _, j := range p.jobs {
		if j.worker != "" && !j.state.terminal() {
			ws[j.worker] = true
		}
	}
	return ws
}

func allTerminal(p *pipelineState) bool {
	for _, j := range p.jobs {
		if !j.state.terminal() {
			return false
		}
	}
	return true
}

// handleStop stops a pipeline and answers once it has ended (see stopPipeline); the stop runs
// on a spawned goroutine, so a stop never holds up the next request (another stop).
func (c *control) handleStop(m *nats.Msg) any {
	var req protocol.StopRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.StopReply{Reply: protocol.Reply{Error: "stop: " + err.Error()}}
	}
	c.respondLater(m, "stop "+req.Pipeline, func(ctx context.Context) any { return c.stopPipeline(ctx, req) })
	return nil
}

// stopPipeline drains a pipeline (its sources end, the other jobs finish what is in flight) for
// at most the grace, then stops outright what still runs and waits StopKillWait for the workers
// to report it; a job still unreported then (its worker does not answer) is recorded stopped
// here. So nothing stays stopping past grace + StopKillWait, and the reply names the forced jobs.
// A control plane that stops meanwhile (ctx) cuts the wait short and says so.
func (c *control) stopPipeline(ctx context.Context, req protocol.StopRequest) protocol.StopReply {
	grace := req.Grace
	if grace <= 0 {
		grace = protocol.DefaultStopGrace
	}
	if req.Force {
		grace = 0
	}
	c.mu.Lock()
	p, ok := c.pipelines[req.Pipeline]
	if !ok {
		c.mu.Unlock()
		return protocol.StopReply{Reply: protocol.Reply{Error: fmt.Sprintf("no pipeline named %q", req.Pipeline)}}
	}
	if p.state.terminal() {
		state := p.state
		var still []stuckJob
		if req.Force {
			still = stillRunning(p)
		}
		c.mu.Unlock()
		if len(still) > 0 {
			return c.forceStopEnded(ctx, req.Pipeline, state, still)
		}
		return protocol.StopReply{Reply: protocol.Reply{Error: fmt.Sprintf("pipeline %s is already %s", req.Pipeline, state)}}
	}
	first := p.state != protocol.StateStopping
	c.pipeTo(p, pevStop)
	for _, j := range p.jobs {
		if j.worker == "" && !j.state.terminal() {
			c.jobTo(j, jevStopped) // pending, never placed
		}
	}
	workers := c.otherWorkers(p)
	done := allTerminal(p)
	if done {
		c.endPipeline(p, pevAllEnded)
	}
	var stuck []stuckJob
	if first && grace > 0 {
		stuck = undrainable(p)
	}
	ended := p.endCh
	c.mu.Unlock()
	if done {
		c.event(req.Pipeline, 0, "stopped", "stopped on request")
		return c.stopReply(req.Pipeline, nil)
	}
	if first {
		msg := fmt.Sprintf("draining for at most %s: sources end, the other jobs finish what is in flight", grace)
		if len(stuck) > 0 {
			var names []string
			for _, s := range stuck {
				names = append(names, s.label)
			}
			msg += "; stopped at once, since a job that feeds them is not running: " + strings.Join(names, ", ")
		}
		c.event(req.Pipeline, 0, "stopping", msg)
		// What cannot drain stops now: waiting for an end its input will never carry would
		// only spend the grace.
		for _, s := range stuck {
			if err := c.requestWorker(ctx, s.worker, protocol.VerbStop, s.ref); err != nil {
				c.log.Warn("stop request failed", "pipeline", req.Pipeline, "job", s.ref.Job, "worker", s.worker, "error", err)
			}
		}
		if grace > 0 {
			for w := range workers {
				ref := protocol.JobRef{Pipeline: req.Pipeline, Drain: true}
				if err := c.requestWorker(ctx, w, protocol.VerbStop, ref); err != nil {
					c.log.Warn("drain request failed", "pipeline", req.Pipeline, "worker", w, "error", err)
				}
			}
		}
	}
	if waitClosed(ctx, ended, grace) {
		return c.stopReply(req.Pipeline, nil)
	}
	if ctx.Err() != nil {
		return c.stopCutShort(req.Pipeline)
	}
	forced := c.forceStop(ctx, req.Pipeline, grace)
	if !waitClosed(ctx, ended, protocol.StopKillWait) {
		if ctx.Err() != nil {
			return c.stopCutShort(req.Pipeline)
		}
		c.recordStopped(req.Pipeline)
	}
	return c.stopReply(req.Pipeline, forced)
}

// stopCutShort answers a stop whose wait the control plane's end cut short.
func (c *control) stopCutShort(name string) protocol.StopReply {
	r := c.stopReply(name, nil)
	r.OK = false
	r.Error = fmt.Sprintf("stop of %s cut short: the broker's control plane stopped (its pipeline is %s; a broker that takes over goes on with it)", name, r.State)
	return r
}

// stuckJob is a running job a stop cannot drain.
type stuckJob struct {
	ref    protocol.JobRef
	worker string
	label  string
}

// undrainable lists the running jobs of p that a drain cannot end: an input of theirs comes,
// directly or through other such jobs, from a job that is not running (pending, stopped or
// failed: it will never end its stream), so they would wait out the whole grace. A finished
// producer ended its stream and is no obstacle. Callers hold mu.
func undrainable(p *pipelineState) []stuckJob {
	ends := p.doc.Endpoints()
	can := map[int]bool{}
	for id, j := range p.jobs {
		can[id] = j.state == protocol.StateFinished || !j.state.terminal() && j.worker != "" && j.state != protocol.StatePending
	}
	for changed := true; changed; {
		changed = false
		for id, j := range p.jobs {
			if !can[id] || j.state.terminal() {
				continue
			}
			for _, pipe := range j.job.Inputs {
				if from := ends[pipe][0]; from != 0 && !can[from] {
					can[id], changed = false, true
					break
				}
			}
		}
	}
	var out []stuckJob
	for _, jd := range p.doc.Jobs {
		if j := p.jobs[jd.ID]; !can[jd.ID] && !j.state.terminal() && j.worker != "" {
			out = append(out, stuckJob{ref: protocol.JobRef{Pipeline: p.doc.Name, Job: jd.ID, Epoch: j.epoch}, worker: j.worker, label: jd.Label()})
		}
	}
	return out
}

// waitClosed waits at most d for ch to be closed, or until ctx ends.
func waitClosed(ctx context.Context, ch <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// stopReply reports the end state of a stopped pipeline.
func (c *control) stopReply(name string, forced []string) protocol.StopReply {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := protocol.StopReply{Reply: protocol.Reply{OK: true}, Forced: forced}
	if p, ok := c.pipelines[name]; ok {
		r.State = string(p.state)
	}
	return r
}

// forceStop stops outright the jobs of a pipeline that did not drain in time and returns them.
func (c *control) forceStop(ctx context.Context, name string, grace time.Duration) []string {
	c.mu.Lock()
	p, ok := c.pipelines[name]
	if !ok || p.state != protocol.StateStopping {
		c.mu.Unlock()
		return nil
	}
	workers := c.otherWorkers(p)
	var forced []string
	for _, jd := range p.doc.Jobs {
		if j := p.jobs[jd.ID]; !j.state.terminal() {
			forced = append(forced, fmt.Sprintf("%s on worker %s", jd.Label(), j.worker))
		}
	}
	c.mu.Unlock()
	if len(forced) > 0 {
		c.log.Warn("pipeline did not drain in time; stopping its jobs", "pipeline", name, "grace", grace, "jobs", forced)
		c.event(name, 0, "forced", fmt.Sprintf("stopped outright after %s: %s", grace, strings.Join(forced, ", ")))
	}
	c.stopOnWorkers(ctx, name, workers)
	return forced
}

// stillRunning lists the jobs of an ended pipeline that a worker still runs: placed, and never
// reported ended (the stop that followed a failure did not reach the worker, or the job did not
// heed it). Callers hold mu.
func stillRunning(p *pipelineState) []stuckJob {
	var out []stuckJob
	for _, jd := range p.doc.Jobs {
		if j := p.jobs[jd.ID]; j.worker != "" && !j.state.terminal() {
			out = append(out, stuckJob{ref: protocol.JobRef{Pipeline: p.doc.Name, Job: jd.ID, Epoch: j.epoch}, worker: j.worker, label: jd.Label()})
		}
	}
	return out
}

// forceStopEnded is stop --force of a pipeline that has ended (failed, say) while its workers
// still run some of its jobs: each worker is told to stop its job outright, the reports are
// awaited for StopKillWait (a job still unreported then is recorded stopped), and the reply names
// the jobs stopped. The pipeline keeps its end state, so the reply is still an error.
func (c *control) forceStopEnded(ctx context.Context, name string, state pipeState, jobs []stuckJob) protocol.StopReply {
	names := make([]string, len(jobs))
	for i, s := range jobs {
		names[i] = fmt.Sprintf("%s on worker %s", s.label, s.worker)
	}
	c.log.Warn("forced stop of an ended pipeline whose jobs still run; stopping them", "pipeline", name, "state", state, "jobs", names)
	c.event(name, 0, "forced", fmt.Sprintf("pipeline already %s; stopped outright what still ran: %s", state, strings.Join(names, ", ")))
	for _, s := range jobs {
		if err := c.requestWorker(ctx, s.worker, protocol.VerbStop, s.ref); err != nil {
			c.log.Warn("stop request failed", "pipeline", name, "job", s.ref.Job, "worker", s.worker, "error", err)
		}
	}
	c.awaitEnded(ctx, name, jobs, protocol.StopKillWait)
	c.recordJobsStopped(name, jobs)
	return protocol.StopReply{
		Reply: protocol.Reply{Error: fmt.Sprintf("pipeline %s is already %s; stopped outright the jobs it still ran: %s", name, state, strings.Join(names, ", "))},
		State: string(state), Forced: names,
	}
}

// awaitEnded waits at most d (or until ctx ends) for the given jobs of pipeline name to report
// their end.
func (c *control) awaitEnded(ctx context.Context, name string, jobs []stuckJob, d time.Duration) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !c.jobsEnded(name, jobs) {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// jobsEnded reports whether every one of the jobs is in a final state (or gone with its pipeline).
func (c *control) jobsEnded(name string, jobs []stuckJob) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pipelines[name]
	if !ok {
		return true
	}
	for _, s := range jobs {
		if j, ok := p.jobs[s.ref.Job]; ok && j.epoch == s.ref.Epoch && !j.state.terminal() {
			return false
		}
	}
	return true
}

// recordJobsStopped records as stopped the jobs of an ended pipeline whose workers did not
// report the forced stop, and cleans the pipeline up once every job has ended.
func (c *control) recordJobsStopped(name string, jobs []stuckJob) {
	c.mu.Lock()
	p, ok := c.pipelines[name]
	if !ok {
		c.mu.Unlock()
		return
	}
	var recorded []stuckJob
	for _, s := range jobs {
		if j, ok := p.jobs[s.ref.Job]; ok && j.epoch == s.ref.Epoch && !j.state.terminal() && c.jobTo(j, jevStopped) {
			j.err = fmt.Sprintf("worker %s did not report the stop", j.worker)
			recorded = append(recorded, s)
		}
	}
	cleanup := allTerminal(p) && p.state.terminal() && !p.cleaned
	if cleanup {
		p.cleaned = true
	}
	c.mu.Unlock()
	for _, s := range recorded {
		c.access.revoke(s.worker, name, s.ref.Job) // access (issue 12)
		c.event(name, s.ref.Job, "job stopped", fmt.Sprintf("%s stopped on worker %s: recorded without its worker's report", s.label, s.worker))
	}
	if cleanup {
		c.access.revokePipeline(name) // access (issue 12)
		c.deletePipes(p.doc)
	}
}

// recordStopped ends a stopping pipeline whose workers did not report its last jobs: they are
// recorded stopped (the worker, if it comes back, is told to stop a stale instance).
func (c *control) recordStopped(name string) {
	c.mu.Lock()
	p, ok := c.pipelines[name]
	if !ok || p.state != protocol.StateStopping {
		c.mu.Unlock()
		return
	}
	var jobs []string
	for _, jd := range p.doc.Jobs {
		if j := p.jobs[jd.ID]; !j.state.terminal() {
			c.jobTo(j, jevStopped)
			j.err = fmt.Sprintf("worker %s did not report the stop", j.worker)
			jobs = append(jobs, jd.Label())
		}
	}
	c.endPipeline(p, pevAllEnded)
	cleanup := !p.cleaned
	p.cleaned = true
	c.mu.Unlock()
	c.event(name, 0, "stopped", fmt.Sprintf("stopped on request; recorded without their worker's report: %s", strings.Join(jobs, ", ")))
	if cleanup {
		c.deletePipes(p.doc)
	}
}

// endPipeline applies an event that ends a pipeline and stamps its end. Callers hold mu.
func (c *control) endPipeline(p *pipelineState, ev pipeEvent) {
	if err := p.to(ev); err != nil {
		c.log.Warn("pipeline transition refused", "error", err)
		return
	}
	if p.state.terminal() {
		p.ended = time.Now()
	}
}

// jobTo applies an event to a job, logging a transition the table refuses. Callers hold mu.
func (c *control) jobTo(j *jobState, ev jobEvent) bool {
	if err := j.to(ev); err != nil {
		c.log.Warn("job transition refused", "error", err)
		return false
	}
	return true
}

// pipeTo applies an event to a pipeline that does not end it, logging a refusal. Callers hold mu.
func (c *control) pipeTo(p *pipelineState, ev pipeEvent) bool {
	if err := p.to(ev); err != nil {
		c.log.Warn("pipeline transition refused", "error", err)
		return false
	}
	return true
}
