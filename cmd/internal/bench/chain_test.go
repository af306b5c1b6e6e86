package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// TestDocumentsSpreadEveryJobButTheChainedRun: every scenario's jobs are spread (every hop
// through the broker) but those of the chain scenario's chained run, which is the same
// five-job line as its spread one.
func TestDocumentsSpreadEveryJobButTheChainedRun(t *testing.T) {
	r := newRunner(benchOptions{stages: 2, qos: pipeline.QoSReliable, codec: "bytes"}, io.Discard)
	defer r.close()
	for _, c := range []struct {
		scenario, variant string
		jobs              int
		spread            bool
	}{
		{scenarioLinear, "", 4, true},
		{scenarioFanin, "", 5, true},
		{scenarioExec, "", 3, true},
		{scenarioPython, "", 3, true},
		{scenarioChain, variantSpread, 2 + chainForwards, true},
		{scenarioChain, variantChained, 2 + chainForwards, false},
	} {
		r.variant = c.variant
		doc, err := r.document("doc", c.scenario, 64, 10, 0, "p0")
		if err != nil {
			t.Fatalf("%s %s: %v", c.scenario, c.variant, err)
		}
		p, err := pipeline.Parse(doc)
		if err != nil {
			t.Fatalf("%s %s: the document does not parse: %v", c.scenario, c.variant, err)
		}
		if len(p.Jobs) != c.jobs || len(p.Pipes) != c.jobs-1 && c.scenario != scenarioFanin {
			t.Errorf("%s %s: %d jobs and %d pipes, want %d jobs", c.scenario, c.variant, len(p.Jobs), len(p.Pipes), c.jobs)
		}
		for _, j := range p.Jobs {
			if j.Spread != c.spread {
				t.Errorf("%s %s: job %d spread %v, want %v", c.scenario, c.variant, j.ID, j.Spread, c.spread)
			}
		}
	}
}

func TestCompareChainsSizeBySize(t *testing.T) {
	row := func(variant string, size int, rate, bps, p50, bytes float64) benchRow {
		r := benchRow{Scenario: scenarioChain, Variant: variant, Size: size, Rate: rate,
			benchFigures: benchFigures{BlocksPerS: bps, CPUSecPerM: 1e6 / bps, BrokerBytesPerBlock: bytes}}
		if rate > 0 {
			r.Latency = &benchLatency{P50: p50}
		}
		return r
	}
	rows := []benchRow{
		{Scenario: scenarioLinear, Size: 64, benchFigures: benchFigures{BlocksPerS: 1}},
		row(variantChained, 64, 0, 40_000, 0, 100),
		row(variantSpread, 64, 0, 20_000, 0, 800),
		row(variantChained, 64, 10_000, 0, 0.1, 0),
		row(variantSpread, 64, 10_000, 0, 0.3, 0),
		row(variantChained, 64, 1000, 0, 0.2, 0),
		row(variantSpread, 64, 1000, 0, 0.4, 0),
		row(variantChained, 4096, 0, 10_000, 0, 200),
		row(variantChained, 65536, 0, 1000, 0, 1.5),
		row(variantSpread, 65536, 0, 1000, 0, 140_000),
		{Scenario: scenarioChain, Variant: variantSpread, Size: 4096, Error: "failed: boom"},
	}
	got := compareChains(rows, "sync always")
	if len(got) != 3 {
		t.Fatalf("%d comparisons, want 64 B, 4 KiB and 64 KiB: %+v", len(got), got)
	}
	c := got[0]
	want := chainComparison{Setup: "sync always", Size: 64, Rate: 1000,
		Chained: chainFigures{BlocksPerS: 40_000, P50: 0.2, CPUSecPerM: 25, BrokerBytesPerBlock: 100},
		Spread:  chainFigures{BlocksPerS: 20_000, P50: 0.4, CPUSecPerM: 50, BrokerBytesPerBlock: 800},
		Ratio:   chainFigures{BlocksPerS: 2, P50: 0.5, CPUSecPerM: 0.5, BrokerBytesPerBlock: 0.125}}
	if c != want {
		t.Errorf("64 B:\n got %+v\nwant %+v", c, want)
	}
	if c := got[1]; c.Size != 4096 || c.Chained.BlocksPerS != 10_000 || c.Spread.BlocksPerS != 0 || c.Ratio.BlocksPerS != 0 {
		t.Errorf("4 KiB, its spread run failed: %+v", c)
	}
	var b bytes.Buffer
	if err := writeTable(&b, benchReport{Broker: "embedded", Settings: benchSettings{Count: 1, Runs: 1}, Results: rows, Chain: got}); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"CHAIN (3 forwards) block blocks/s p50 ms at 1,000/s CPU s/M broker B/block",
		"sync always · chained 64 B 40,000 0.200 25.0 100",
		"sync always · spread 64 B 20,000 0.400 50.0 800",
		"sync always · × chained / spread 64 B 2.00 0.50 0.50 0.12",
		"sync always · spread 4 KiB - - - -",
		"sync always · × chained / spread 64 KiB 1.00 - 1.00 1.1e-05",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestBenchChainMeasuresChainedAndSpread: bench chain runs the five-job line chained and spread
// at each size and rate, every block arriving, and compares them; the spread run's blocks cross
// the broker on each of its four pipes, in and out.
func TestBenchChainMeasuresChainedAndSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	o := quickOptions(scenarioChain)
	o.JSON, o.Count, o.Rates = true, 3000, []float64{1000}
	r := runBench(t, o)
	r.want(t, 0)
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	seen := map[string]bool{}
	for _, row := range rep.Results {
		if row.Scenario != scenarioChain || row.Error != "" || row.Stages != chainForwards {
			t.Errorf("row %s (%s), %d stages: %s", row.Label, row.Scenario, row.Stages, row.Error)
			continue
		}
		checkFigures(t, row.Label, &row.benchFigures, row.Rate, row.Count)
		seen[row.Variant+" "+rateLabel(row.Rate)] = true
	}
	if len(seen) != 4 {
		t.Errorf("rows %v: want chained and spread, throughput and at 1,000/s", seen)
	}
	if len(rep.Chain) != 1 {
		t.Fatalf("%d comparisons, want one (64 B):\n%s", len(rep.Chain), r.stdout)
	}
	c := rep.Chain[0]
	for _, f := range []chainFigures{c.Chained, c.Spread, c.Ratio} {
		if f.BlocksPerS <= 0 || f.P50 <= 0 || f.CPUSecPerM <= 0 || f.BrokerBytesPerBlock <= 0 {
			t.Errorf("comparison %+v: a figure is missing", c)
			break
		}
	}
	if c.Size != 64 || c.Rate != 1000 || c.Spread.BrokerBytesPerBlock < 4*2*64 {
		t.Errorf("comparison %+v: want 64 B at 1,000/s, at least %d bytes through the broker per spread block", c, 4*2*64)
	}
}
