package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func TestBenchSyncUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"linear", "--sync", "sometimes"}, "want always or a positive duration"},
		{[]string{"linear", "--sync", ","}, "want always, a duration, or a list"},
		{[]string{"cluster", "--sync", "always"}, "cluster runs in memory"},
		{[]string{"linear", "--sync", "always", "--broker", "nats://127.0.0.1:4222"}, "a --broker keeps its own"},
		{[]string{"linear", "--sync", "always", "--baseline"}, "--baseline's ceilings run in memory"},
		{[]string{"failover", "--sync", "always"}, "failover runs marvelo-broker processes of its own"},
	} {
		r := runBench(t, tc.args...)
		if r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, cliutil.ExitUsage, tc.want)
		}
	}
}

// TestBenchSyncBrokerKeepsEveryStreamOnDisk: the broker bench --sync starts stores every stream
// it makes (pipes, buckets) in files, not in memory.
func TestBenchSyncBrokerKeepsEveryStreamOnDisk(t *testing.T) {
	r := &benchRunner{opts: benchOptions{}, progress: io.Discard}
	stop, err := r.startStored(2*time.Minute, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	defer stop()
	nc, err := r.env.Broker.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	streams := js.ListStreams(ctx)
	n := 0
	for info := range streams.Info() {
		n++
		if info.Config.Storage != jetstream.FileStorage {
			t.Errorf("stream %s is stored in %s, want file", info.Config.Name, info.Config.Storage)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("the broker made no stream: nothing to check")
	}
}

// TestBenchSyncMeasuresEverySettingInOneRun: bench linear --sync always,2m gives a throughput and
// a latency row for each setting, each labelled with it, and says the store is on disk.
func TestBenchSyncMeasuresEverySettingInOneRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers and runs pipelines")
	}
	r := runBench(t, "linear", "--quick", "--json", "--count", "2000", "--rate", "500", "--sync", "always,2m")
	if r.code != 0 {
		t.Fatalf("bench --sync: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	if !strings.Contains(rep.Store, "on disk") {
		t.Errorf("store %q: want JetStream on disk", rep.Store)
	}
	seen := map[string]bool{}
	for _, row := range rep.Results {
		if row.Error != "" {
			t.Errorf("%s at %g/s: %s", row.Label, row.Rate, row.Error)
			continue
		}
		setting, _, _ := strings.Cut(row.Label, " · ")
		kind := "throughput"
		if row.Rate > 0 {
			kind = "latency"
			if row.Latency == nil {
				t.Errorf("%s at %g/s: no latency figure", row.Label, row.Rate)
			}
		} else if row.BlocksPerS <= 0 {
			t.Errorf("%s: no throughput figure", row.Label)
		}
		seen[setting+" "+kind] = true
	}
	for _, s := range []string{"sync always", "sync 2m0s"} {
		for _, kind := range []string{"throughput", "latency"} {
			if !seen[s+" "+kind] {
				t.Errorf("no %s row for %s: %v", kind, s, seen)
			}
		}
	}
}
