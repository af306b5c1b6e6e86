package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Draining: a worker that leaves (SIGTERM) or that the operator drains is cordoned, ends its jobs
// without reporting them ended, and its jobs then move exactly as a dead worker's do
// (workerLost): nothing is lost and nothing runs twice, because the old instance has ended
// before the new one is placed and the new one reads the unacknowledged blocks anew.

// handleLeave drains a worker that is shutting down, on its own request; the answer comes once
// its jobs have moved, from a spawned goroutine (the worker is asked to end its jobs meanwhile),
// so the leaves of workers stopped together do not queue on this subscription.
func (c *control) handleLeave(m *nats.Msg) any {
	var req protocol.WorkerRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.DrainReply{Reply: protocol.Reply{Error: "leave: " + err.Error()}}
	}
	if err := senderIs(m.Subject, req.Worker); err != nil { // a worker drains only itself
		return protocol.DrainReply{Reply: protocol.Reply{Error: err.Error()}}
	}
	c.respondLater(m, "leave "+req.Worker, func(ctx context.Context) any { return c.drainWorker(ctx, req.Worker, "is shutting down") })
	return nil
}

// handleDrain drains a worker on the operator's request; it keeps running, cordoned. The drain
// runs on a spawned goroutine, as a leave's does.
func (c *control) handleDrain(m *nats.Msg) any {
	var req protocol.WorkerRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.DrainReply{Reply: protocol.Reply{Error: "drain: " + err.Error()}}
	}
	if req.Group != "" { // every worker of a group, told on its subject (announce.go)
		c.respondLater(m, "drain group "+req.Group, func(ctx context.Context) any { return c.drainGroup(ctx, req.Group, req.Shutdown) })
		return nil
	}
	c.respondLater(m, "drain "+req.Worker, func(ctx context.Context) any { return c.drainWorker(ctx, req.Worker, "was drained") })
	return nil
}

// handleUncordon lets a drained worker take jobs again; the pending jobs it fits are placed.
func (c *control) handleUncordon(m *nats.Msg) any {
	var req protocol.WorkerRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.Reply{Error: "uncordon: " + err.Error()}
	}
	c.mu.Lock()
	w, ok := c.workers[req.Worker]
	if ok {
		w.cordoned = false
	}
	c.mu.Unlock()
	if !ok {
		return protocol.Reply{Error: fmt.Sprintf("no worker named %q", req.Worker)}
	}
	c.log.Info("worker uncordoned", "worker", req.Worker)
	c.kickPlacement()
	return protocol.Reply{OK: true}
}

// drainWorker cordons a worker, has it end its jobs (bounded by LeaveGrace) and moves them.
func (c *control) drainWorker(ctx context.Context, name, why string) protocol.DrainReply {
	c.mu.Lock()
	w, ok := c.workers[name]
	if !ok {
		c.mu.Unlock()
		return protocol.DrainReply{Reply: protocol.Reply{Error: fmt.Sprintf("no worker named %q", name)}}
	}
	w.cordoned = true
	alive := w.alive
	drained := map[string]bool{name: true}
	moving := c.jobsOn(drained)
	c.mu.Unlock()
	c.log.Info("draining worker", "worker", name, "why", why, "jobs", len(moving))
	if alive {
		ctx, cancel := context.WithTimeout(ctx, protocol.LeaveGrace+5*time.Second)
		err := c.requestWorker(ctx, name, protocol.VerbLeave, protocol.LeaveRequest{Grace: protocol.LeaveGrace})
		cancel()
		if err != nil {
			// It did not confirm its jobs ended: they move anyway, as when a worker dies; a
			// stale instance is fenced by its epoch and told to stop when it heartbeats.
			c.log.Warn("worker did not confirm its jobs ended; moving them anyway", "worker", name, "error", err)
		}
	}
	c.workerLost(name, why)
	return c.drainOutcome(moving, drained)
}

// drainJob is a job a drain has to move.
type drainJob struct {
	p  *pipelineState
	id int
}

// jobsOn lists the running jobs of the given workers. Callers hold mu.
func (c *control) jobsOn(workers map[string]bool) []drainJob {
	var out []drainJob
	for _, p := range c.pipelines {
		if p.state.terminal() {
			continue
		}
		for _, jd := range p.doc.Jobs {
			if j := p.jobs[jd.ID]; workers[j.worker] && !j.state.terminal() {
				out = append(out, drainJob{p, jd.ID})
			}
		}
	}
	return out
}

// drainOutcome says what became of the jobs a drain had to move, once their moves are over:
// moved to another worker, or pending and why (no worker took it, the move failed, or it is
// still on a drained worker because a start or another move of it was under way). A job that
// ended meanwhile (its pipeline stopped) is neither.
func (c *control) drainOutcome(jobs []drainJob, drained map[string]bool) protocol.DrainReply {
	r := protocol.DrainReply{Reply: protocol.Reply{OK: true}}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, dj := range jobs {
		p, j := dj.p, dj.p.jobs[dj.id]
		what := fmt.Sprintf("%s: %s", p.doc.Name, j.job.Label())
		switch {
		case j.state == protocol.StateFailed:
			r.Pending = append(r.Pending, fmt.Sprintf("%s: failed: %s", what, j.err))
		case j.state.terminal():
		case j.state == protocol.StatePending:
			why := j.waiting
			if why == "" {
				why = "no worker took it"
			}
			r.Pending = append(r.Pending, fmt.Sprintf("%s: waits for a worker: %s", what, why))
		case drained[j.worker]:
			why := "not moved"
			if p.launching {
				why = "its pipeline is starting; it moves once the start ends"
			} else if j.placing {
				why = "another move of it is under way"
			}
			r.Pending = append(r.Pending, fmt.Sprintf("%s: still on worker %s: %s", what, j.worker, why))
		default:
			r.Moved = append(r.Moved, fmt.Sprintf("%s to worker %s", what, j.worker))
		}
	}
	sort.Strings(r.Moved)
	sort.Strings(r.Pending)
	return r
}
