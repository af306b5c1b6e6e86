package broker

import (
	"fmt"
	"sort"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Failover: the jobs of a worker that is gone move to another.

// workerLost moves the jobs of a worker that is gone (DESIGN.md §8): each to its node, else the
// best live worker of its groups in order; LOCAL jobs stay on the head node. A job no worker can
// take waits as pending and its pipeline shows degraded, until a fitting worker joins.
func (c *control) workerLost(name, why string) {
	detected := time.Now()
	c.access.revoke(name, "", 0) // access (issue 12): before any of its jobs starts elsewhere
	var lost []jobRef
	c.mu.Lock()
	for pname, p := range c.pipelines {
		if p.state.terminal() || p.launching {
			continue // a pipeline being launched relocates its lost jobs at the end of launch
		}
		for id, j := range p.jobs {
			if j.worker == name && !j.state.terminal() {
				lost = append(lost, jobRef{pname, id})
			}
		}
	}
	c.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	sort.Slice(lost, func(i, k int) bool {
		if lost[i].pipeline != lost[k].pipeline {
			return lost[i].pipeline < lost[k].pipeline
		}
		return lost[i].job < lost[k].job
	})
	for _, r := range lost {
		c.event(r.pipeline, r.job, "worker lost", fmt.Sprintf("job %d: worker %s %s", r.job, name, why))
		c.relocate(r, name, detected)
	}
}

// relocate places one job anew, moves its input consumers to the new epoch and starts it. from
// is the worker it is taken from ("" for a pending job): a job that has moved meanwhile (two
// reasons to move it at once) is left alone. The job is offered (placement by offer, which
// reserves the chosen worker's slot) without any lock; the job is marked placing meanwhile so a
// second move of it waits its turn, and what changed meanwhile is checked again under mu.
func (c *control) relocate(r jobRef, from string, since time.Time) {
	ctx := c.context() // the control plane's: a move ends with it
	c.mu.Lock()
	p, j, ok := c.movable(r, from)
	if !ok || j.placing {
		c.mu.Unlock()
		return // nothing to move, or another move of it is offering it right now
	}
	j.placing = true
	c.epoch++
	newEpoch := c.epoch
	c.mu.Unlock()
	defer c.kickedMeanwhile(c.kicks.Load(), r.pipeline, r.job) // placement.go
	w, reason := c.offerJob(ctx, r.pipeline, j.job, newEpoch)  // offers and the reservation: no lock held
	c.mu.Lock()
	j.placing = false
	if _, _, ok := c.movable(r, from); !ok {
		c.mu.Unlock()
		c.releaseReservations(r.pipeline, map[int]string{r.job: w}, newEpoch) // moved or ended meanwhile
		return
	}
	// The instance left behind counted what it read and wrote: the next one's counts go on from
	// there (its own start from 0), as marvelo status and top show them.
	j.prior, j.stats = j.stats.Plus(j.prior), protocol.JobStats{}
	if w == "" {
		again := j.state == protocol.StatePending // a retry that found no worker either
		j.worker, j.waiting = "", reason
		c.jobTo(j, jevWaits)
		if c.pipeTo(p, pevJobWaits) && p.state == protocol.StateDegraded {
			p.reason = fmt.Sprintf("%s: %s", j.job.Label(), reason)
		}
		c.mu.Unlock()
		if !again {
			c.event(r.pipeline, r.job, "pending", fmt.Sprintf("%s waits for a worker: %s", j.job.Label(), reason))
		}
		return
	}
	oldEpoch := j.epoch
	j.worker, j.epoch, j.recovered = w, newEpoch, false
	c.jobTo(j, jevAssigned)
	j.restarts++
	// A restart after a failure (restart.go) is this move from pending; its instances skip a
	// poison round, moved or not.
	restart, skip := j.restartNote, j.skipSQN
	j.restartNote = ""
	doc := p.doc
	c.mu.Unlock()

	err := c.rebindInputs(ctx, doc, j.job, oldEpoch, newEpoch)
	if err == nil {
		epochs := c.epochs(r.pipeline)
		for _, a := range c.assignments(p, map[int]string{r.job: w}, func(id int) uint64 { return epochs[id] }) {
			if a.a.Job.ID != r.job {
				continue
			}
			a.a.SkipSQN = skip
			if err = c.requestWorker(ctx, w, protocol.VerbPrepare, a.a); err == nil {
				err = c.requestWorker(ctx, w, protocol.VerbStart, a.a.Ref())
			}
		}
	}
	if err != nil {
		c.applyJobState(protocol.JobState{Pipeline: r.pipeline, Job: r.job, Epoch: newEpoch, Worker: w,
			State: protocol.StateFailed, Error: fmt.Sprintf("move to worker %s: %v", w, err), Time: time.Now()})
		return
	}
	c.mu.Lock()
	if p.state == protocol.StateDegraded && !hasPending(p) && c.pipeTo(p, pevRecovered) {
		p.reason = ""
	}
	c.mu.Unlock()
	if restart != "" {
		c.event(r.pipeline, r.job, "restarted", fmt.Sprintf("%s restarted on worker %s (%s), %s after its failure",
			j.job.Label(), w, restart, time.Since(since).Round(time.Millisecond)))
		return
	}
	fromText := "worker " + from
	if from == "" {
		fromText = "pending"
	}
	c.event(r.pipeline, r.job, "moved", fmt.Sprintf("%s moved from %s to worker %s, %s after detection",
		j.job.Label(), fromText, w, time.Since(since).Round(time.Millisecond)))
}

// epochs returns the current epoch of every job of a pipeline.
func (c *control) epochs(name string) map[int]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]uint64{}
	if p, ok := c.pipelines[name]; ok {
		for id, j := range p.jobs {
			out[id] = j.epoch
		}
	}
	return out
}

func hasPending(p *pipelineState) bool {
	for _, j := range p.jobs {
		if j.state == protocol.StatePending {
			return true
		}
	}
	return false
}
