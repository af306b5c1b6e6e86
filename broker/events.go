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
	c.events(name, eventNote{jobID, kind, msg})
}

// eventNote is one event of a pipeline, for events.
type eventNote struct {
	job       int
	kind, msg string
}

// events records several events of a pipeline at once, saves the pipeline once, and publishes
// each: what placement does for the jobs it placed together.
func (c *control) events(name string, evs ...eventNote) {
	if c.opts.fenced() != nil {
		return // another broker's control plane acts now (leader.go)
	}
	now := time.Now()
	out := make([]protocol.Event, len(evs))
	lines := make([]protocol.LogLine, len(evs))
	c.mu.Lock()
	p, ok := c.pipelines[name]
	save := ok && !p.removing // a pipeline being removed is not saved back (remove.go)
	for i, e := range evs {
		ev := protocol.Event{Time: now, Pipeline: name, Job: e.job, Kind: e.kind, Message: e.msg}
		line := protocol.LogLine{Time: ev.Time, Pipeline: name, Job: e.job, Name: "pipeline", Level: protocol.LevelEvent, Kind: e.kind, Text: e.msg}
		if ok {
			if j := p.jobs[e.job]; j != nil {
				line.Name, line.Worker = j.job.DisplayName(), j.worker
			}
			ev.State = string(p.state)
			p.events = append(p.events, ev)
		}
		out[i], lines[i] = ev, line
	}
	if ok && len(p.events) > 200 {
		p.events = p.events[len(p.events)-200:]
	}
	c.mu.Unlock()
	// Every change of a pipeline's state comes with an event: saving here keeps KV current.
	if save {
		c.saveState(name)
	}
	for i, ev := range out {
		c.log.Info("event", "pipeline", name, "job", ev.Job, "kind", ev.Kind, "message", ev.Message)
		data, err := json.Marshal(ev)
		if err == nil {
			err = c.nc.Publish(protocol.EventSubject(name), data)
		}
		if err != nil {
			c.log.Warn("event not published", "pipeline", name, "error", err)
		}
		// The event is also a line of the job's log (job 0: the pipeline's), kept with its
		// output: marvelo logs --job N shows the job placed, its worker lost, moved, failed,
		// among its lines.
		if data, err = json.Marshal(lines[i]); err == nil {
			err = c.nc.Publish(protocol.LogSubject(name, ev.Job), data)
		}
		if err != nil {
			c.log.Warn("event not written to the log", "pipeline", name, "error", err)
		}
	}
}

// saveState saves a pipeline's state as it is when its write starts: one write of a pipeline at
// a time, so an older state never lands after a newer one (store.savePipeline), and a control
// plane fenced meanwhile writes nothing.
func (c *control) saveState(name string) {
	err := c.store.savePipeline(context.Background(), name, func() (savedPipeline, bool, error) {
		if c.opts.fenced() != nil {
			return savedPipeline{}, false, nil
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		p, ok := c.pipelines[name]
		if !ok || p.removing {
			return savedPipeline{}, false, nil
		}
		sp, err := p.snapshot()
		return sp, err == nil, err
	})
	if err != nil {
		c.log.Error("pipeline state not saved", "pipeline", name, "error", err)
	}
}
