package liveview

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The JSON the page reads. Rates are per second, over the last second or so (the change of a
// counter between two reads of the broker; a counter that went back, a restarted job, counts
// from zero).

// PipelinesReply answers /api/pipelines.
type PipelinesReply struct {
	Time      time.Time  `json:"time"`
	Pipelines []Pipeline `json:"pipelines"`
}

// Pipeline is one pipeline with its graph.
type Pipeline struct {
	Name      string    `json:"name"`
	Run       int       `json:"run"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Error     string    `json:"error,omitempty"`
	Submitted time.Time `json:"submitted"`
	Ended     time.Time `json:"ended,omitzero"`
	// Depth is the number of layers of the graph (jobs by depth from the sources).
	Depth int    `json:"depth"`
	Jobs  []Job  `json:"jobs"`
	Edges []Edge `json:"edges"`
}

// Job is one job: what it is, where it runs, its counters and rates, and its place in the graph.
type Job struct {
	ID          int     `json:"id"`
	Name        string  `json:"name"`
	Kind        string  `json:"kind,omitempty"` // a Go job's type, "exec" or "python"
	State       string  `json:"state"`
	Worker      string  `json:"worker,omitempty"`
	Error       string  `json:"error,omitempty"`
	Depth       int     `json:"depth"` // its layer: 0 for a source, else one more than the deepest job feeding it
	Row         int     `json:"row"`   // its place in its layer, from 0
	BlocksIn    uint64  `json:"blocks_in"`
	BlocksOut   uint64  `json:"blocks_out"`
	Rounds      uint64  `json:"rounds"`
	BytesIn     uint64  `json:"bytes_in"`
	BytesOut    uint64  `json:"bytes_out"`
	Dummies     uint64  `json:"dummies,omitempty"`
	Stale       uint64  `json:"stale,omitempty"`
	QueueDrops  uint64  `json:"queue_drops,omitempty"`
	Restarts    int     `json:"restarts,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	MemBytes    uint64  `json:"mem_bytes"`
	BlocksInPS  float64 `json:"blocks_in_per_s"`
	BlocksOutPS float64 `json:"blocks_out_per_s"`
	BytesOutPS  float64 `json:"bytes_out_per_s"`
	CPUPercent  float64 `json:"cpu_percent"` // of one core
}

// Edge is one pipe from the job writing it to the job reading it (0: none).
type Edge struct {
	Pipe     int    `json:"pipe"`
	From     int    `json:"from"`
	To       int    `json:"to"`
	Codec    string `json:"codec,omitempty"`
	Realtime bool   `json:"realtime,omitempty"` // core NATS: no stream, no statistics
	// Messages written to the pipe in this run, and those stored not yet delivered to the
	// reader (its lag), as JetStream reports them; a message carries one block or a batch.
	Messages    uint64  `json:"messages"`
	Lag         uint64  `json:"lag"`
	MessagesPS  float64 `json:"messages_per_s"`
	BlocksPS    float64 `json:"blocks_per_s"` // the writer's blocks out per second
	Stored      uint64  `json:"stored"`
	StoredBytes uint64  `json:"stored_bytes"`
}

// WorkersReply answers /api/workers.
type WorkersReply struct {
	Time    time.Time `json:"time"`
	Workers []Worker  `json:"workers"`
}

// Worker is one worker and its load.
type Worker struct {
	Name          string   `json:"name"`
	Alive         bool     `json:"alive"`
	Cordoned      bool     `json:"cordoned,omitempty"`
	Local         bool     `json:"local,omitempty"`
	Host          string   `json:"host,omitempty"`
	Groups        []string `json:"groups"`
	Slots         int      `json:"slots"`
	SlotsUsed     int      `json:"slots_used"`
	CPUFree       float64  `json:"cpu_free"`
	MemFree       float64  `json:"mem_free"`
	Load1         float64  `json:"load1"`
	HeartbeatAgeS float64  `json:"heartbeat_age_s"`
	Refused       uint64   `json:"refused,omitempty"`
	// Jobs are the jobs of running pipelines placed on it: "PIPELINE/ID NAME".
	Jobs []string `json:"jobs"`
}

// EventsReply answers /api/events.
type EventsReply struct {
	Time     time.Time        `json:"time"`
	Pipeline string           `json:"pipeline,omitempty"`
	Events   []protocol.Event `json:"events"`
}

// LogsReply answers /api/logs.
type LogsReply struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	Run      int       `json:"run"`
	Lines    []LogLine `json:"lines"`
}

