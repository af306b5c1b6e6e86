package broker

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// MetricsServer serves the broker's counters in the Prometheus text format on /metrics: per
// pipeline and job, blocks in and out, rounds, stale blocks, dummies, queue drops and restarts
// (from the workers' heartbeats); per worker, slots, slots used, liveness and heartbeat age.
// It reads the control plane only through snapshot, under the control plane's lock, and renders
// outside it.
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
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		pipes, workers := b.ctl.snapshot()
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
// and worker, copied under the lock.
func (c *control) snapshot() ([]protocol.PipelineStatus, []protocol.WorkerStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var pipes []protocol.PipelineStatus
	for _, p := range c.pipelines {
		st := p.status()
		st.Events = nil
		pipes = append(pipes, st)
	}
	used := c.slotsUsed()
	var workers []protocol.WorkerStatus
	for _, w := range c.workers {
		workers = append(workers, protocol.WorkerStatus{WorkerInfo: w.info, Alive: w.alive,
			LastHeartbeat: w.lastSeen, Metrics: w.metrics, SlotsUsed: used[w.info.Name]})
	}
	sort.Slice(pipes, func(i, k int) bool { return pipes[i].Name < pipes[k].Name })
	sort.Slice(workers, func(i, k int) bool { return workers[i].Name < workers[k].Name })
	return pipes, workers
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
