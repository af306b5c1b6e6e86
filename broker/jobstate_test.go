package broker

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

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
