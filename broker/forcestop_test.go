package broker

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// failedWithARunningJob enters a failed pipeline whose counter (job 1, on wa) failed while its
// csv_sink (job 2, epoch 3, on wb) never reported its end: its worker still runs it.
func failedWithARunningJob(c *control, name string) {
	doc := &pipeline.Pipeline{Name: name, Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Outputs: []int{1}}, {ID: 2, Type: "csv_sink", Inputs: []int{1}}}}
	p := &pipelineState{doc: doc, state: protocol.StateFailed, submitted: time.Now(), ended: time.Now(), run: 1,
		endCh: make(chan struct{}), err: "counter 1: boom", jobs: map[int]*jobState{
			1: {job: &doc.Jobs[0], worker: "wa", state: protocol.StateFailed, epoch: 1, err: "boom"},
			2: {job: &doc.Jobs[1], worker: "wb", state: protocol.StateRunning, epoch: 3},
		}}
	close(p.endCh)
	c.mu.Lock()
	c.pipelines[name] = p
	c.mu.Unlock()
}

// stopsAsked subscribes a fake worker's stop verb: each stop is answered and sent on the channel
// returned; report, if set, is called for each (from the subscription's goroutine).
func stopsAsked(t *testing.T, nc *nats.Conn, worker string, report func(protocol.JobRef)) chan protocol.JobRef {
	t.Helper()
	asked := make(chan protocol.JobRef, 16)
	if _, err := nc.Subscribe(protocol.WorkerSubject(worker, protocol.VerbStop), func(m *nats.Msg) {
		var ref protocol.JobRef
		_ = json.Unmarshal(m.Data, &ref)
		asked <- ref // before the answer: the broker's request returns only after this
		_ = m.Respond([]byte(`{"ok":true}`))
		if report != nil {
			report(ref)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return asked
}

// TestForcedStopOfAFailedPipelineStopsTheJobAWorkerStillRuns: a pipeline failed while its sink
// still runs on wb. stop --force tells wb to stop that job (its instance, not a drain), waits for
// wb's report, and answers naming the job stopped, not only "already failed"; the pipeline stays
// failed and the job is stopped. The failed job's worker is not asked.
func TestForcedStopOfAFailedPipelineStopsTheJobAWorkerStillRuns(t *testing.T) {
	b, nc := fakeBroker(t, protocol.WorkerInfo{Name: "wa", Slots: 4}, protocol.WorkerInfo{Name: "wb", Slots: 4})
	failedWithARunningJob(b.ctl, "pf")
	askedA := stopsAsked(t, nc, "wa", nil)
	askedB := stopsAsked(t, nc, "wb", func(ref protocol.JobRef) {
		data, _ := json.Marshal(protocol.JobState{Pipeline: ref.Pipeline, Job: ref.Job, Epoch: ref.Epoch, Worker: "wb",
			State: protocol.StateStopped, Time: time.Now()})
		_ = nc.Publish(protocol.From(protocol.SubjJobState, "wb"), data)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	began := time.Now()
	r, err := client.New(nc).StopWith(ctx, protocol.StopRequest{Pipeline: "pf", Force: true})
	took := time.Since(began)
	if err == nil || !strings.Contains(err.Error(), "pipeline pf is already failed") ||
		!strings.Contains(err.Error(), "stopped outright the jobs it still ran: csv_sink 2 on worker wb") {
		t.Fatalf("stop --force: %v; want the end state and the job stopped named", err)
	}
	if len(r.Forced) != 1 || r.Forced[0] != "csv_sink 2 on worker wb" || r.State != protocol.StateFailed {
		t.Fatalf("reply forced %q state %q, want [csv_sink 2 on worker wb] and failed", r.Forced, r.State)
	}
	select {
	case ref := <-askedB:
		if ref != (protocol.JobRef{Pipeline: "pf", Job: 2, Epoch: 3}) {
			t.Fatalf("wb was asked %+v, want the stop of job 2 epoch 3 outright", ref)
		}
	default:
		t.Fatal("wb was never told to stop the job it still runs")
	}
	select {
	case ref := <-askedA:
		t.Fatalf("wa, whose job had failed, was asked %+v", ref)
	default:
	}
	if took >= protocol.StopKillWait {
		t.Errorf("the stop took %s: it did not see wb's report and waited out StopKillWait", took)
	}
	b.ctl.mu.Lock()
	p := b.ctl.pipelines["pf"]
	state, jobState, jobErr := p.state, p.jobs[2].state, p.jobs[2].err
	b.ctl.mu.Unlock()
	if state != protocol.StateFailed || jobState != protocol.StateStopped || jobErr != "" {
		t.Fatalf("pipeline %s, job 2 %s (%q); want failed, and stopped as its worker reported", state, jobState, jobErr)
	}
}

// TestStopOfAFailedPipelineWithNothingRunningSaysAlreadyFailed: with every job ended, a stop, forced
// or not, answers "already failed" and asks no worker anything; nor does a stop that is not forced
// while a job still runs.
func TestStopOfAFailedPipelineWithNothingRunningSaysAlreadyFailed(t *testing.T) {
	b, nc := fakeBroker(t, protocol.WorkerInfo{Name: "wa", Slots: 4}, protocol.WorkerInfo{Name: "wb", Slots: 4})
	failedWithARunningJob(b.ctl, "pf")
	asked := stopsAsked(t, nc, "wb", nil)
	cl := client.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cl.StopWith(ctx, protocol.StopRequest{Pipeline: "pf"}); err == nil || err.Error() != "pipeline pf is already failed" {
		t.Fatalf("stop without --force: %v, want: pipeline pf is already failed", err)
	}
	b.ctl.mu.Lock()
	b.ctl.pipelines["pf"].jobs[2].state = protocol.StateStopped
	b.ctl.mu.Unlock()
	if _, err := cl.StopWith(ctx, protocol.StopRequest{Pipeline: "pf", Force: true}); err == nil || err.Error() != "pipeline pf is already failed" {
		t.Fatalf("stop --force with nothing running: %v, want: pipeline pf is already failed", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case ref := <-asked:
		t.Fatalf("wb was asked %+v", ref)
	default:
	}
}