// LogLine is one line of a job's output or log.
type LogLine struct {
	Time   time.Time `json:"time"`
	Job    int       `json:"job"`
	Name   string    `json:"name"`
	Worker string    `json:"worker"`
	Level  string    `json:"level,omitempty"`
	Text   string    `json:"text"`
}

// ErrorReply is the body of every error.
type ErrorReply struct {
	Error string `json:"error"`
}

// snapshot is one read of the broker, shared by the requests of MaxAge.
type snapshot struct {
	at        time.Time
	pipelines []Pipeline
	workers   []Worker
	events    map[string][]protocol.Event // pipeline → its events, oldest first
}

func (s *snapshot) pipeline(name string) (Pipeline, bool) {
	for _, p := range s.pipelines {
		if p.Name == name {
			return p, true
		}
	}
	return Pipeline{}, false
}

// eventsOf returns a pipeline's events, or every pipeline's by time for name "".
func (s *snapshot) eventsOf(name string) ([]protocol.Event, bool) {
	if name != "" {
		evs, ok := s.events[name]
		return append([]protocol.Event{}, evs...), ok
	}
	all := []protocol.Event{}
	for _, evs := range s.events {
		all = append(all, evs...)
	}
	sort.SliceStable(all, func(i, k int) bool { return all[i].Time.Before(all[k].Time) })
	return all, true
}

