package broker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Owned concurrency (issue 23): a stop or a drain runs on a goroutine of the control plane
// (spawn), never on the subscription that received it, so two of them at once overlap.

// fakeBroker starts a broker whose registry holds the given workers, alive, and a connection
// for the fake workers' subscriptions.
func fakeBroker(t *testing.T, workers ...protocol.WorkerInfo) (*Broker, *nats.Conn) {
	t.Helper()
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b.ctl.mu.Lock()
	for _, w := range workers {
		b.ctl.workers[w.Name] = &workerState{info: w, alive: true, confirmed: true, bidding: true, lastSeen: time.Now().Add(time.Hour)}
	}
	b.ctl.mu.Unlock()
	return b, nc
}

// runningOn enters a running pipeline of one job on worker w.
func runningOn(c *control, name, w string) {
	doc := &pipeline.Pipeline{Name: name, Jobs: []pipeline.Job{{ID: 1, Type: "discard"}}}
	p := &pipelineState{doc: doc, state: protocol.StateRunning, submitted: time.Now(), run: 1, endCh: make(chan struct{}),
		jobs: map[int]*jobState{1: {job: &doc.Jobs[0], worker: w, state: protocol.StateRunning, epoch: 1}}}
	c.mu.Lock()
	c.pipelines[name] = p
	c.mu.Unlock()
}

// TestTwoStopsAtOnceOverlap: two pipelines whose jobs never drain are stopped at once, each with
// a grace of 1.5 s. Each stop takes the grace (then its job is stopped outright); together they
// take about one grace, not two: the second is not queued behind the first.
func TestTwoStopsAtOnceOverlap(t *testing.T) {
	const grace = 1500 * time.Millisecond
	b, nc := fakeBroker(t, protocol.WorkerInfo{Name: "wa", Slots: 4}, protocol.WorkerInfo{Name: "wb", Slots: 4})
	var mu sync.Mutex
	drainAsked := map[string]time.Time{}
	for _, w := range []string{"wa", "wb"} {
		runningOn(b.ctl, "p"+w, w)
		// The job ignores the drain; stopped outright, it reports stopped.
		if _, err := nc.Subscribe(protocol.WorkerSubject(w, protocol.VerbStop), func(m *nats.Msg) {
			var ref protocol.JobRef
			_ = json.Unmarshal(m.Data, &ref)
			_ = m.Respond([]byte(`{"ok":true}`))
			if ref.Drain {
				mu.Lock()
				drainAsked[ref.Pipeline] = time.Now()
				mu.Unlock()
				return
			}
			data, _ := json.Marshal(protocol.JobState{Pipeline: ref.Pipeline, Job: 1, Epoch: 1, Worker: w, State: protocol.StateStopped, Time: time.Now()})
			_ = nc.Publish(protocol.From(protocol.SubjJobState, w), data)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cl := client.New(nc)
	start := time.Now()
	took := make([]time.Duration, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, name := range []string{"pwa", "pwb"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r protocol.StopReply
			r, errs[i] = cl.StopWith(context.Background(), protocol.StopRequest{Pipeline: name, Grace: grace})
			took[i] = time.Since(start)
			if errs[i] == nil && r.State != protocol.StateStopped {
				t.Errorf("stop %s: state %q, want stopped", name, r.State)
			}
		}()
	}
	wg.Wait()
	t.Logf("two stops at once, grace %s each: %s and %s", grace, took[0].Round(time.Millisecond), took[1].Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
		if took[i] < grace {
			t.Errorf("stop %d took %s, less than its grace %s: its job was not given the grace", i, took[i], grace)
		}
		if took[i] > grace*3/2 {
			t.Errorf("stop %d took %s: two stops of %s at once queued behind each other", i, took[i].Round(time.Millisecond), grace)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(drainAsked) != 2 {
		t.Fatalf("drain asked of %v, want both pipelines", drainAsked)
	}
	if d := drainAsked["pwa"].Sub(drainAsked["pwb"]).Abs(); d > grace/2 {
		t.Errorf("the two drains were asked %s apart: the stops did not overlap", d.Round(time.Millisecond))
	}
}

// TestDrainsAtOnceOverlap: a worker drained by the operator, a group drained and a worker that
// leaves on its own (SIGTERM), all at once. Each fake worker confirms its jobs ended only once
// all three have been asked (bounded at 3 s): drains that queued behind each other would ask
// one at a time and each would wait out the bound.
func TestDrainsAtOnceOverlap(t *testing.T) {
	_, nc := fakeBroker(t, protocol.WorkerInfo{Name: "da", Slots: 1}, protocol.WorkerInfo{Name: "db", Groups: []string{"gb"}, Slots: 1},
		protocol.WorkerInfo{Name: "dc", Slots: 1})
	const bound = 3 * time.Second
	var mu sync.Mutex
	asked := 0
	all := make(chan struct{})
	leave := func(worker string, group bool) nats.MsgHandler {
		return func(m *nats.Msg) {
			mu.Lock()
			if asked++; asked == 3 {
				close(all)
			}
			mu.Unlock()
			t := time.NewTimer(bound)
			defer t.Stop()
			select {
			case <-all:
			case <-t.C:
			}
			if group {
				data, _ := json.Marshal(protocol.GroupReply{Reply: protocol.Reply{OK: true}, Worker: worker})
				_ = m.Respond(data)
				return
			}
			_ = m.Respond([]byte(`{"ok":true}`))
		}
	}
	for subj, h := range map[string]nats.MsgHandler{
		protocol.WorkerSubject("da", protocol.VerbLeave):     leave("da", false),
		protocol.GroupSubject("gb", protocol.VerbGroupLeave): leave("db", true),
		protocol.WorkerSubject("dc", protocol.VerbLeave):     leave("dc", false),
	} {
		if _, err := nc.Subscribe(subj, h); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cl := client.New(nc)
	start := time.Now()
	took := make([]time.Duration, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i, call := range []func() error{
		func() error { _, err := cl.Drain(context.Background(), "da"); return err },
		func() error { _, err := cl.DrainGroup(context.Background(), "gb", false); return err },
		func() error {
			var r protocol.DrainReply
			data, _ := json.Marshal(protocol.WorkerRequest{Worker: "dc"})
			m, err := nc.Request(protocol.From(protocol.SubjLeave, "dc"), data, 15*time.Second)
			if err == nil {
				err = json.Unmarshal(m.Data, &r)
			}
			if err == nil {
				err = r.Err()
			}
			return err
		},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = call()
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	t.Logf("drain da, drain --group gb, leave dc at once: %s, %s, %s", took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), took[2].Round(time.Millisecond))
	for i, err := range errs {
		if err != nil {
			t.Errorf("drain %d: %v", i, err)
		}
		if took[i] >= bound {
			t.Errorf("drain %d took %s: the drains were not under way at once", i, took[i].Round(time.Millisecond))
		}
	}
}

// TestShutdownWaitsForSpawnedWork: Shutdown ends the control plane's context and returns only once
// the work spawned on it has ended; nothing is spawned after.
func TestShutdownWaitsForSpawnedWork(t *testing.T) {
	b, _ := fakeBroker(t)
	ended := make(chan struct{})
	if !b.ctl.spawn("test", func(ctx context.Context) {
		<-ctx.Done()
		close(ended)
	}) {
		t.Fatal("spawn refused on a running control plane")
	}
	b.Shutdown()
	select {
	case <-ended:
	default:
		t.Fatal("Shutdown returned while spawned work still ran")
	}
	if b.ctl.spawn("late", func(context.Context) {}) {
		t.Fatal("spawn started work after the control plane stopped")
	}
}
