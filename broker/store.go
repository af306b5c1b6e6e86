package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The control plane's state lives in JetStream KV, so a broker restarted with the same --store
// picks up its pipelines and workers where it left them.
const (
	kvPipelines = "marvelo_pipelines"
	kvWorkers   = "marvelo_workers"
)

// savedPipeline is a pipeline as kept in KV.
type savedPipeline struct {
	Document  []byte           `json:"document"` // CBOR
	State     string           `json:"state"`
	Reason    string           `json:"reason,omitempty"`
	Error     string           `json:"error,omitempty"`
	Submitted time.Time        `json:"submitted"`
	Run       int              `json:"run,omitempty"`
	PrevRuns  []protocol.Run   `json:"prev_runs,omitempty"`
	Ended     time.Time        `json:"ended,omitempty"`
	Cleaned   bool             `json:"cleaned,omitempty"`
	Jobs      map[int]savedJob `json:"jobs"`
	Deps      map[int]string   `json:"deps,omitempty"`
	Events    []protocol.Event `json:"events,omitempty"`
}

type savedJob struct {
	Worker   string            `json:"worker,omitempty"`
	State    string            `json:"state"`
	Error    string            `json:"error,omitempty"`
	Epoch    uint64            `json:"epoch,omitempty"`
	Stats    protocol.JobStats `json:"stats"`
	Restarts int               `json:"restarts,omitempty"`
	// Prior holds the counts of the job's earlier instances (jobState.prior).
	Prior protocol.JobStats `json:"prior,omitzero"`
	// The restart policy's counts (jobState, restart.go).
	FailureRestarts int    `json:"failure_restarts,omitempty"`
	FailSQN         uint64 `json:"fail_sqn,omitempty"`
	FailStreak      int    `json:"fail_streak,omitempty"`
	SkipSQN         uint64 `json:"skip_sqn,omitempty"`
}

type store struct {
	js          jetstream.JetStream
	pipelines   jetstream.KeyValue
	workers     jetstream.KeyValue
	checkpoints jetstream.KeyValue

	// One writer per pipeline (saveLine): mu guards lines and what is in them. It is never held
	// across a write, nor while a snapshot is taken (the snapshot takes control.mu).
	mu    sync.Mutex
	lines map[string]*saveLine

	// Tests only: beforePut sees each pipeline snapshot just before it is written; waiting is
	// called when a save waits for another write of the same pipeline to end.
	beforePut func(name string, sp savedPipeline)
	waiting   func(name string)
}

// saveLine orders the writes of one pipeline's key: one at a time, each of the state as it is
// when the write starts. A save asked for while a write is under way waits for it and then makes
// the next write (or finds it made by another save that waited with it), so an older snapshot
// never lands after a newer one, and saves asked for at once share one write. Each write is
// also checked against the key's revision, so a write by anyone else meanwhile (another broker
// that took over) is noticed: the write is then made again from a fresh snapshot, which the
// snapshot function may decline (a fenced control plane).
type saveLine struct {
	asked   uint64     // saves asked for so far
	written uint64     // saves covered by the last write that ended without error
	round   *saveRound // the write under way, nil if none
	rev     uint64     // the key's revision as last written or read here; 0: unknown or deleted
}

type saveRound struct {
	covers uint64 // the saves asked for before it started: its snapshot has their changes
	done   chan struct{}
	err    error
}

func openStore(ctx context.Context, js jetstream.JetStream, storage jetstream.StorageType, replicas int) (*store, error) {
	p, err := openKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: kvPipelines, Storage: storage, History: 1, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("broker: state bucket %s: %w", kvPipelines, err)
	}
	w, err := openKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: kvWorkers, Storage: storage, History: 1, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("broker: state bucket %s: %w", kvWorkers, err)
	}
	cp, err := openKeyValue(ctx, js, jetstream.KeyValueConfig{Bucket: protocol.CheckpointBucket, Storage: storage, History: 1, Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("broker: checkpoint bucket: %w", err)
	}
	if _, err := openObjectStore(ctx, js, jetstream.ObjectStoreConfig{Bucket: protocol.DepsBucket, Storage: storage, Replicas: replicas}); err != nil {
		return nil, fmt.Errorf("broker: dependencies bucket: %w", err)
	}
	return &store{js: js, pipelines: p, workers: w, checkpoints: cp, lines: map[string]*saveLine{}}, nil
}

