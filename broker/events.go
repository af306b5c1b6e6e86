package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Events: every change of a pipeline recorded, saved and published.

// event records, saves and publishes one event of a pipeline.
func (c *control) event(name string, jobID int, kind, msg string) {
	if c.opts.fenced() != nil {
		return // another broker's control plane acts now (leader.go)
	}
	c.mu.Lock()
	ev := protocol.Event{Time: time.Now(), Pipeline: name, Job: jobID, Kind: kind, Message: msg}
	var saved savedPipeline
	var snapErr error
	p, ok := c.pipelines[name]
	if ok {
		ev.State = string(p.state)
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
