package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/worker/pyjob"
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
	want := chainComparison{Setup: "sync always", Jobs: "go", Size: 64, Rate: 1000,
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
// the broker on each of its four pipes, in and out. Then the same with two Python jobs in a line,
// or, without an interpreter, reports them not available and still succeeds.
func TestBenchChainMeasuresChainedAndSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	python := new(pyjob.Runtime).CanRun(context.Background(), &pipeline.Python{})
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
		if row.Scenario != scenarioChain || row.Stages != chainStages(row.Jobs) {
			t.Errorf("row %s (%s, %s), %d stages", row.Label, row.Scenario, row.Jobs, row.Stages)
			continue
		}
		seen[row.Jobs+" "+row.Variant+rateLabel(row.Rate)] = true
		if row.Jobs == chainPython && python != nil {
			if !strings.HasPrefix(row.Error, "not available: python interpreter") {
				t.Errorf("row %s: %q, want not available (%v)", row.Label, row.Error, python)
			}
			continue
		}
		if row.Error != "" {
			t.Errorf("row %s: %s", row.Label, row.Error)
			continue
		}
		checkFigures(t, row.Label, &row.benchFigures, row.Rate, row.Count)
		if row.Jobs == chainPython && row.Rate == 0 && row.JobCPUSecPerM <= 0 {
			t.Errorf("row %s: no CPU of the Python jobs' processes", row.Label)
		}
	}
	if len(seen) != 8 {
		t.Errorf("rows %v: want go and python, chained and spread, throughput and at 1,000/s", seen)
	}
	if len(rep.Chain) != 2 || rep.Chain[0].Jobs != chainGo || rep.Chain[1].Jobs != chainPython {
		t.Fatalf("comparisons %+v, want go then python (64 B):\n%s", rep.Chain, r.stdout)
	}
	for _, c := range rep.Chain {
		if c.Jobs == chainPython && python != nil {
			if !strings.HasPrefix(c.Error, "not available") || c.Chained.BlocksPerS != 0 {
				t.Errorf("python comparison %+v: want not available", c)
			}
			continue
		}
		for _, f := range []chainFigures{c.Chained, c.Spread, c.Ratio} {
			if f.BlocksPerS <= 0 || f.P50 <= 0 || f.CPUSecPerM <= 0 || f.BrokerBytesPerBlock <= 0 {
				t.Errorf("comparison %+v: a figure is missing", c)
				break
			}
		}
		pipes := chainStages(c.Jobs) + 1
		if c.Size != 64 || c.Rate != 1000 || c.Error != "" || c.Spread.BrokerBytesPerBlock < float64(pipes*2*64) {
			t.Errorf("comparison %+v: want 64 B at 1,000/s, at least %d bytes through the broker per spread block", c, pipes*2*64)
		}
	}
}

// TestBenchChainPythonDocument: the chain scenario's python pipeline is a source, two Python jobs
// of the python scenario's pass-through class and a sink on bytes pipes of the size, spread but
// in its chained run; the go pipeline is unchanged.
func TestBenchChainPythonDocument(t *testing.T) {
	r := newRunner(benchOptions{stages: 1, qos: pipeline.QoSReliable, codec: "bytes"}, io.Discard)
	defer r.close()
	for _, c := range []struct {
		chain, variant string
		jobs           int
		python         bool
	}{
		{"", variantChained, 2 + chainForwards, false},
		{chainGo, variantSpread, 2 + chainForwards, false},
		{chainPython, variantChained, 2 + chainPythonJobs, true},
		{chainPython, variantSpread, 2 + chainPythonJobs, true},
	} {
		r.chain, r.variant = c.chain, c.variant
		doc, err := r.document("doc", scenarioChain, 4096, 10, 0, "p0")
		if err != nil {
			t.Fatalf("%s %s: %v", c.chain, c.variant, err)
		}
		p, err := pipeline.Parse(doc)
		if err != nil {
			t.Fatalf("%s %s: the document does not parse: %v", c.chain, c.variant, err)
		}
		if len(p.Jobs) != c.jobs || len(p.Pipes) != c.jobs-1 {
			t.Fatalf("%s %s: %d jobs and %d pipes, want %d jobs", c.chain, c.variant, len(p.Jobs), len(p.Pipes), c.jobs)
		}
		for i, j := range p.Jobs {
			inner := i > 0 && i < len(p.Jobs)-1
			if j.Spread != (c.variant == variantSpread) {
				t.Errorf("%s %s: job %d spread %v", c.chain, c.variant, j.ID, j.Spread)
			}
			switch {
			case inner && c.python && (j.Python == nil || j.Python.Class != "bench_forward:Forward"):
				t.Errorf("%s %s: job %d %+v, want the pass-through Python job", c.chain, c.variant, j.ID, j)
			case inner && !c.python && j.Type != "forward":
				t.Errorf("%s %s: job %d type %q, want forward", c.chain, c.variant, j.ID, j.Type)
			}
		}
		for _, pp := range p.Pipes {
			if pp.Codec != "bytes" || pp.BlockSize != 4096 {
				t.Errorf("%s %s: pipe %+v, want bytes of 4096", c.chain, c.variant, pp)
			}
		}
		if want := chainName(c.chain, c.variant); r.label(scenarioChain) != want || r.topology(scenarioChain).Stages != c.jobs-2 {
			t.Errorf("%s %s: label %q (want %q), topology %+v", c.chain, c.variant, r.label(scenarioChain), want, r.topology(scenarioChain))
		}
	}
	if got := chainName(chainPython, variantChained); got != "chain python (2 Python jobs, chained)" {
		t.Errorf("python chain label %q", got)
	}
	if got := chainName(chainGo, variantSpread); got != "chain (3 forwards, spread)" {
		t.Errorf("go chain label %q", got)
	}
}