// snapshot copies a pipeline's state for saving. Callers hold mu.
func (p *pipelineState) snapshot() (savedPipeline, error) {
	doc, err := pipeline.EncodeCBOR(p.doc)
	if err != nil {
		return savedPipeline{}, err
	}
	sp := savedPipeline{Document: doc, State: string(p.state), Reason: p.reason, Error: p.err, Submitted: p.submitted, Run: p.run, PrevRuns: p.prevRuns,
		Ended: p.ended, Cleaned: p.cleaned, Jobs: map[int]savedJob{}, Events: p.events, Deps: p.deps}
	if len(sp.Events) > 50 {
		sp.Events = sp.Events[len(sp.Events)-50:]
	}
	for id, j := range p.jobs {
		sp.Jobs[id] = savedJob{Worker: j.worker, State: string(j.state), Error: j.err, Epoch: j.epoch, Stats: j.stats, Restarts: j.restarts, Prior: j.prior,
			FailureRestarts: j.failureRestarts, FailSQN: j.failSQN, FailStreak: j.failStreak, SkipSQN: j.skipSQN}
	}
	return sp, nil
}

// savePipeline saves a pipeline's state as snap takes it when the write starts (snap reports
// false: nothing to save, the pipeline is gone or another control plane acts); it returns once a
// write that started after the call has ended. The caller changes the state before it calls.
func (s *store) savePipeline(ctx context.Context, name string, snap func() (savedPipeline, bool, error)) error {
	return s.inLine(ctx, name, func(l *saveLine) error {
		for attempt := 0; ; attempt++ {
			sp, ok, err := snap()
			if err != nil || !ok {
				return err
			}
			if s.beforePut != nil {
				s.beforePut(name, sp)
			}
			data, err := json.Marshal(sp)
			if err != nil {
				return err
			}
			err = s.writeChecked(ctx, l, name, data)
			if !errors.Is(err, jetstream.ErrKeyExists) || attempt == 2 {
				return err
			}
			// Written meanwhile by someone else: its revision is known now; a fresh snapshot.
		}
	})
}

// writeChecked puts data under name if the key is still at the revision this line knows (or
// absent, or deleted, when it knows none). On a mismatch it learns the key's revision and
// returns jetstream.ErrKeyExists. Called by the line's round only.
func (s *store) writeChecked(ctx context.Context, l *saveLine, name string, data []byte) error {
	s.mu.Lock()
	rev := l.rev
	s.mu.Unlock()
	var err error
	if rev == 0 {
		rev, err = s.pipelines.Create(ctx, name, data)
	} else {
		rev, err = s.pipelines.Update(ctx, name, data, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		rev = 0
		e, gerr := s.pipelines.Get(ctx, name)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound): // deleted: Create writes over it
		case gerr != nil:
			return fmt.Errorf("pipeline %s: saved by someone else meanwhile: %w", name, gerr)
		default:
			rev = e.Revision()
		}
	} else if err != nil {
		return fmt.Errorf("pipeline %s: save: %w", name, err)
	}
	s.mu.Lock()
	l.rev = rev
	s.mu.Unlock()
	return err
}

// inLine runs write as a round of name's line (saveLine): after the write under way, if any,
// and shared with the saves that came meanwhile.
func (s *store) inLine(ctx context.Context, name string, write func(*saveLine) error) error {
	s.mu.Lock()
	l := s.lines[name]
	if l == nil {
		l = &saveLine{}
		s.lines[name] = l
	}
	l.asked++
	want := l.asked
	for {
		if r := l.round; r != nil {
			s.mu.Unlock()
			if s.waiting != nil {
				s.waiting(name)
			}
			select {
			case <-r.done:
			case <-ctx.Done():
				return fmt.Errorf("pipeline %s: save: %w", name, ctx.Err())
			}
			if r.covers >= want {
				return r.err
			}
			s.mu.Lock()
			continue
		}
		if l.written >= want {
			s.mu.Unlock()
			return nil
		}
		r := &saveRound{covers: l.asked, done: make(chan struct{})}
		l.round = r
		s.mu.Unlock()
		r.err = write(l)
		s.mu.Lock()
		l.round = nil
		if r.err == nil {
			l.written = max(l.written, r.covers)
		}
		s.mu.Unlock()
		close(r.done)
		return r.err
	}
}

// deletePipeline forgets a pipeline, or puts back the run it replaced (prev not nil); in the
// pipeline's line, after any write of it under way.
func (s *store) deletePipeline(ctx context.Context, name string, prev *savedPipeline) error {
	if prev != nil {
		sp := *prev
		return s.savePipeline(ctx, name, func() (savedPipeline, bool, error) { return sp, true, nil })
	}
	return s.inLine(ctx, name, func(l *saveLine) error {
		err := s.pipelines.Delete(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			err = nil
		}
		s.mu.Lock()
		l.rev = 0 // a delete marker now: the next write creates the key anew
		s.mu.Unlock()
		return err
	})
}

