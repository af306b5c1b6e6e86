package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// The chain scenario (issue 25): the linear pipeline of chainForwards forward jobs, all on the
// one embedded worker, run twice at each block size and rate — chained, the document as is, so
// that the worker may join jobs whose pipe has both ends on it and pass their blocks in process;
// and spread, the same document with "spread": true on every job, every block through the broker
// on every pipe as in the other scenarios. The comparison is what chaining saves. The scenario
// then runs a second pipeline the same way, chainPythonJobs Python jobs in a line (the python
// scenario's pass-through class) in place of the forwards: what chaining saves between Python
// jobs ("not available" where the worker cannot run them).
const (
	chainForwards   = 3
	chainPythonJobs = 2
	variantChained  = "chained"
	variantSpread   = "spread"
	chainGo         = "go"     // the chain of forward jobs
	chainPython     = "python" // the chain of Python jobs
)

// chainVariants are the chain scenario's runs, in the order they run at each size and rate.
var chainVariants = []string{variantChained, variantSpread}

// chainPipelines are the chain scenario's pipelines, each run over every size and rate in turn.
var chainPipelines = []string{chainGo, chainPython}

// chainStages is the number of jobs between the source and the sink of a chain pipeline.
func chainStages(jobs string) int {
	if jobs == chainPython {
		return chainPythonJobs
	}
	return chainForwards
}

// chainName names a chain pipeline: the CHAIN table's heading, and its rows' label with the
// variant when there is one.
func chainName(jobs, variant string) string {
	name := fmt.Sprintf("chain (%d forwards", chainForwards)
	if jobs == chainPython {
		name = fmt.Sprintf("chain python (%d Python jobs", chainPythonJobs)
	}
	if variant != "" {
		name += ", " + variant
	}
	return name + ")"
}

// chainJobsOf is the chain pipeline of a chain row (go when the row does not say).
func chainJobsOf(r benchRow) string {
	if r.Jobs == "" {
		return chainGo
	}
	return r.Jobs
}

// chainLatencyRate is the rate whose p50 the comparison shows when the run measured it; else the
// first rate measured.
const chainLatencyRate = 1000

// chainFigures are the figures the chain comparison shows of one run (or their ratios); 0 is not
// measured.
type chainFigures struct {
	BlocksPerS          float64 `json:"blocks_per_s,omitempty"`           // the throughput run's (median of --runs)
	P50                 float64 `json:"p50_ms,omitempty"`                 // at the comparison's rate
	CPUSecPerM          float64 `json:"cpu_s_per_mblock,omitempty"`       // the throughput run's
	BrokerBytesPerBlock float64 `json:"broker_bytes_per_block,omitempty"` // the throughput run's
	// JobCPUSecPerM is the Python jobs' own processes (python chain only), which CPUSecPerM
	// leaves out: the throughput run's, their start included.
	JobCPUSecPerM float64 `json:"job_cpu_s_per_mblock,omitempty"`
}

// chainComparison is one chain pipeline at one block size: chained, spread, and chained / spread.
type chainComparison struct {
	Setup   string       `json:"setup,omitempty"` // the cluster setup or --sync setting of the rows
	Jobs    string       `json:"jobs"`            // the pipeline: go (forward jobs) or python (Python jobs)
	Size    int          `json:"size"`
	Rate    float64      `json:"latency_rate,omitempty"` // blocks/s of the p50 figures
	Chained chainFigures `json:"chained"`
	Spread  chainFigures `json:"spread"`
	Ratio   chainFigures `json:"ratio"`           // chained / spread
	Error   string       `json:"error,omitempty"` // "not available: <why>" (no Python jobs on the worker)
}

