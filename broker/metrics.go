package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// MetricsServer serves the broker's counters in the Prometheus text format on /metrics: per
// pipeline and job, blocks and bytes in and out, rounds, stale blocks, dummies, queue drops,
// redeliveries, restarts, CPU and memory (from the workers' heartbeats); per pipe, what its
// stream holds and its consumer's lag (asked of JetStream at each scrape); per worker, slots,
// slots used, liveness and heartbeat age. It reads the control plane only through snapshot,
// under the control plane's lock, and asks JetStream and renders outside it.
type MetricsServer struct {
	b    *Broker
	l    net.Listener
	srv  *http.Server
	done chan struct{}
}

// ServeMetrics starts serving b's metrics on addr (host:port; port 0 picks one). Close stops it.
func ServeMetrics(b *Broker, addr string) (*MetricsServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("broker: --metrics %s: address already in use", addr)
		}
		return nil, fmt.Errorf("broker: --metrics %s: %w", addr, err)
	}
	m := &MetricsServer{b: b, l: l, done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		pipes, workers, refs := b.ctl.snapshot()
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		streams := b.ctl.pipeStats(ctx, refs)
		for i := range pipes {
			pipes[i].Pipes = streams[pipes[i].Name]
		}
		writeMetrics(w, pipes, workers, time.Now())
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("metrics server stopped", "error", err)
		}
	}()
	return m, nil
}

// Addr is the address the metrics are served on.
func (m *MetricsServer) Addr() string { return m.l.Addr().String() }

// Close stops the server and waits for its goroutine.
func (m *MetricsServer) Close() error {
	err := m.srv.Close()
	<-m.done
	return err
}

// snapshot is the metrics' narrow accessor to the control plane: the status of every pipeline
// and worker, and the pipes to ask JetStream about, copied under the lock.
func (c *control) snapshot() ([]protocol.PipelineStatus, []protocol.WorkerStatus, []pipeRef) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pipes []protocol.PipelineStatus
	var refs []pipeRef
	for _, p := range c.pipelines {
		st := p.status()
		st.Events = nil
		pipes = append(pipes, st)
		refs = append(refs, p.pipeRefs()...)
	}
	used := c.slotsUsed()
	var workers []protocol.WorkerStatus
	for _, w := range c.workers {
		workers = append(workers, protocol.WorkerStatus{WorkerInfo: w.info, Alive: w.alive,
			LastHeartbeat: w.heard, Metrics: w.metrics, SlotsUsed: used[w.info.Name]})
	}
	sort.Slice(pipes, func(i, k int) bool { return pipes[i].Name < pipes[k].Name })
	sort.Slice(workers, func(i, k int) bool { return workers[i].Name < workers[k].Name })
	return pipes, workers, refs
}

type metric struct{ name, help, kind string }

var jobMetrics = []struct {
	metric
	value func(j protocol.JobStatus) float64
}{
	{metric{"marvelo_job_blocks_in_total", "blocks the job read", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.BlocksIn) }},
	{metric{"marvelo_job_blocks_out_total", "blocks the job wrote", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.BlocksOut) }},
	{metric{"marvelo_job_rounds_total", "compute blocks the job ran", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.Rounds) }},
	{metric{"marvelo_job_stale_total", "blocks dropped as late or duplicate", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.Stale) }},
	{metric{"marvelo_job_dummies_total", "dummies made for missing blocks", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.Dummies) }},
	{metric{"marvelo_job_queue_drops_total", "blocks dropped by max_queue", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.QueueDrops) }},
	{metric{"marvelo_job_restarts_total", "times the job was moved or restarted", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Restarts) }},
	{metric{"marvelo_job_bytes_in_total", "payload bytes of the blocks the job read", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.BytesIn) }},
	{metric{"marvelo_job_bytes_out_total", "payload bytes of the blocks the job wrote", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.BytesOut) }},
	{metric{"marvelo_job_redeliveries_total", "messages JetStream delivered to the job again", "counter"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.Redeliveries) }},
	{metric{"marvelo_job_cpu_seconds_total", "CPU time of the job's process: an executable's program, a Go job's worker process (shared by its Go jobs)", "counter"}, func(j protocol.JobStatus) float64 { return j.Stats.CPUSeconds }},
	{metric{"marvelo_job_memory_bytes", "resident memory of the job's process: an executable's program, a Go job's worker process (shared by its Go jobs)", "gauge"}, func(j protocol.JobStatus) float64 { return float64(j.Stats.MemBytes) }},
}