func (s *store) saveWorker(ctx context.Context, info protocol.WorkerInfo, alive bool, heard time.Time) error {
	data, err := json.Marshal(savedWorker{Info: info, Alive: alive, Heard: heard})
	if err != nil {
		return err
	}
	_, err = s.workers.Put(ctx, info.Name, data)
	return err
}

type savedWorker struct {
	Info  protocol.WorkerInfo `json:"info"`
	Alive bool                `json:"alive"`
	// Heard is when the worker was last heard (workerState.heard); zero: unknown.
	Heard time.Time `json:"heard,omitzero"`
}

// load reads the saved pipelines and workers. Workers that were alive are assumed alive for one
// heartbeat timeout, so their jobs keep running if they come back in time; when they were last
// heard is unknown (not saved at every heartbeat), while a dead worker's is the one saved with
// its death.
func (s *store) load(ctx context.Context) (map[string]*pipelineState, map[string]*workerState, uint64, error) {
	pipelines := map[string]*pipelineState{}
	workers := map[string]*workerState{}
	var epoch uint64
	keys, err := bucketKeys(ctx, s.js, kvPipelines)
	if err != nil {
		return nil, nil, 0, err
	}
	for _, name := range keys {
		e, err := s.pipelines.Get(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("pipeline %s: %w", name, err)
		}
		var sp savedPipeline
		if err := json.Unmarshal(e.Value(), &sp); err != nil {
			return nil, nil, 0, fmt.Errorf("pipeline %s: %w", name, err)
		}
		s.mu.Lock()
		s.lines[name] = &saveLine{rev: e.Revision()} // the next write of it checks against this
		s.mu.Unlock()
		doc, err := pipeline.Parse(sp.Document)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("pipeline %s: %w", name, err)
		}
		p := &pipelineState{doc: doc, state: pipeState(sp.State), reason: sp.Reason, err: sp.Error, submitted: sp.Submitted, run: max(sp.Run, 1), prevRuns: sp.PrevRuns,
			ended: sp.Ended, cleaned: sp.Cleaned, events: sp.Events, jobs: map[int]*jobState{}, deps: sp.Deps,
			endCh: make(chan struct{})}
		if p.state.terminal() {
			close(p.endCh)
		}
		for i := range doc.Jobs {
			j := &doc.Jobs[i]
			sj := sp.Jobs[j.ID]
			p.jobs[j.ID] = &jobState{job: j, worker: sj.Worker, state: jobPhase(sj.State), err: sj.Error, epoch: sj.Epoch, stats: sj.Stats, prior: sj.Prior, restarts: sj.Restarts,
				failureRestarts: sj.FailureRestarts, failSQN: sj.FailSQN, failStreak: sj.FailStreak, skipSQN: sj.SkipSQN,
				recovered: !p.state.terminal() && !jobPhase(sj.State).terminal() && hasStoredInput(doc, j)}
			epoch = max(epoch, sj.Epoch)
		}
		pipelines[name] = p
	}
	wkeys, err := bucketKeys(ctx, s.js, kvWorkers)
	if err != nil {
		return nil, nil, 0, err
	}
	for _, name := range wkeys {
		e, err := s.workers.Get(ctx, name)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, 0, fmt.Errorf("worker %s: %w", name, err)
		}
		var sw savedWorker
		if err := json.Unmarshal(e.Value(), &sw); err != nil {
			return nil, nil, 0, fmt.Errorf("worker %s: %w", name, err)
		}
		ws := &workerState{info: sw.Info, alive: sw.Alive, lastSeen: time.Now()}
		if !sw.Alive {
			ws.heard = sw.Heard
		}
		workers[name] = ws
	}
	return pipelines, workers, epoch, nil
}

// hasStoredInput reports whether a job reads a pipe kept in a stream (not realtime).
func hasStoredInput(doc *pipeline.Pipeline, j *pipeline.Job) bool {
	for _, id := range j.Inputs {
		if pp := doc.PipeByID(id); !pp.IsRealtime() {
			return true
		}
	}
	return false
}

// forgetCheckpoints deletes the checkpoints of a pipeline's jobs: a new submission starts afresh.
func (s *store) forgetCheckpoints(ctx context.Context, doc *pipeline.Pipeline) error {
	for _, j := range doc.Jobs {
		err := s.checkpoints.Purge(ctx, protocol.CheckpointKey(doc.Name, j.ID))
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("job %d: checkpoint: %w", j.ID, err)
		}
	}
	return nil
}
