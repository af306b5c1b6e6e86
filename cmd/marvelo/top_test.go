package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
)

// metricValue reads one series from the metrics page: name and the start of its labels (for
// example `pipeline="live",job="1"`), -1 when the page has no such series.
func metricValue(t *testing.T, url, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(regexp.QuoteMeta(name+"{"+labels) + `[^}]*\} ([0-9.e+]+)`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// blocksOut reads job 1's blocks_out counter from the metrics page.
func blocksOut(t *testing.T, url string) float64 {
	return metricValue(t, url, "marvelo_job_blocks_out_total", `pipeline="live",job="1"`)
}

func TestMetricsRiseAndTopShowsRates(t *testing.T) {
	env, url := runWithMetrics(t, registry, "live", `{"name": "live", "jobs": [
		{"id": 1, "type": "counter", "args": {"interval": "5ms"}, "outputs": [1]},
		{"id": 2, "type": "discard", "inputs": [1]}]}`)
	var first float64
	testkit.WaitFor(t, 30*time.Second, "a first count on /metrics", func() bool { first = blocksOut(t, url); return first > 0 })
	testkit.WaitFor(t, 30*time.Second, "the count to rise", func() bool { return blocksOut(t, url) > first })
	// The byte counters, both ends of the pipe, rise too.
	for _, s := range []struct{ name, labels string }{
		{"marvelo_job_bytes_out_total", `pipeline="live",job="1"`},
		{"marvelo_job_bytes_in_total", `pipeline="live",job="2"`},
		{"marvelo_pipe_messages_total", `pipeline="live",pipe="1",job="2"`},
	} {
		var before float64
		testkit.WaitFor(t, 30*time.Second, "a first "+s.name, func() bool { before = metricValue(t, url, s.name, s.labels); return before > 0 })
		testkit.WaitFor(t, 30*time.Second, s.name+" to rise", func() bool { return metricValue(t, url, s.name, s.labels) > before })
	}
	// A Go job's process is the worker's, here this test's: it has used CPU and holds memory.
	testkit.WaitFor(t, 30*time.Second, "CPU time on /metrics", func() bool {
		return metricValue(t, url, "marvelo_job_cpu_seconds_total", `pipeline="live",job="1"`) > 0
	})
	if v := metricValue(t, url, "marvelo_job_memory_bytes", `pipeline="live",job="1"`); v <= 0 {
		t.Errorf("marvelo_job_memory_bytes of job 1: %v", v)
	}

	r := runApp(t, "top", "live", "--once", "--json", "--interval", "1s", "--broker", env.Broker.ClientURL())
	if r.code != 0 {
		t.Fatalf("top: %d %s", r.code, r.stderr)
	}
	var rows []topRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("top --once --json: %v\n%s", err, r.stdout)
	}
	if rows[0].Job != 1 || rows[0].BlocksOutPS <= 0 || rows[1].BlocksInPS <= 0 {
		t.Errorf("rates: %+v", rows)
	}
	if rows[0].BytesOutPS <= 0 || rows[1].BytesInPS <= 0 || rows[0].MemBytes == 0 {
		t.Errorf("byte rates and memory: %+v", rows)
	}
}

// gate is a sink that takes no block until its channel closes: its input pipe fills.
type gate struct{ open chan struct{} }

func (g *gate) RunRaw(ctx *job.Context, _ [][][]byte, out [][]byte) ([][]byte, error) {
	select {
	case <-g.open:
	case <-ctx.Context().Done():
		return nil, ctx.Context().Err()
	}
	return out, nil
}

// TestMetricsAndTopShowConsumerLag: a job that takes nothing leaves its input pipe's messages
// undelivered; /metrics shows the consumer's lag (JetStream's NumPending) and top the job's.
func TestMetricsAndTopShowConsumerLag(t *testing.T) {
	open := make(chan struct{})
	reg := builtin.Registry()
	reg.Register("gate", "a sink that waits", func() any { return &gate{open: open} })
	env, url := runWithMetrics(t, reg, "lag", `{"name": "lag", "jobs": [
		{"id": 1, "type": "counter", "args": {"interval": "1ms"}, "outputs": [1]},
		{"id": 2, "type": "gate", "inputs": [1]}]}`)
	t.Cleanup(func() { close(open) }) // before the stop (cleanups run last first): the gate opens, the stop can end
	testkit.WaitFor(t, 30*time.Second, "a consumer lag on /metrics", func() bool {
		return metricValue(t, url, "marvelo_pipe_consumer_lag", `pipeline="lag",pipe="1",job="2"`) > 0
	})
	if v := metricValue(t, url, "marvelo_pipe_stored_messages", `pipeline="lag",pipe="1"`); v <= 0 {
		t.Errorf("marvelo_pipe_stored_messages of pipe 1: %v", v)
	}
	r := runApp(t, "top", "lag", "--once", "--json", "--interval", "200ms", "--broker", env.Broker.ClientURL())
	if r.code != 0 {
		t.Fatalf("top: %d %s", r.code, r.stderr)
	}
	var rows []topRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("top --once --json: %v\n%s", err, r.stdout)
	}
	if rows[1].Job != 2 || rows[1].Lag == 0 || rows[0].Lag != 0 {
		t.Errorf("lag: %+v", rows)
	}
}

// runWithMetrics starts the one-process runtime with reg and metrics served on a free port,
// submits doc (a pipeline named name) and returns the runtime and the /metrics URL; the pipeline
// is stopped and everything closed when the test ends.
func runWithMetrics(t *testing.T, reg *job.Registry, name, doc string) (*local.Env, string) {
	t.Helper()
	env, err := local.Start(local.Options{Registry: reg, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	m, err := broker.ServeMetrics(env.Broker, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.Client.Submit(ctx, []byte(doc), ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Client.Stop(context.Background(), name) })
	return env, "http://" + m.Addr() + "/metrics"
}
