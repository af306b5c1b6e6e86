package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Restarts instead of failures (issue 23, item 9; DESIGN.md §8, "Restart policies"). A job
// whose document says "restart": {"policy": "on-failure", ...} and that fails (an error, a
// non-zero exit, a crash, a move that failed) does not fail its pipeline while its policy allows
// another restart: it waits pending (its pipeline degraded) for the backoff, on a timer the
// control plane owns (spawn), and is then placed again exactly as a move after a worker loss
// (relocate: a new epoch, its input consumers replaced), so it resumes from what its inputs
// acknowledged. A round (SQN) that failed it twice in a row is a poison round: reported, and
// with "skip_poison" the next instances are not handed it (Assignment.SkipSQN) and its outputs
// get a dummy there. Once the policy is exhausted, the failure fails the pipeline as before.

// restartPlan is what a failure under a restart policy does: the restart's wait and its events.
type restartPlan struct {
	delay  time.Duration
	msg    string // the "job restart" event
	poison string // the "poison round" event, "" for none
}

// planRestart decides what the failure report s of job j of p does under the job's restart
// policy. restart: the job now waits pending for its restart (plan says how long and what to
// record); else the failure fails the pipeline as it always did, and exhausted says why the
// policy did not restart it ("" when the job has no policy). The pipeline must be neither ended
// nor stopping, and the job not ended for want of consumers (unneeded). Callers hold mu.
func (c *control) planRestart(p *pipelineState, j *jobState, s protocol.JobState) (plan restartPlan, restart bool, exhausted string) {
	limit := j.job.RestartMax()
	if limit == 0 {
		return plan, false, ""
	}
	label := j.job.Label()
	// A poison round: the failures in a row at one SQN.
	if s.SQN != 0 && s.SQN == j.failSQN {
		j.failStreak++
	} else {
		j.failSQN, j.failStreak = s.SQN, 0
		if s.SQN != 0 {
			j.failStreak = 1
		}
	}
	poisoned := j.failStreak >= 2
	if j.failureRestarts >= limit {
		exhausted = fmt.Sprintf("its restart policy is exhausted (%d of %d restarts used)", j.failureRestarts, limit)
		if poisoned {
			exhausted += fmt.Sprintf("; round SQN %d failed it %d times in a row", j.failSQN, j.failStreak)
		}
		return plan, false, exhausted
	}
	if poisoned {
		if j.job.SkipsPoison() {
			j.skipSQN = j.failSQN
			plan.poison = fmt.Sprintf("%s: round SQN %d skipped as a dummy after %d failures: its next instance is not handed it",
				label, j.failSQN, j.failStreak)
		} else {
			plan.poison = fmt.Sprintf("%s: round SQN %d failed it %d times in a row (a poison round; \"skip_poison\": true would skip it as a dummy)",
				label, j.failSQN, j.failStreak)
		}
	}
	if !c.jobTo(j, jevWaits) {
		return restartPlan{}, false, ""
	}
	j.failureRestarts++
	n := j.failureRestarts
	plan.delay = j.job.RestartDelay(n)
	at := ""
	if s.SQN != 0 {
		at = fmt.Sprintf(" at SQN %d", s.SQN)
	}
	plan.msg = fmt.Sprintf("%s failed on worker %s%s; restart %d of %d in %s: %s", label, s.Worker, at, n, limit, plan.delay, s.Error)
	j.worker, j.err, j.stats = "", s.Error, s.Stats
	j.backoff, j.restartNote = true, fmt.Sprintf("restart %d of %d", n, limit)
	if j.skipSQN != 0 && j.skipSQN == j.failSQN {
		j.restartNote += fmt.Sprintf(", skipping round SQN %d", j.skipSQN)
	}
	j.waiting = fmt.Sprintf("restarts in %s after a failure (restart %d of %d)", plan.delay, n, limit)
	if c.pipeTo(p, pevJobWaits) && p.state == protocol.StateDegraded {
		p.reason = fmt.Sprintf("%s %s", label, j.waiting)
	}
	return plan, true, ""
}

// restartAfter records a planned restart and starts its timer: once the backoff has passed, the
// job is placed again (restartNow). The timer is the control plane's (spawn): it ends with the
// control plane's term, and a control plane that takes over finds the job pending and places it
// at once. The failed instance's subjects are taken back as for any ended job.
func (c *control) restartAfter(s protocol.JobState, plan restartPlan) {
	c.access.revoke(s.Worker, s.Pipeline, s.Job) // access (issue 12): the instance has ended
	c.kickPlacement()                            // its slot is free (placement leaves the job itself alone: backoff)
	c.event(s.Pipeline, s.Job, "job restart", plan.msg)
	if plan.poison != "" {
		c.event(s.Pipeline, s.Job, "poison round", plan.poison)
	}
	r, failed := jobRef{s.Pipeline, s.Job}, time.Now()
	if !c.spawn(fmt.Sprintf("restart of job %d of %s", s.Job, s.Pipeline), func(ctx context.Context) {
		t := time.NewTimer(plan.delay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return // the control plane ends: the next one places the pending job
		case <-t.C:
		}
		c.restartNow(r, failed)
	}) {
		c.log.Warn("restart not scheduled: the control plane is stopping; the next one places the job", "pipeline", s.Pipeline, "job", s.Job)
	}
}

// restartNow ends a job's backoff and places it again as a move does (relocate, from pending). A
// pipeline being launched meanwhile places it at the end of its launch (launched), and one with
// no worker for it leaves it pending, placed once a worker fits (placePending).
func (c *control) restartNow(r jobRef, failed time.Time) {
	c.mu.Lock()
	if p, ok := c.pipelines[r.pipeline]; ok {
		if j := p.jobs[r.job]; j != nil {
			j.backoff = false
		}
	}
	c.mu.Unlock()
	c.relocate(r, "", failed)
}

// restartDue reports whether a job is pending for a restart whose backoff has passed: a launch
// that ends places it (launched). Callers hold mu.
func (j *jobState) restartDue() bool {
	return j.state == protocol.StatePending && j.worker == "" && j.restartNote != "" && !j.backoff && !j.placing
}
