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
	"github.com/marvelo/marvelo/cmd/local"
)

// blocksOut reads job 1's blocks_out counter from the metrics page.
func blocksOut(t *testing.T, url string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`marvelo_job_blocks_out_total\{pipeline="live",job="1",[^}]*\} (\d+)`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond) // bounded polling of an HTTP endpoint
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func TestMetricsRiseAndTopShowsRates(t *testing.T) {
	env, err := local.Start(local.Options{Registry: registry, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	m, err := broker.ServeMetrics(env.Broker, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	doc := []byte(`{"name": "live", "jobs": [
		{"id": 1, "type": "counter", "args": {"interval": "5ms"}, "outputs": [1]},
		{"id": 2, "type": "discard", "inputs": [1]}]}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.Client.Submit(ctx, doc, ""); err != nil {
		t.Fatal(err)
	}
	defer env.Client.Stop(context.Background(), "live")
	url := "http://" + m.Addr() + "/metrics"
	var first float64
	waitFor(t, "a first count on /metrics", func() bool { first = blocksOut(t, url); return first > 0 })
	waitFor(t, "the count to rise", func() bool { return blocksOut(t, url) > first })

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
}
