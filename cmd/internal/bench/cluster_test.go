package bench

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBenchClusterMeasuresEverySetup: bench cluster linear gives a throughput and a latency row
// for one broker and for three brokers with replicas 1 and 3, each labelled with its setup.
func TestBenchClusterMeasuresEverySetup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers and runs pipelines")
	}
	o := quickOptions("cluster", scenarioLinear)
	o.JSON, o.Count, o.Rates = true, 2000, []float64{500}
	r := runBench(t, o)
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
		} else if row.BlocksPerS <= 0 || row.BrokerBytesPerBlock <= 0 {
			t.Errorf("%s: no throughput figure (%.0f blocks/s, %.0f bytes through the brokers per block)", row.Label, row.BlocksPerS, row.BrokerBytesPerBlock)
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