// snapshot returns the last read of the broker if it is younger than MaxAge, else reads it again.
func (h *handler) snapshot(ctx context.Context) (*snapshot, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.snap != nil && time.Since(h.snap.at) < h.opts.MaxAge {
		return h.snap, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sts, err := h.opts.Source.Pipelines(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	ws, err := h.opts.Source.Workers(ctx)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	now := time.Now()
	s := &snapshot{at: now, pipelines: []Pipeline{}, workers: []Worker{}, events: map[string][]protocol.Event{}}
	counters := map[string]float64{}
	seen := map[string]bool{}
	for _, st := range sts {
		seen[st.Name] = true
		g := h.graph(ctx, st)
		p := buildPipeline(st, g)
		for i := range p.Jobs {
			j := &p.Jobs[i]
			key := counterKey(st, "job", j.ID)
			counters[key+"in"] = float64(j.BlocksIn)
			counters[key+"out"] = float64(j.BlocksOut)
			counters[key+"bytes"] = float64(j.BytesOut)
			counters[key+"cpu"] = j.CPUSeconds
		}
		for i := range p.Edges {
			counters[counterKey(st, "pipe", p.Edges[i].Pipe)] = float64(p.Edges[i].Messages)
		}
		s.pipelines = append(s.pipelines, p)
		s.events[st.Name] = append([]protocol.Event{}, st.Events...)
	}
	for name := range h.graphs {
		if !seen[name] {
			delete(h.graphs, name) // forgotten by the broker
		}
	}
	rates := h.rates.rates(now, counters)
	for pi := range s.pipelines {
		p := &s.pipelines[pi]
		st := sts[pi]
		out := map[int]float64{}
		for i := range p.Jobs {
			j := &p.Jobs[i]
			key := counterKey(st, "job", j.ID)
			j.BlocksInPS, j.BlocksOutPS, j.BytesOutPS = rates[key+"in"], rates[key+"out"], rates[key+"bytes"]
			j.CPUPercent = 100 * rates[key+"cpu"]
			out[j.ID] = j.BlocksOutPS
		}
		for i := range p.Edges {
			e := &p.Edges[i]
			e.MessagesPS = rates[counterKey(st, "pipe", e.Pipe)]
			e.BlocksPS = out[e.From]
		}
	}
	s.workers = buildWorkers(ws, s.pipelines, now)
	h.snap = s
	return s, nil
}

func counterKey(st protocol.PipelineStatus, kind string, id int) string {
	return st.Name + "/" + strconv.Itoa(st.Run) + "/" + kind + "/" + strconv.Itoa(id) + "/"
}

// graphEntry is the graph of one run of a pipeline, read once (nil: the document could not be
// read; it is asked again after retry).
type graphEntry struct {
	run       int
	submitted time.Time
	g         *graph
	retry     time.Time
}

// graphRetry is how long a document that could not be read waits to be asked again.
const graphRetry = 10 * time.Second

// graph returns the graph of a pipeline's current run, reading its document once a run. A
// document that cannot be read leaves the jobs in one layer without edges.
func (h *handler) graph(ctx context.Context, st protocol.PipelineStatus) *graph {
	e, ok := h.graphs[st.Name]
	if ok && e.run == st.Run && e.submitted.Equal(st.Submitted) && (e.g != nil || time.Now().Before(e.retry)) {
		return e.g
	}
	e = graphEntry{run: st.Run, submitted: st.Submitted}
	doc, err := h.opts.Source.Document(ctx, st.Name)
	if err != nil {
		h.log.Warn("live view: no graph of the pipeline", "pipeline", st.Name, "error", err)
		e.retry = time.Now().Add(graphRetry)
	} else {
		e.g = layout(doc)
	}
	h.graphs[st.Name] = e
	return e.g
}

// graph is a pipeline's jobs laid out in layers, and its pipes.
type graph struct {
	depth map[int]int
	row   map[int]int
	kind  map[int]string
	edges []Edge
}

// layout places every job of a document in a layer: the sources (no input written by a job) in
// layer 0, every other job one layer after the deepest job feeding it. A pipe that closes a loop
// (feedback) is not followed. In a layer the jobs stand in the order of the document.
func layout(doc *pipeline.Pipeline) *graph {
	g := &graph{depth: map[int]int{}, row: map[int]int{}, kind: map[int]string{}}
	ends := doc.Endpoints()
	succ := map[int][]int{}
	for _, id := range sortedKeys(ends) {
		e := ends[id]
		pp := doc.PipeByID(id)
		g.edges = append(g.edges, Edge{Pipe: id, From: e[0], To: e[1], Codec: pp.Codec, Realtime: pp.IsRealtime()})
		if e[0] != 0 && e[1] != 0 {
			succ[e[0]] = append(succ[e[0]], e[1])
		}
	}
	// Drop the edges that close a cycle: depth-first from every job in document order, an
	// edge to a job on the current path goes back.
	const (
		unseen = iota
		onPath
		done
	)
	color := map[int]int{}
	forward := map[int][]int{}
	indeg := map[int]int{}
	var visit func(int)
	visit = func(u int) {
		color[u] = onPath
		for _, v := range succ[u] {
			switch color[v] {
			case onPath:
				continue // a feedback pipe
			case unseen:
				visit(v)
			}
			forward[u] = append(forward[u], v)
			indeg[v]++
		}
		color[u] = done
	}
	for _, j := range doc.Jobs { // sources first, so a loop is cut where it comes back
		if !hasWriter(doc, ends, j) {
			if color[j.ID] == unseen {
				visit(j.ID)
			}
		}
	}
	for _, j := range doc.Jobs {
		if color[j.ID] == unseen {
			visit(j.ID)
		}
	}
	// Longest path over the remaining acyclic edges, in topological order (Kahn).
	var queue []int
	for _, j := range doc.Jobs {
		if indeg[j.ID] == 0 {
			queue = append(queue, j.ID)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for _, v := range forward[u] {
			g.depth[v] = max(g.depth[v], g.depth[u]+1)
			if indeg[v]--; indeg[v] == 0 {
				queue = append(queue, v)
			}
		}
	}
	rows := map[int]int{}
	for _, j := range doc.Jobs {
		d := g.depth[j.ID]
		g.row[j.ID] = rows[d]
		rows[d]++
		switch {
		case j.Type != "":
			g.kind[j.ID] = j.Type
		case j.Exec != nil:
			g.kind[j.ID] = "exec"
		case j.Python != nil:
			g.kind[j.ID] = "python"
		}
	}
	return g
}

// hasWriter reports whether a job reads a pipe some job writes.
func hasWriter(doc *pipeline.Pipeline, ends map[int][2]int, j pipeline.Job) bool {
	for _, in := range j.Inputs {
		if ends[in][0] != 0 {
			return true
		}
	}
	return false
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// buildPipeline joins a pipeline's status and its graph (nil: unknown).
func buildPipeline(st protocol.PipelineStatus, g *graph) Pipeline {
	p := Pipeline{Name: st.Name, Run: st.Run, State: st.State, Reason: st.Reason, Error: st.Error,
		Submitted: st.Submitted, Ended: st.Ended, Jobs: []Job{}, Edges: []Edge{}}
	row := 0
	for _, js := range st.Jobs {
		j := Job{ID: js.ID, Name: js.Name, State: js.State, Worker: js.Worker, Error: js.Error,
			BlocksIn: js.Stats.BlocksIn, BlocksOut: js.Stats.BlocksOut, Rounds: js.Stats.Rounds,
			BytesIn: js.Stats.BytesIn, BytesOut: js.Stats.BytesOut, Dummies: js.Stats.Dummies, Stale: js.Stats.Stale,
			QueueDrops: js.Stats.QueueDrops, Restarts: js.Restarts, CPUSeconds: js.Stats.CPUSeconds, MemBytes: js.Stats.MemBytes}
		if g != nil {
			j.Depth, j.Row, j.Kind = g.depth[js.ID], g.row[js.ID], g.kind[js.ID]
		} else {
			j.Row = row
			row++
		}
		p.Depth = max(p.Depth, j.Depth+1)
		p.Jobs = append(p.Jobs, j)
	}
	if g != nil {
		stats := map[int]protocol.PipeStats{}
		for _, ps := range st.Pipes {
			stats[ps.ID] = ps
		}
		for _, e := range g.edges {
			if ps, ok := stats[e.Pipe]; ok {
				e.Messages, e.Lag, e.Stored, e.StoredBytes = ps.Messages, ps.Pending, ps.Stored, ps.StoredBytes
			}
			p.Edges = append(p.Edges, e)
		}
	}
	return p
}

// buildWorkers lists the workers with the jobs of unfinished pipelines placed on each.
func buildWorkers(ws []protocol.WorkerStatus, pipelines []Pipeline, now time.Time) []Worker {
	jobs := map[string][]string{}
	for _, p := range pipelines {
		if protocol.Terminal(p.State) {
			continue
		}
		for _, j := range p.Jobs {
			if j.Worker != "" && !protocol.Terminal(j.State) {
				jobs[j.Worker] = append(jobs[j.Worker], fmt.Sprintf("%s/%d %s", p.Name, j.ID, j.Name))
			}
		}
	}
	out := []Worker{}
	for _, w := range ws {
		age := 0.0
		if !w.LastHeartbeat.IsZero() {
			age = now.Sub(w.LastHeartbeat).Seconds()
		}
		out = append(out, Worker{Name: w.Name, Alive: w.Alive, Cordoned: w.Cordoned, Local: w.Local, Host: w.Host,
			Groups: append([]string{}, w.Groups...), Slots: w.Slots, SlotsUsed: w.SlotsUsed,
			CPUFree: w.Metrics.CPUFree, MemFree: w.Metrics.MemFree, Load1: w.Metrics.Load1,
			HeartbeatAgeS: age, Refused: w.Refused, Jobs: append([]string{}, jobs[w.Name]...)})
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out
}

// rater turns counters into rates: the change of each since a sample about a second old.
type rater struct {
	samples []sample // oldest first, none older than rateKeep
}

type sample struct {
	at time.Time
	v  map[string]float64
}

const (
	rateSpan = time.Second      // the rates are over at least this much, when samples allow
	rateKeep = 10 * time.Second // samples older than this are dropped, but the newest
)

// rates returns the rate of each counter of cur against the newest sample at least rateSpan
// older (else the oldest there is), and keeps cur as a sample. A counter new or gone back
// (a restarted job) has the rate of its value since that sample, from zero.
func (r *rater) rates(now time.Time, cur map[string]float64) map[string]float64 {
	for len(r.samples) > 1 && now.Sub(r.samples[0].at) > rateKeep { // the newest stays: a rate over a long pause
		r.samples = r.samples[1:]
	}
	out := map[string]float64{}
	if len(r.samples) > 0 {
		base := r.samples[0]
		for _, s := range r.samples {
			if now.Sub(s.at) >= rateSpan {
				base = s
			}
		}
		if dt := now.Sub(base.at).Seconds(); dt > 0 {
			for k, v := range cur {
				prev, ok := base.v[k]
				if !ok || v < prev {
					if !ok {
						continue // first seen now: no rate yet
					}
					prev = 0
				}
				out[k] = (v - prev) / dt
			}
		}
	}
	r.samples = append(r.samples, sample{at: now, v: cur})
	return out
}
