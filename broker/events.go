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
	line := protocol.LogLine{Time: ev.Time, Pipeline: name, Job: jobID, Name: "pipeline", Level: protocol.LevelEvent, Kind: kind, Text: msg}
	var saved savedPipeline
	var snapErr error
	p, ok := c.pipelines[name]
	save := ok && !p.removing // a pipeline being removed is not saved back (remove.go)
	if ok {
		if j := p.jobs[jobID]; j != nil {
			line.Name, line.Worker = j.job.DisplayName(), j.worker
		}
		ev.State = string(p.state)
		p.events = append(p.events, ev)
		if len(p.events) > 200 {
			p.events = p.events[len(p.events)-200:]
		}
		saved, snapErr = p.snapshot()
	}
	c.mu.Unlock()
	// Every change of a pipeline's state comes with an event: saving here keeps KV current.
	if save {
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
	// The event is also a line of the job's log (job 0: the pipeline's), kept with its output:
	// marvelo logs --job N shows the job placed, its worker lost, moved, failed, among its lines.
	if data, err = json.Marshal(line); err == nil {
		err = c.nc.Publish(protocol.LogSubject(name, jobID), data)
	}
	if err != nil {
		c.log.Warn("event not written to the log", "pipeline", name, "error", err)
	}
}
