package bench

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBenchSyncBrokerKeepsEveryStreamOnDisk: the broker bench --sync starts stores every stream
// it makes (pipes, buckets) in files, not in memory.
func TestBenchSyncBrokerKeepsEveryStreamOnDisk(t *testing.T) {
	r := newRunner(benchOptions{}, io.Discard)
	defer r.close()
	if err := r.startEmbedded(true, 2*time.Minute, io.Discard); err != nil {
		t.Fatal(err)
	}
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
	o := quickOptions(scenarioLinear)
	o.JSON, o.Count, o.Rates, o.Syncs = true, 2000, []float64{500}, []time.Duration{0, 2 * time.Minute}
	r := runBench(t, o)
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
		} else if row.BlocksPerS <= 0 || row.BrokerBytesPerBlock <= 0 {
			t.Errorf("%s: no throughput figure (%.0f blocks/s, %.0f bytes through the broker per block)", row.Label, row.BlocksPerS, row.BrokerBytesPerBlock)
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
