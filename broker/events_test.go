package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestRacingEventsLeaveTheLatestStateStored: events of one pipeline at once, the first one's
// write held after its snapshot until every other event has either written or waits for it. The
// stored state must be the latest, as a broker taking over would load it: with a snapshot put
// after unlocking, the held (oldest) snapshot landed last.
func TestRacingEventsLeaveTheLatestStateStored(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	c := b.ctl
	doc, err := pipeline.Parse([]byte(`{"name": "race", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 1}, "outputs": [1]},
    {"id": 2, "type": "discard", "inputs": [1]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := &pipelineState{doc: doc, state: protocol.StateRunning, submitted: time.Now(), run: 1, jobs: map[int]*jobState{}, endCh: make(chan struct{})}
	for i := range doc.Jobs {
		p.jobs[doc.Jobs[i].ID] = &jobState{job: &doc.Jobs[i], state: protocol.StateRunning}
	}
	c.mu.Lock()
	c.pipelines["race"] = p
	c.mu.Unlock()

	const n = 20
	entered, held := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	c.store.beforePut = func(name string, sp savedPipeline) {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-held // the first write waits, its snapshot taken
		}
	}
	progressed := make(chan struct{}, n*n) // an event that wrote, or that waits for a write
	c.store.waiting = func(string) { progressed <- struct{}{} }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.event("race", 0, "race", "0")
	}()
	<-entered
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.event("race", 1, "race", strconv.Itoa(i))
			progressed <- struct{}{}
		}()
	}
	for i := 1; i < n; i++ {
		<-progressed
	}
	close(held)
	wg.Wait()

	e, err := c.store.pipelines.Get(context.Background(), "race")
	if err != nil {
		t.Fatal(err)
	}
	var stored savedPipeline
	if err := json.Unmarshal(e.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	latest, err := p.snapshot()
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(stored.Events) != n || len(latest.Events) != n {
		t.Fatalf("stored state has %d events, memory %d, want %d: an older snapshot landed last", len(stored.Events), len(latest.Events), n)
	}
	for i := range latest.Events {
		if stored.Events[i].Message != latest.Events[i].Message {
			t.Fatalf("stored event %d is %q, memory's %q", i, stored.Events[i].Message, latest.Events[i].Message)
		}
	}
}

// TestSaveByAnotherWriterIsNoticedAndWrittenOverFromAFreshSnapshot: a write of the pipeline's key
// from outside this control plane (another broker) is not overwritten by a write checked against
// an older revision; the next save writes the state as it is now, over it.
func TestSaveByAnotherWriterIsNoticedAndWrittenOverFromAFreshSnapshot(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	s := b.ctl.store
	ctx := context.Background()
	version := 1
	snaps := 0
	snap := func() (savedPipeline, bool, error) {
		snaps++
		return savedPipeline{State: "v" + strconv.Itoa(version)}, true, nil
	}
	if err := s.savePipeline(ctx, "p", snap); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pipelines.Put(ctx, "p", []byte(`{"state": "other"}`)); err != nil {
		t.Fatal(err)
	}
	version, snaps = 2, 0
	if err := s.savePipeline(ctx, "p", snap); err != nil {
		t.Fatal(err)
	}
	if snaps != 2 {
		t.Fatalf("%d snapshots taken, want 2: the first write, refused, and one fresh", snaps)
	}
	e, err := s.pipelines.Get(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var got savedPipeline
	if err := json.Unmarshal(e.Value(), &got); err != nil || got.State != "v2" {
		t.Fatalf("stored %s (%v), want state v2", e.Value(), err)
	}
}

// TestJobStateReportsThatComeDuringASaveShareTheNextOne: while the pipeline's first save is held,
// the other jobs' reports are taken in and wait for the next save together, instead of waiting
// in line to be read, each behind a save of its own (a 1000-job chain timed out so). Every
// report is answered, and the whole burst costs a few saves, not one a report.
func TestJobStateReportsThatComeDuringASaveShareTheNextOne(t *testing.T) {
	const jobs = 40
	b, nc := fakeBroker(t, protocol.WorkerInfo{Name: "wa", Slots: jobs})
	runningJobsOn(b.ctl, "burst", "wa", jobs)

	held, release := make(chan struct{}), make(chan struct{})
	releaseSave := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseSave) // runs before the broker's shutdown, should the test fail first
	var saves, first atomic.Int32
	b.ctl.store.beforePut = func(string, savedPipeline) {
		saves.Add(1)
		if first.CompareAndSwap(0, 1) {
			close(held)
			<-release // the first save waits, its snapshot taken
		}
	}
	waiting := make(chan struct{}, jobs*jobs)
	b.ctl.store.waiting = func(string) { waiting <- struct{}{} }

	replies := make(chan error, jobs)
	var wg sync.WaitGroup
	for id := 1; id <= jobs; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, _ := json.Marshal(protocol.JobState{Pipeline: "burst", Job: id, Epoch: 1, Worker: "wa", State: protocol.StateFinished, Time: time.Now()})
			m, err := nc.Request(protocol.From(protocol.SubjJobState, "wa"), data, 20*time.Second)
			if err == nil {
				var r protocol.Reply
				if err = json.Unmarshal(m.Data, &r); err == nil && !r.OK {
					err = fmt.Errorf("refused: %s", r.Error)
				}
			}
			replies <- err
		}()
	}
	<-held
	deadline := time.After(10 * time.Second)
	for range jobs - 1 {
		select {
		case <-waiting:
		case <-deadline:
			t.Fatal("while a save was held, the other reports did not reach the save line: they are read one after another")
		}
	}
	releaseSave()
	wg.Wait()
	close(replies)
	for err := range replies {
		if err != nil {
			t.Fatalf("a report: %v", err)
		}
	}
	t.Logf("%d reports that came together: %d saves", jobs, saves.Load())
	if n := saves.Load(); n > jobs/4 {
		t.Errorf("%d saves for %d reports that came together, want a few", n, jobs)
	}
}

// runningJobsOn enters a running pipeline of n discard jobs on worker w, at epoch 1.
func runningJobsOn(c *control, name, w string, n int) {
	doc := &pipeline.Pipeline{Name: name}
	for id := 1; id <= n; id++ {
		doc.Jobs = append(doc.Jobs, pipeline.Job{ID: id, Type: "discard"})
	}
	p := &pipelineState{doc: doc, state: protocol.StateRunning, submitted: time.Now(), run: 1, endCh: make(chan struct{}), jobs: map[int]*jobState{}}
	for i := range doc.Jobs {
		p.jobs[doc.Jobs[i].ID] = &jobState{job: &doc.Jobs[i], worker: w, state: protocol.StateRunning, epoch: 1}
	}
	c.mu.Lock()
	c.pipelines[name] = p
	c.mu.Unlock()
}