// pipeMetrics are the series of a pipe's stream and consumer (protocol.PipeStats).
var pipeMetrics = []struct {
	metric
	value func(p protocol.PipeStats) uint64
}{
	{metric{"marvelo_pipe_messages_total", "messages written to the pipe in this run (its stream's last sequence)", "counter"}, func(p protocol.PipeStats) uint64 { return p.Messages }},
	{metric{"marvelo_pipe_stored_messages", "messages in the pipe's stream now", "gauge"}, func(p protocol.PipeStats) uint64 { return p.Stored }},
	{metric{"marvelo_pipe_stored_bytes", "bytes in the pipe's stream now", "gauge"}, func(p protocol.PipeStats) uint64 { return p.StoredBytes }},
	{metric{"marvelo_pipe_consumer_lag", "messages stored, not yet delivered to the reading job (the consumer's NumPending)", "gauge"}, func(p protocol.PipeStats) uint64 { return p.Pending }},
	{metric{"marvelo_pipe_consumer_ack_pending", "messages delivered to the reading job, not yet acknowledged", "gauge"}, func(p protocol.PipeStats) uint64 { return p.AckPending }},
	{metric{"marvelo_pipe_consumer_redelivered", "messages delivered more than once, not yet acknowledged", "gauge"}, func(p protocol.PipeStats) uint64 { return p.Redelivered }},
	{metric{"marvelo_pipe_chained", "1 for a pipe whose blocks pass in its worker's process (a chain): its figures are its link's, stored meaning held unacknowledged", "gauge"}, func(p protocol.PipeStats) uint64 { return uint64(b2i(p.Chained)) }},
}

func writeMetrics(w io.Writer, pipes []protocol.PipelineStatus, workers []protocol.WorkerStatus, now time.Time) {
	header := func(m metric) { fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind) }
	header(metric{"marvelo_pipeline_up", "1 for each pipeline the broker knows, labelled with its state", "gauge"})
	for _, p := range pipes {
		fmt.Fprintf(w, "marvelo_pipeline_up{pipeline=%s,state=%s} 1\n", quote(p.Name), quote(p.State))
	}
	for _, jm := range jobMetrics {
		header(jm.metric)
		for _, p := range pipes {
			for _, j := range p.Jobs {
				fmt.Fprintf(w, "%s{pipeline=%s,job=\"%d\",name=%s,worker=%s} %s\n", jm.name, quote(p.Name), j.ID,
					quote(j.Name), quote(j.Worker), strconv.FormatFloat(jm.value(j), 'f', -1, 64))
			}
		}
	}
	for _, pm := range pipeMetrics {
		header(pm.metric)
		for _, p := range pipes {
			for _, ps := range p.Pipes {
				fmt.Fprintf(w, "%s{pipeline=%s,pipe=\"%d\",job=\"%d\"} %d\n", pm.name, quote(p.Name), ps.ID, ps.Job, pm.value(ps))
			}
		}
	}
	header(metric{"marvelo_worker_up", "1 while the worker sends heartbeats", "gauge"})
	for _, wk := range workers {
		fmt.Fprintf(w, "marvelo_worker_up{worker=%s} %d\n", quote(wk.Name), b2i(wk.Alive))
	}
	header(metric{"marvelo_worker_slots", "jobs the worker runs at once", "gauge"})
	for _, wk := range workers {
		fmt.Fprintf(w, "marvelo_worker_slots{worker=%s} %d\n", quote(wk.Name), wk.Slots)
	}
	header(metric{"marvelo_worker_slots_used", "jobs placed on the worker", "gauge"})
	for _, wk := range workers {
		fmt.Fprintf(w, "marvelo_worker_slots_used{worker=%s} %d\n", quote(wk.Name), wk.SlotsUsed)
	}
	header(metric{"marvelo_worker_heartbeat_age_seconds", "time since the worker's last heartbeat", "gauge"})
	for _, wk := range workers {
		if wk.LastHeartbeat.IsZero() {
			continue // not heard since the broker restarted: unknown, not 0
		}
		fmt.Fprintf(w, "marvelo_worker_heartbeat_age_seconds{worker=%s} %.3f\n", quote(wk.Name), now.Sub(wk.LastHeartbeat).Seconds())
	}
	header(metric{"marvelo_worker_cpu_free_percent", "idle CPU of the worker's machine", "gauge"})
	for _, wk := range workers {
		fmt.Fprintf(w, "marvelo_worker_cpu_free_percent{worker=%s} %.1f\n", quote(wk.Name), wk.Metrics.CPUFree)
	}
	header(metric{"marvelo_worker_mem_free_percent", "available memory of the worker's machine", "gauge"})
	for _, wk := range workers {
		fmt.Fprintf(w, "marvelo_worker_mem_free_percent{worker=%s} %.1f\n", quote(wk.Name), wk.Metrics.MemFree)
	}
}