// TestBenchChainPythonNotAvailable: without an interpreter, a python chain run fails at once with
// the worker's own reason (the worker would leave the pipeline pending), which the bench reports
// as not available, not as a failure.
func TestBenchChainPythonNotAvailable(t *testing.T) {
	t.Setenv(pyjob.EnvInterpreter, filepath.Join(t.TempDir(), "no-python"))
	r := newRunner(benchOptions{stages: 1, qos: pipeline.QoSReliable, codec: "bytes", count: 10, runs: 1, timeout: time.Minute}, io.Discard)
	defer r.close()
	r.chain, r.variant = chainPython, variantChained
	row := r.throughput(context.Background(), scenarioChain, 64)
	var unavailable string
	if err := r.rowError(context.Background(), &row, &unavailable); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(row.Error, "not available: python interpreter") || unavailable != row.Error || r.failed != 0 || row.Jobs != chainPython {
		t.Errorf("row %+v, %d failed: want not available", row, r.failed)
	}
}

// TestBenchChainTablePython: the CHAIN table has a section per pipeline, the python one with its
// own heading, runs and ratio, the go one as before; a python pipeline not available shows n/a
// there, its why once in the notes, and its comparison carries it in the JSON.
func TestBenchChainTablePython(t *testing.T) {
	row := func(jobs, variant string, size int, rate, bps, p50, bytes float64) benchRow {
		r := benchRow{Scenario: scenarioChain, Label: chainName(jobs, variant), Jobs: jobs, Variant: variant, Size: size, Rate: rate,
			benchFigures: benchFigures{BlocksPerS: bps, CPUSecPerM: 1e6 / bps, BrokerBytesPerBlock: bytes}}
		if rate > 0 {
			r.Latency = &benchLatency{P50: p50}
		}
		return r
	}
	rows := []benchRow{
		row(chainGo, variantChained, 64, 0, 40_000, 0, 100),
		row(chainGo, variantSpread, 64, 0, 20_000, 0, 800),
		row(chainGo, variantChained, 64, 1000, 0, 0.2, 0),
		row(chainGo, variantSpread, 64, 1000, 0, 0.4, 0),
		row(chainPython, variantChained, 64, 0, 25_000, 0, 50),
		row(chainPython, variantSpread, 64, 0, 20_000, 0, 500),
		row(chainPython, variantChained, 64, 1000, 0, 0.3, 0),
		row(chainPython, variantSpread, 64, 1000, 0, 0.6, 0),
	}
	rows[4].JobCPUSecPerM, rows[5].JobCPUSecPerM = 30, 40
	got := compareChains(rows, "")
	if len(got) != 2 || got[0].Jobs != chainGo || got[1].Jobs != chainPython {
		t.Fatalf("comparisons %+v, want go then python", got)
	}
	want := chainComparison{Jobs: chainPython, Size: 64, Rate: 1000,
		Chained: chainFigures{BlocksPerS: 25_000, P50: 0.3, CPUSecPerM: 40, BrokerBytesPerBlock: 50, JobCPUSecPerM: 30},
		Spread:  chainFigures{BlocksPerS: 20_000, P50: 0.6, CPUSecPerM: 50, BrokerBytesPerBlock: 500, JobCPUSecPerM: 40},
		Ratio:   chainFigures{BlocksPerS: 1.25, P50: 0.5, CPUSecPerM: 0.8, BrokerBytesPerBlock: 0.1, JobCPUSecPerM: 0.75}}
	if got[1] != want {
		t.Errorf("python:\n got %+v\nwant %+v", got[1], want)
	}
	var b bytes.Buffer
	if err := writeTable(&b, benchReport{Broker: "embedded", Settings: benchSettings{Count: 1, Runs: 1}, Results: rows, Chain: got}); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"CHAIN (3 forwards) block blocks/s p50 ms at 1,000/s CPU s/M broker B/block chained 64 B 40,000 0.200 25.0 100 spread 64 B 20,000 0.400 50.0 800 × chained / spread 64 B 2.00 0.50 0.50 0.12",
		"CHAIN python (2 Python jobs) block blocks/s p50 ms at 1,000/s CPU s/M broker B/block chained 64 B 25,000 0.300 40.0 50 spread 64 B 20,000 0.600 50.0 500 × chained / spread 64 B 1.25 0.50 0.80 0.10",
		"chain python: the same with 2 Python jobs",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}

	// Not available: n/a in the CHAIN table, the why once.
	why := "not available: python interpreter \"python3\" is not on PATH"
	for i := 4; i < len(rows); i++ {
		rows[i].benchFigures, rows[i].Error = benchFigures{}, why
	}
	got = compareChains(rows, "")
	if len(got) != 2 || got[1].Error != why || got[1].Chained != (chainFigures{}) || got[0].Error != "" {
		t.Fatalf("comparisons %+v, want python not available", got)
	}
	js, err := json.Marshal(got[1])
	if err != nil || !strings.Contains(string(js), `"jobs":"python"`) || !strings.Contains(string(js), `"error":"not available: `) {
		t.Errorf("JSON %s (%v): want the pipeline and why", js, err)
	}
	b.Reset()
	if err := writeTable(&b, benchReport{Broker: "embedded", Settings: benchSettings{Count: 1, Runs: 1}, Results: rows, Chain: got}); err != nil {
		t.Fatal(err)
	}
	out = strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"CHAIN python (2 Python jobs) block blocks/s p50 ms at 1,000/s CPU s/M broker B/block chained 64 B n/a - - - spread 64 B n/a - - - × chained / spread 64 B - - - -",
		"note: chain python (2 Python jobs): " + why,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if n := strings.Count(b.String(), why); n != 1 {
		t.Errorf("the why %d times, want once:\n%s", n, b.String())
	}
}
