package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Draining: a worker that leaves (SIGTERM) or that the operator drains is cordoned, ends its jobs
// without reporting them ended, and its jobs then move exactly as a dead worker's do
// (workerLost): nothing is lost and nothing runs twice, because the old instance has ended
// before the new one is placed and the new one reads the unacknowledged blocks anew.

// handleLeave drains a worker that is shutting down, on its own request; the answer comes once
// its jobs have moved, from a goroutine of its own (the worker is asked to end its jobs meanwhile).
func (c *control) handleLeave(m *nats.Msg) any {
	var req protocol.WorkerRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.DrainReply{Reply: protocol.Reply{Error: "leave: " + err.Error()}}
	}
	if err := senderIs(m.Subject, req.Worker); err != nil { // a worker drains only itself
		return protocol.DrainReply{Reply: protocol.Reply{Error: err.Error()}}
	}
	go c.respond(m, c.drainWorker(req.Worker, "is shutting down"))
	return nil
}

// handleDrain drains a worker on the operator's request; it keeps running, cordoned.
func (c *control) handleDrain(m *nats.Msg) any {
	var req protocol.WorkerRequest
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return protocol.DrainReply{Reply: protocol.Reply{Error: "drain: " + err.Error()}}
	}
	if req.Group != "" { // every worker of a group, told on its subject (announce.go)
		go c.respond(m, c.drainGroup(req.Group, req.Shutdown))
		return nil
	}
	go c.respond(m, c.drainWorker(req.Worker, "was drained"))
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
func (c *control) drainWorker(name, why string) protocol.DrainReply {
	c.mu.Lock()
	w, ok := c.workers[name]
	if !ok {
		c.mu.Unlock()
		return protocol.DrainReply{Reply: protocol.Reply{Error: fmt.Sprintf("no worker named %q", name)}}
	}
	w.cordoned = true
	alive := w.alive
	var moving []string
	for _, p := range c.pipelines {
		if p.state.terminal() {
			continue
		}
		for _, jd := range p.doc.Jobs {
			if j := p.jobs[jd.ID]; j.worker == name && !j.state.terminal() {
				moving = append(moving, fmt.Sprintf("%s: %s", p.doc.Name, jd.Label()))
			}
		}
	}
	c.mu.Unlock()
	c.log.Info("draining worker", "worker", name, "why", why, "jobs", len(moving))
	if alive {
		ctx, cancel := context.WithTimeout(context.Background(), protocol.LeaveGrace+5*time.Second)
		err := c.requestWorker(ctx, name, protocol.VerbLeave, protocol.LeaveRequest{Grace: protocol.LeaveGrace})
		cancel()
		if err != nil {
			// It did not confirm its jobs ended: they move anyway, as when a worker dies; a
			// stale instance is fenced by its epoch and told to stop when it heartbeats.
			c.log.Warn("worker did not confirm its jobs ended; moving them anyway", "worker", name, "error", err)
		}
	}
	c.workerLost(name, why)
	return protocol.DrainReply{Reply: protocol.Reply{OK: true}, Moved: moving}
}