// quote writes a Prometheus label value: quoted, with \, " and newlines escaped.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pipeRef names a streamed pipe of a pipeline and the job that reads it.
type pipeRef struct {
	pipeline  string
	pipe, job int
	// link: the pipe is chained (chain.go), with its producer's last report of its link; it has
	// no stream to ask.
	link *protocol.LinkStats
}

// pipeRefs lists the pipes of p that have a stream (a realtime pipe has none), none once p has
// ended (its streams are deleted). Called under c.mu.
func (p *pipelineState) pipeRefs() []pipeRef {
	if p.state.terminal() {
		return nil
	}
	var out []pipeRef
	for id, e := range p.doc.Endpoints() {
		if pp := p.doc.PipeByID(id); pp.IsRealtime() {
			continue
		}
		r := pipeRef{pipeline: p.doc.Name, pipe: id, job: e[1]}
		if p.chainOf(id) != 0 {
			r.link = &protocol.LinkStats{Pipe: id}
			if src := p.jobs[e[0]]; src != nil {
				for _, l := range src.stats.Plus(src.prior).Links {
					if l.Pipe == id {
						r.link = &l
					}
				}
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, k int) bool { return out[i].pipe < out[k].pipe })
	return out
}

// pipeStats asks JetStream about each pipe's stream and its consumer (two requests a pipe), by
// pipeline: the one source of the pipe series of /metrics and of a status request with Pipes. A
// stream or consumer gone meanwhile (the pipeline ended, the job moved) is left out. Called
// without c.mu: these are network calls.
func (c *control) pipeStats(ctx context.Context, refs []pipeRef) map[string][]protocol.PipeStats {
	out := map[string][]protocol.PipeStats{}
	for _, r := range refs {
		if r.link != nil {
			l := r.link
			out[r.pipeline] = append(out[r.pipeline], protocol.PipeStats{ID: r.pipe, Job: r.job, Chained: true,
				Messages: l.Messages, Stored: l.Unacked, Pending: l.Waiting, AckPending: l.Unacked - min(l.Waiting, l.Unacked)})
			continue
		}
		st, err := c.js.Stream(ctx, protocol.PipeStream(r.pipeline, r.pipe))
		if err != nil {
			if !errors.Is(err, jetstream.ErrStreamNotFound) {
				c.log.Debug("pipe statistics", "pipeline", r.pipeline, "pipe", r.pipe, "error", err)
			}
			continue
		}
		info := st.CachedInfo()
		ps := protocol.PipeStats{ID: r.pipe, Job: r.job, Messages: info.State.LastSeq, Stored: info.State.Msgs, StoredBytes: info.State.Bytes}
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			ps.Pending += ci.NumPending
			ps.AckPending += uint64(ci.NumAckPending)
			ps.Redelivered += uint64(ci.NumRedelivered)
		}
		if err := lister.Err(); err != nil {
			c.log.Debug("pipe consumer statistics", "pipeline", r.pipeline, "pipe", r.pipe, "error", err)
		}
		out[r.pipeline] = append(out[r.pipeline], ps)
	}
	return out
}
