package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Status and operations: status, workers, reset.

func (c *control) handleWorkers(*nats.Msg) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	used := c.slotsUsed()
	out := protocol.WorkersReply{Reply: protocol.Reply{OK: true}}
	refused := c.access.Violations() // access (issue 12)
	for _, w := range c.workers {
		out.Workers = append(out.Workers, protocol.WorkerStatus{WorkerInfo: w.info, Alive: w.alive,
			LastHeartbeat: w.heard, Metrics: w.metrics, SlotsUsed: used[w.info.Name], Refused: refused[w.info.Name], Cordoned: w.cordoned})
	}
	sort.Slice(out.Workers, func(i, k int) bool { return out.Workers[i].Name < out.Workers[k].Name })
	return out
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
	if !ok || p.state.terminal() {
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
	out := protocol.StatusReply{Reply: protocol.Reply{OK: true}}
	var refs []pipeRef
	c.mu.Lock()
	for name, p := range c.pipelines {
		if req.Pipeline != "" && name != req.Pipeline {
			continue
		}
		out.Pipelines = append(out.Pipelines, p.status())
		if req.Pipes {
			refs = append(refs, p.pipeRefs()...)
		}
	}
	c.mu.Unlock()
	if len(refs) > 0 { // asked of JetStream without the lock (broker/metrics.go)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		streams := c.pipeStats(ctx, refs)
		cancel()
		for i := range out.Pipelines {
			out.Pipelines[i].Pipes = streams[out.Pipelines[i].Name]
		}
	}
	if req.Pipeline != "" && len(out.Pipelines) == 0 {
		return protocol.StatusReply{Reply: protocol.Reply{Error: fmt.Sprintf("no pipeline named %q", req.Pipeline)}}
	}
	sort.Slice(out.Pipelines, func(i, k int) bool { return out.Pipelines[i].Name < out.Pipelines[k].Name })
	return out
}

func (p *pipelineState) status() protocol.PipelineStatus {
	st := protocol.PipelineStatus{Name: p.doc.Name, State: string(p.state), Reason: p.reason, Error: p.err,
		Submitted: p.submitted, Ended: p.ended, Events: append([]protocol.Event(nil), p.events...),
		Run: p.run, Runs: append(append([]protocol.Run(nil), p.prevRuns...), p.runInfo())}
	for _, jd := range p.doc.Jobs {
		j := p.jobs[jd.ID]
		st.Jobs = append(st.Jobs, protocol.JobStatus{ID: jd.ID, Name: jd.DisplayName(), Worker: j.worker,
			State: string(j.state), Error: j.err, Stats: j.stats.Plus(j.prior), Restarts: j.restarts,
			FailureRestarts: j.failureRestarts, RestartMax: jd.RestartMax()}) // restart.go
	}
	if !p.state.terminal() {
		st.Chained = p.chainedPipes() // chain.go
	}
	return st
}
