package worker

// The broker's verbs on jobs (prepare, start, stop, reset, leave) and running and reporting them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// handlePrepare builds the job of an assignment and checks it can run here; it does not start it.
func (w *Worker) handlePrepare(data []byte) (any, error) {
	var a protocol.Assignment
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("prepare: bad assignment: %w", err)
	}
	key := taskKey{a.Pipeline, a.Job.ID}
	t, err := w.buildTask(&a)
	if err != nil {
		w.mu.Lock()
		delete(w.reserved, key) // the job will not run here: its reserved slot is free again
		w.mu.Unlock()
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.reserved, key) // its reserved slot is the task's now
	if old, ok := w.tasks[key]; ok && old.cancel != nil {
		if old.assign.Epoch >= a.Epoch {
			return nil, fmt.Errorf("pipeline %s: %s is already running here", a.Pipeline, t.label)
		}
		old.cancel() // an older instance of the same job: the broker moved it back here
	}
	w.tasks[key] = t
	return nil, nil
}

// handleStart starts a prepared job.
func (w *Worker) handleStart(data []byte) (any, error) {
	var ref protocol.JobRef
	if err := json.Unmarshal(data, &ref); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.tasks[taskKey{ref.Pipeline, ref.Job}]
	if !ok {
		return nil, fmt.Errorf("pipeline %s: job %d was not prepared on worker %s", ref.Pipeline, ref.Job, w.opts.Name)
	}
	if t.cancel != nil {
		return nil, nil // already running: a retried start
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	t.drainCtx, t.drain = context.WithCancel(ctx)
	w.wg.Add(1)
	go w.runTask(ctx, t)
	return nil, nil
}

// runTask runs one job and reports its states to the broker.
func (w *Worker) runTask(ctx context.Context, t *task) {
	defer w.wg.Done()
	defer t.cancel()
	key := taskKey{t.assign.Pipeline, t.assign.Job.ID}
	w.report(t, protocol.StateRunning, nil)
	started := time.Now()
	err := w.pool.run(ctx, t) // its pipes on a data connection (pool.go)
	state := protocol.StateFinished
	switch {
	case err != nil && ctx.Err() != nil:
		state, err = protocol.StateStopped, nil
	case err != nil:
		state = protocol.StateFailed
	}
	t.err = err
	st := t.stats.snapshot()
	t.log.Info("job "+state, "blocks_in", st.BlocksIn, "blocks_out", st.BlocksOut, "rounds", st.Rounds,
		"stale", st.Stale, "dummies", st.Dummies, "queue_drops", st.QueueDrops, "duration", time.Since(started).Round(time.Millisecond))
	if err != nil {
		w.log.Error("job failed", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "epoch", t.assign.Epoch, "error", err)
	} else {
		w.log.Info("job ended", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "epoch", t.assign.Epoch, "state", state)
	}
	w.mu.Lock()
	if w.tasks[key] == t { // a newer instance may have taken the key
		delete(w.tasks, key)
	}
	moving := w.leaving[t]
	delete(w.leaving, t)
	w.mu.Unlock()
	if !moving && state != protocol.StateFinished {
		// Stopped (the pipeline stops, its consumers ended) or failed (its pipeline fails: a
		// chained job has no restart policy): its chained producers, waiting for it to
		// acknowledge, end too. Not when it moves: its chain moves with it and resumes.
		t.releaseLinks(t.ins)
	}
	if moving && state != protocol.StateFinished {
		w.log.Info("job ended to move to another worker", "pipeline", t.assign.Pipeline, "job", t.assign.Job.ID, "epoch", t.assign.Epoch)
	} else {
		w.report(t, state, err)
	}
	close(t.done)
}

// report tells the broker about a job's state, retrying a few times: a lost "finished" would
// leave the pipeline running forever.
func (w *Worker) report(t *task, state string, jobErr error) {
	js := protocol.JobState{
		Pipeline: t.assign.Pipeline, Job: t.assign.Job.ID, Epoch: t.assign.Epoch, Worker: w.opts.Name,
		State: state, Stats: t.stats.snapshot(), Time: time.Now(),
	}
	if jobErr != nil {
		js.Error = jobErr.Error()
		js.SQN = t.failedSQN // the round it failed at, when known (restart policies count it)
	}
	wait := backoff.Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		ctx, cancel := context.WithTimeout(w.runCtx, 2*time.Second)
		err := w.request(ctx, protocol.From(protocol.SubjJobState, w.opts.Name), js, nil)
		cancel()
		if err == nil {
			return
		}
		var refused *protocol.Refusal
		if errors.As(err, &refused) || w.runCtx.Err() != nil {
			w.log.Warn("job state not reported", "pipeline", js.Pipeline, "job", js.Job, "state", state, "error", err)
			return
		}
		w.log.Warn("job state not reported yet; retrying", "pipeline", js.Pipeline, "job", js.Job, "state", state, "error", err)
		wait.Wait(w.runCtx) // an end of runCtx is noticed by the next attempt's check
	}
}

