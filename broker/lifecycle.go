package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The pipeline lifecycle: submit, job states, the end of a pipeline, stop.

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
	if err := pipeline.Validate(doc, pipeline.ValidateOptions{Types: c.typeSpec}); err != nil {
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

func (c *control) handleJobState(m *nats.Msg) any {
	var s protocol.JobState
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return protocol.Reply{Error: "jobstate: " + err.Error()}
	}
	if err := senderIs(m.Subject, s.Worker); err != nil { // access (issue 12)
		return protocol.Reply{Error: err.Error()}
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
	if !ok || (s.Epoch != 0 && j.epoch != 0 && s.Epoch != j.epoch) || protocol.Terminal(j.state) ||
		(j.worker != "" && s.Worker != j.worker) { // access (issue 12): only the job's worker reports it
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
	if protocol.Terminal(s.State) { // access (issue 12): an ended job's subjects are taken back
		c.access.revoke(s.Worker, s.Pipeline, s.Job)
	}

	msg := fmt.Sprintf("%s %s on worker %s", j.job.Label(), s.State, s.Worker)
	if s.Error != "" {
		msg += ": " + s.Error
	}
	c.event(s.Pipeline, s.Job, "job "+s.State, msg)
	if stopWorkers != nil {
		c.stopOnWorkers(s.Pipeline, stopWorkers)
	}
	if cleanup {
		c.access.revokePipeline(s.Pipeline) // access (issue 12)
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
