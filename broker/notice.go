package broker

import (
	"fmt"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// applyNotice records what a running job reports without changing its state (JobState.Notice)
// as an event of its pipeline. Only the job's current instance is heard, as for state reports.
func (c *control) applyNotice(s protocol.JobState) {
	c.mu.Lock()
	p, ok := c.pipelines[s.Pipeline]
	var label string
	if ok {
		j, found := p.jobs[s.Job]
		ok = found && (s.Epoch == 0 || j.epoch == 0 || s.Epoch == j.epoch) && !j.state.terminal() && s.Worker == j.worker
		if ok {
			label = j.job.Label()
		}
	}
	c.mu.Unlock()
	if !ok {
		return // a stale instance, or a job already ended
	}
	c.event(s.Pipeline, s.Job, protocol.EventJobNotice, fmt.Sprintf("%s on worker %s: %s", label, s.Worker, s.Notice))
}
