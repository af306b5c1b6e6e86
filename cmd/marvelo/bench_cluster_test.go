package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func TestBenchClusterUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cluster", "--broker", "nats://127.0.0.1:4222"}, "leave --broker out"},
		{[]string{"cluster", "--baseline", "--quick"}, "--baseline does not apply to cluster"},
	} {
		r := runBench(t, tc.args...)
		if r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, cliutil.ExitUsage, tc.want)
		}
	}
}

// TestBenchClusterMeasuresEverySetup: bench cluster linear gives a throughput and a latency row
// for one broker and for three brokers with replicas 1 and 3, each labelled with its setup.
func TestBenchClusterMeasuresEverySetup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers and runs pipelines")
	}
	r := runBench(t, "cluster", "linear", "--quick", "--json", "--count", "2000", "--rate", "500")
	if r.code != 0 {
		t.Fatalf("bench cluster: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	seen := map[string]bool{}
	for _, row := range rep.Results {
		if row.Error != "" {
			t.Errorf("%s at %g/s: %s", row.Label, row.Rate, row.Error)
			continue
		}
		setup, _, _ := strings.Cut(row.Label, " · ")
		kind := "throughput"
		if row.Rate > 0 {
			kind = "latency"
			if row.Latency == nil {
				t.Errorf("%s at %g/s: no latency figure", row.Label, row.Rate)
			}
		} else if row.BlocksPerS <= 0 {
			t.Errorf("%s: no throughput figure", row.Label)
		}
		seen[setup+" "+kind] = true
	}
	for _, s := range clusterSetups {
		for _, kind := range []string{"throughput", "latency"} {
			if !seen[s.label+" "+kind] {
				t.Errorf("no %s row for %s: %v", kind, s.label, seen)
			}
		}
	}
}