// handleStop stops one job, or every job of a pipeline when the job id is 0.
func (w *Worker) handleStop(data []byte) (any, error) {
	var ref protocol.JobRef
	if err := json.Unmarshal(data, &ref); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.releaseReservationsLocked(ref)
	for k, t := range w.tasks {
		if k.pipeline != ref.Pipeline || (ref.Job != 0 && k.job != ref.Job) || (ref.Epoch != 0 && t.assign.Epoch != ref.Epoch) {
			continue
		}
		switch {
		case t.cancel == nil:
			delete(w.tasks, k) // prepared, never started
			t.closeRealtime()
			t.stdin.Close()
		case ref.Drain:
			t.drain() // sources end their streams; the others finish what is in flight
		default:
			t.cancel()
		}
	}
	if ref.Job == 0 && ref.Epoch == 0 && !ref.Drain {
		w.links.forget(ref.Pipeline) // the links its jobs never opened or closed
	}
	return nil, nil
}

// handleReset restarts the numbering of this worker's sources (and all-async jobs) of a pipeline.
func (w *Worker) handleReset(data []byte) (any, error) {
	var req protocol.ResetRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("reset: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, t := range w.tasks {
		if k.pipeline == req.Pipeline {
			// Only sources and all-async jobs consult their sequencer; others ignore it.
			t.sequencer.Reset(req.At)
		}
	}
	return nil, nil
}

// handleLeave ends every job here without reporting its end, so that the broker moves it, and
// answers once they have ended or the grace has passed.
func (w *Worker) handleLeave(data []byte) (any, error) {
	var req protocol.LeaveRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return nil, fmt.Errorf("leave: %w", err)
	}
	w.mu.Lock()
	clear(w.reserved) // jobs placed here and not prepared yet move with the rest
	var done []chan struct{}
	for k, t := range w.tasks {
		if t.cancel == nil {
			delete(w.tasks, k) // prepared, never started
			t.closeRealtime()
			t.stdin.Close()
			continue
		}
		w.leaving[t] = true
		t.cancel()
		done = append(done, t.done)
	}
	w.mu.Unlock()
	timer := time.NewTimer(max(req.Grace, time.Millisecond))
	defer timer.Stop()
	for _, d := range done {
		select {
		case <-d:
		case <-timer.C:
			return nil, fmt.Errorf("worker %s: %d jobs did not end within %s", w.opts.Name, len(done), req.Grace)
		}
	}
	return nil, nil
}

// stopAll stops every job, waits for them to end, then closes the data connections they ran on.
func (w *Worker) stopAll() {
	w.mu.Lock()
	for _, t := range w.tasks {
		if t.cancel != nil {
			t.cancel()
		}
	}
	w.mu.Unlock()
	w.wg.Wait()
	w.pool.close()
}
