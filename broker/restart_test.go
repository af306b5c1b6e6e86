package broker

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// restartFixture is a running pipeline of one job, 2 (forward), with the given restart policy.
func restartFixture(r *pipeline.Restart) (*control, *pipelineState, *jobState) {
	doc := &pipeline.Pipeline{Name: "p", Jobs: []pipeline.Job{{ID: 2, Type: "forward", Restart: r}}}
	j := &jobState{job: &doc.Jobs[0], worker: "w1", state: protocol.StateRunning, epoch: 5}
	p := &pipelineState{doc: doc, state: protocol.StateRunning, jobs: map[int]*jobState{2: j}, endCh: make(chan struct{})}
	c := &control{log: slog.New(slog.DiscardHandler), pipelines: map[string]*pipelineState{"p": p}, kick: make(chan struct{}, 1)}
	return c, p, j
}

// failed is job 2's failure report at round sqn (0: unknown) from its current worker.
func failed(j *jobState, sqn uint64) protocol.JobState {
	return protocol.JobState{Pipeline: "p", Job: 2, Epoch: j.epoch, Worker: j.worker, State: protocol.StateFailed, Error: "boom", SQN: sqn}
}

func TestAFailureWithinTheRestartPolicyLeavesTheJobPendingForItsBackoffAndDoublesIt(t *testing.T) {
	c, p, j := restartFixture(&pipeline.Restart{Policy: pipeline.RestartOnFailure, Max: 2, Backoff: "100ms", SkipPoison: true})
	plan, restart, exhausted := c.planRestart(p, j, failed(j, 7))
	if !restart || exhausted != "" {
		t.Fatalf("first failure: restart %v, exhausted %q; want a restart", restart, exhausted)
	}
	if plan.delay != 100*time.Millisecond || !strings.Contains(plan.msg, "forward 2 failed on worker w1 at SQN 7; restart 1 of 2 in 100ms: boom") {
		t.Errorf("first restart: delay %s, event %q", plan.delay, plan.msg)
	}
	if plan.poison != "" {
		t.Errorf("one failure at SQN 7 reported as a poison round: %q", plan.poison)
	}
	if j.state != protocol.StatePending || j.worker != "" || !j.backoff || j.failureRestarts != 1 || j.restartNote != "restart 1 of 2" {
		t.Errorf("after the first failure: state %s, worker %q, backoff %v, failure restarts %d, note %q",
			j.state, j.worker, j.backoff, j.failureRestarts, j.restartNote)
	}
	if p.state != protocol.StateDegraded || !strings.Contains(p.reason, "restarts in 100ms") {
		t.Errorf("pipeline %s (%s), want degraded with the restart's reason", p.state, p.reason)
	}

	// The restart placed it again (relocate) and the same round fails it again: a poison round.
	j.state, j.worker, j.epoch, j.backoff, j.restartNote = protocol.StateRunning, "w2", 6, false, ""
	plan, restart, _ = c.planRestart(p, j, failed(j, 7))
	if !restart || plan.delay != 200*time.Millisecond {
		t.Fatalf("second failure: restart %v, delay %s; want a restart after 200ms", restart, plan.delay)
	}
	if !strings.Contains(plan.poison, "round SQN 7 skipped as a dummy after 2 failures") || j.skipSQN != 7 {
		t.Errorf("the poison round: event %q, skip SQN %d; want SQN 7 skipped", plan.poison, j.skipSQN)
	}
	if j.restartNote != "restart 2 of 2, skipping round SQN 7" {
		t.Errorf("restart note %q", j.restartNote)
	}

	// A third failure exhausts the policy: the pipeline fails as without one.
	j.state, j.worker, j.epoch = protocol.StateRunning, "w1", 7
	if _, restart, exhausted = c.planRestart(p, j, failed(j, 9)); restart {
		t.Fatal("a third failure restarted the job; max is 2")
	}
	if exhausted != "its restart policy is exhausted (2 of 2 restarts used)" {
		t.Errorf("exhausted %q", exhausted)
	}
	if j.state != protocol.StateRunning {
		t.Errorf("an exhausted policy changed the job's state to %s; the failure report applies it", j.state)
	}
}

func TestWithoutARestartPolicyOrWithPolicyNeverAFailureIsNotRestarted(t *testing.T) {
	for _, r := range []*pipeline.Restart{nil, {Policy: pipeline.RestartNever}} {
		c, p, j := restartFixture(r)
		// applyJobState then fails the job and the pipeline as it always did.
		if _, restart, exhausted := c.planRestart(p, j, failed(j, 3)); restart || exhausted != "" {
			t.Errorf("restart %+v: restart %v, exhausted %q; want neither", r, restart, exhausted)
		}
		if j.state != protocol.StateRunning || p.state != protocol.StateRunning || j.failStreak != 0 {
			t.Errorf("restart %+v: job %s, pipeline %s, fail streak %d; want nothing changed", r, j.state, p.state, j.failStreak)
		}
	}
}

func TestASameRoundFailingWithoutSkipPoisonIsReportedNotSkipped(t *testing.T) {
	c, p, j := restartFixture(&pipeline.Restart{Policy: pipeline.RestartOnFailure, Max: 5})
	for i := 1; i <= 2; i++ {
		plan, restart, _ := c.planRestart(p, j, failed(j, 4))
		if !restart {
			t.Fatalf("failure %d not restarted", i)
		}
		if i == 2 && !strings.Contains(plan.poison, `round SQN 4 failed it 2 times in a row (a poison round; "skip_poison": true would skip it as a dummy)`) {
			t.Errorf("second failure at SQN 4: poison event %q", plan.poison)
		}
		j.state, j.worker, j.backoff, j.restartNote = protocol.StateRunning, "w1", false, ""
	}
	if j.skipSQN != 0 {
		t.Errorf("skip SQN %d without skip_poison", j.skipSQN)
	}
	snap, err := p.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sj := snap.Jobs[2]; sj.FailureRestarts != 2 || sj.FailSQN != 4 || sj.FailStreak != 2 {
		t.Errorf("saved job: %+v; want the restart counts kept with the pipeline", sj)
	}
	if js := p.status().Jobs[0]; js.FailureRestarts != 2 || js.RestartMax != 5 {
		t.Errorf("status: failure restarts %d of %d, want 2 of 5", js.FailureRestarts, js.RestartMax)
	}
}
