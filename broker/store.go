package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
}

type store struct {
	js          jetstream.JetStream
	pipelines   jetstream.KeyValue
	workers     jetstream.KeyValue
	checkpoints jetstream.KeyValue
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
	return &store{js: js, pipelines: p, workers: w, checkpoints: cp}, nil
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
		sp.Jobs[id] = savedJob{Worker: j.worker, State: string(j.state), Error: j.err, Epoch: j.epoch, Stats: j.stats, Restarts: j.restarts, Prior: j.prior}
	}
	return sp, nil
}

func (s *store) savePipeline(ctx context.Context, name string, sp savedPipeline) error {
	data, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	_, err = s.pipelines.Put(ctx, name, data)
	return err
}

// deletePipeline forgets a pipeline, or puts back the run it replaced (prev not nil).
func (s *store) deletePipeline(ctx context.Context, name string, prev *savedPipeline) error {
	if prev != nil {
		return s.savePipeline(ctx, name, *prev)
	}
	err := s.pipelines.Delete(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
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