// compareChains compares the chain scenario's rows of one runner (one setup), pipeline by
// pipeline and size by size.
func compareChains(rows []benchRow, setup string) []chainComparison {
	type key struct {
		jobs string
		size int
	}
	var keys []key
	for _, r := range rows {
		if k := (key{chainJobsOf(r), r.Size}); r.Scenario == scenarioChain && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.SortStableFunc(keys, func(a, b key) int { // go first, each in the order measured
		return slices.Index(chainPipelines, a.jobs) - slices.Index(chainPipelines, b.jobs)
	})
	of := func(r benchRow, k key) bool {
		return r.Scenario == scenarioChain && chainJobsOf(r) == k.jobs && r.Size == k.size
	}
	find := func(k key, variant string, rate float64) *benchRow {
		for i, r := range rows {
			if of(r, k) && r.Variant == variant && r.Rate == rate && r.Error == "" {
				return &rows[i]
			}
		}
		return nil
	}
	var out []chainComparison
	for _, k := range keys {
		c := chainComparison{Setup: setup, Jobs: k.jobs, Size: k.size}
		for _, r := range rows {
			if of(r, k) && r.Rate > 0 && (c.Rate == 0 || r.Rate == chainLatencyRate) {
				c.Rate = r.Rate
			}
			if of(r, k) && c.Error == "" && strings.HasPrefix(r.Error, "not available") {
				c.Error = r.Error
			}
		}
		for _, v := range []struct {
			variant string
			f       *chainFigures
		}{{variantChained, &c.Chained}, {variantSpread, &c.Spread}} {
			if t := find(k, v.variant, 0); t != nil {
				v.f.BlocksPerS, v.f.CPUSecPerM, v.f.BrokerBytesPerBlock = t.BlocksPerS, t.CPUSecPerM, t.BrokerBytesPerBlock
				v.f.JobCPUSecPerM = t.JobCPUSecPerM
			}
			if l := find(k, v.variant, c.Rate); c.Rate > 0 && l != nil && l.Latency != nil {
				v.f.P50 = l.Latency.P50
			}
		}
		div := func(x, y float64) float64 {
			if x <= 0 || y <= 0 {
				return 0
			}
			return x / y
		}
		c.Ratio = chainFigures{
			BlocksPerS:          div(c.Chained.BlocksPerS, c.Spread.BlocksPerS),
			P50:                 div(c.Chained.P50, c.Spread.P50),
			CPUSecPerM:          div(c.Chained.CPUSecPerM, c.Spread.CPUSecPerM),
			BrokerBytesPerBlock: div(c.Chained.BrokerBytesPerBlock, c.Spread.BrokerBytesPerBlock),
			JobCPUSecPerM:       div(c.Chained.JobCPUSecPerM, c.Spread.JobCPUSecPerM),
		}
		out = append(out, c)
	}
	return out
}

// writeChainTable prints the chain comparisons, one section per pipeline (each setup's in
// turn): each run's figures and chained / spread. A pipeline that is not available shows n/a
// (the why is a note under the tables).
func writeChainTable(w io.Writer, chains []chainComparison) {
	for _, jobs := range chainPipelines {
		var these []chainComparison
		for _, c := range chains {
			if c.Jobs == jobs || c.Jobs == "" && jobs == chainGo {
				these = append(these, c)
			}
		}
		if len(these) == 0 {
			continue
		}
		p50 := "p50 ms"
		if rate := these[0].Rate; rate > 0 {
			p50 = "p50 ms at " + thousands(rate) + "/s"
		}
		heading := fmt.Sprintf("CHAIN (%d forwards)", chainForwards)
		if jobs == chainPython {
			heading = fmt.Sprintf("CHAIN python (%d Python jobs)", chainPythonJobs)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "%s\tblock\tblocks/s\t%s\tCPU s/M\tbroker B/block\t\n", heading, p50)
		for _, c := range these {
			prefix := ""
			if c.Setup != "" {
				prefix = c.Setup + " · "
			}
			for _, v := range []struct {
				label string
				f     chainFigures
			}{{variantChained, c.Chained}, {variantSpread, c.Spread}} {
				bps := orDash(v.f.BlocksPerS, thousands)
				if c.Error != "" {
					bps = "n/a"
				}
				fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\t%s\t\n", prefix, v.label, sizeLabel(c.Size), bps,
					orDash(v.f.P50, ms), cpuPerM(v.f.CPUSecPerM), orDash(v.f.BrokerBytesPerBlock, thousands))
			}
			r := c.Ratio
			fmt.Fprintf(w, "%s× %s / %s\t%s\t%s\t%s\t%s\t%s\t\n", prefix, variantChained, variantSpread, sizeLabel(c.Size),
				ratio(r.BlocksPerS), ratio(r.P50), ratio(r.CPUSecPerM), ratio(r.BrokerBytesPerBlock))
		}
	}
}

// orDash formats v, or "-" for 0 (not measured).
func orDash(v float64, format func(float64) string) string {
	if v == 0 {
		return "-"
	}
	return format(v)
}

// ratio formats a ratio with two decimals, or two significant digits below 0.1 ("-": not
// measured).
func ratio(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 0.1:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
