package bench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
)

// The chain scenario (issue 25): the linear pipeline of chainForwards forward jobs, all on the
// one embedded worker, run twice at each block size and rate — chained, the document as is, so
// that the worker may join jobs whose pipe has both ends on it and pass their blocks in process;
// and spread, the same document with "spread": true on every job, every block through the broker
// on every pipe as in the other scenarios. The comparison is what chaining saves.
const (
	chainForwards  = 3
	variantChained = "chained"
	variantSpread  = "spread"
)

// chainVariants are the chain scenario's runs, in the order they run at each size and rate.
var chainVariants = []string{variantChained, variantSpread}

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
}

// chainComparison is the chain scenario at one block size: chained, spread, and chained / spread.
type chainComparison struct {
	Setup   string       `json:"setup,omitempty"` // the cluster setup or --sync setting of the rows
	Size    int          `json:"size"`
	Rate    float64      `json:"latency_rate,omitempty"` // blocks/s of the p50 figures
	Chained chainFigures `json:"chained"`
	Spread  chainFigures `json:"spread"`
	Ratio   chainFigures `json:"ratio"` // chained / spread
}

// compareChains compares the chain scenario's rows of one runner (one setup), size by size.
func compareChains(rows []benchRow, setup string) []chainComparison {
	var sizes []int
	for _, r := range rows {
		if r.Scenario == scenarioChain && !slices.Contains(sizes, r.Size) {
			sizes = append(sizes, r.Size)
		}
	}
	find := func(variant string, size int, rate float64) *benchRow {
		for i, r := range rows {
			if r.Scenario == scenarioChain && r.Variant == variant && r.Size == size && r.Rate == rate && r.Error == "" {
				return &rows[i]
			}
		}
		return nil
	}
	var out []chainComparison
	for _, size := range sizes {
		c := chainComparison{Setup: setup, Size: size}
		for _, r := range rows {
			if r.Scenario == scenarioChain && r.Size == size && r.Rate > 0 && (c.Rate == 0 || r.Rate == chainLatencyRate) {
				c.Rate = r.Rate
			}
		}
		for _, v := range []struct {
			variant string
			f       *chainFigures
		}{{variantChained, &c.Chained}, {variantSpread, &c.Spread}} {
			if t := find(v.variant, size, 0); t != nil {
				v.f.BlocksPerS, v.f.CPUSecPerM, v.f.BrokerBytesPerBlock = t.BlocksPerS, t.CPUSecPerM, t.BrokerBytesPerBlock
			}
			if l := find(v.variant, size, c.Rate); c.Rate > 0 && l != nil && l.Latency != nil {
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
		}
		out = append(out, c)
	}
	return out
}

// writeChainTable prints the chain comparisons: each run's figures and chained / spread.
func writeChainTable(w io.Writer, chains []chainComparison) {
	if len(chains) == 0 {
		return
	}
	p50 := "p50 ms"
	if rate := chains[0].Rate; rate > 0 {
		p50 = "p50 ms at " + thousands(rate) + "/s"
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "CHAIN (%d forwards)\tblock\tblocks/s\t%s\tCPU s/M\tbroker B/block\t\n", chainForwards, p50)
	for _, c := range chains {
		prefix := ""
		if c.Setup != "" {
			prefix = c.Setup + " · "
		}
		for _, v := range []struct {
			label string
			f     chainFigures
		}{{variantChained, c.Chained}, {variantSpread, c.Spread}} {
			fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\t%s\t\n", prefix, v.label, sizeLabel(c.Size), orDash(v.f.BlocksPerS, thousands),
				orDash(v.f.P50, ms), cpuPerM(v.f.CPUSecPerM), orDash(v.f.BrokerBytesPerBlock, thousands))
		}
		r := c.Ratio
		fmt.Fprintf(w, "%s× %s / %s\t%s\t%s\t%s\t%s\t%s\t\n", prefix, variantChained, variantSpread, sizeLabel(c.Size),
			ratio(r.BlocksPerS), ratio(r.P50), ratio(r.CPUSecPerM), ratio(r.BrokerBytesPerBlock))
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
