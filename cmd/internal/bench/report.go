package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/marvelo/marvelo/cmd/internal/benchkit"
)

// benchReport is what marvelo bench --json prints.
type benchReport struct {
	Machine  benchMachine  `json:"machine"`
	Broker   string        `json:"broker"`          // "embedded" or the URL of --broker
	Store    string        `json:"store,omitempty"` // the embedded broker's JetStream, when not in memory (--sync)
	Settings benchSettings `json:"settings"`
	Results  []benchRow    `json:"results"`
	// Chain compares the chain scenario's chained and spread runs, size by size.
	Chain []chainComparison `json:"chain,omitempty"`
}

type benchMachine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
}

type benchSettings struct {
	Count     int       `json:"count"`
	Runs      int       `json:"runs"`
	Stages    int       `json:"stages"`               // the first count of --stages
	StageList []int     `json:"stage_list,omitempty"` // every count of --stages
	Sizes     []int     `json:"sizes"`
	Rates     []float64 `json:"rates"`
	Duration  float64   `json:"duration_s"`
	Baseline  bool      `json:"baseline"`
	JSCount   int       `json:"js_count,omitempty"`
	Codec     string    `json:"codec,omitempty"` // the pipes' codec (--codec; bytes when empty)
}

// benchFigures are the figures of one measured run, marvelo's or a baseline's.
type benchFigures struct {
	Blocks      int64   `json:"blocks"`                     // blocks (rounds, for fanin) into the sink
	Seconds     float64 `json:"seconds"`                    // first block sent → last block received
	WallSeconds float64 `json:"wall_s"`                     // the whole run, setup and teardown included
	BlocksPerS  float64 `json:"blocks_per_s"`               // rounds/s for fanin
	MBPerS      float64 `json:"mb_per_s"`                   // payload bytes into the sink
	CPUSecPerM  float64 `json:"cpu_s_per_mblock,omitempty"` // process CPU seconds per million blocks
	PeakRSSMB   float64 `json:"peak_rss_mb,omitempty"`      // process peak RSS during the run
	// BrokerBytesPerBlock is the bytes the embedded NATS server received and sent (its varz:
	// in_bytes + out_bytes; summed over a cluster's servers) over the whole run, divided by the
	// blocks into the sink. Not measured on a remote broker.
	BrokerBytesPerBlock float64 `json:"broker_bytes_per_block,omitempty"`
	// Latency is receive time minus send time per block, at a fixed rate.
	Latency *benchLatency `json:"latency_ms,omitempty"`
	// LateBlocks counts paced blocks the sources sent more than an interval late.
	LateBlocks int64 `json:"late_blocks,omitempty"`
	// JobCPUSecPerM and JobRSSMB are the python scenario's job process (the interpreter running
	// the job; the python chain's two, summed and the largest), which the process columns leave
	// out: CPU seconds per million blocks, its whole life included (start, warm-up), and its peak
	// resident memory.
	JobCPUSecPerM float64 `json:"job_cpu_s_per_mblock,omitempty"`
	JobRSSMB      float64 `json:"job_rss_mb,omitempty"`
}

// addJobProcess records the CPU and peak memory of the job's own process (the run's children).
func (f *benchFigures) addJobProcess(s benchkit.Sample, blocks int64) {
	if blocks > 0 {
		f.JobCPUSecPerM = s.ChildCPU.Seconds() / float64(blocks) * 1e6
	}
	f.JobRSSMB = float64(s.ChildPeakRSS) / 1e6
}

type benchLatency struct {
	P50     float64 `json:"p50"`
	P99     float64 `json:"p99"`
	P999    float64 `json:"p99_9"`
	Max     float64 `json:"max"`
	Mean    float64 `json:"mean"`
	Samples uint64  `json:"samples"`
}

// benchRatio is marvelo's figure divided by the baseline's: above 1 is faster for blocks/s,
// slower for latencies.
type benchRatio struct {
	BlocksPerS float64 `json:"blocks_per_s,omitempty"`
	P50        float64 `json:"p50,omitempty"`
	P99        float64 `json:"p99,omitempty"`
	P999       float64 `json:"p99_9,omitempty"`
}

// benchRow is one scenario at one block size and rate.
type benchRow struct {
	Scenario string  `json:"scenario"`
	Label    string  `json:"label"`
	Variant  string  `json:"variant,omitempty"` // chain: chained or spread
	Jobs     string  `json:"jobs,omitempty"`    // chain: go (the forwards) or python (the Python jobs)
	Sources  int     `json:"sources"`
	Stages   int     `json:"stages"`
	Size     int     `json:"size"` // bytes per block; 0: cbor integers (--broker)
	Rate     float64 `json:"rate"` // blocks/s per source; 0: as fast as possible
	Count    int     `json:"count"`
	Runs     int     `json:"runs"`
	benchFigures
	Baseline map[string]*benchFigures `json:"baseline,omitempty"` // "core", "jetstream"
	Ratio    map[string]benchRatio    `json:"ratio,omitempty"`
	Error    string                   `json:"error,omitempty"`
	Notes    []string                 `json:"notes,omitempty"`
}

func newFigures(blocks int64, secs float64, size int, s benchkit.Sample) *benchFigures {
	f := &benchFigures{Blocks: blocks, Seconds: secs}
	if secs > 0 {
		f.BlocksPerS = float64(blocks) / secs
		f.MBPerS = f.BlocksPerS * float64(size) / 1e6
	}
	if s.CPU > 0 && blocks > 0 {
		f.CPUSecPerM = s.CPU.Seconds() / float64(blocks) * 1e6
	}
	if s.PeakRSS > 0 {
		f.PeakRSSMB = float64(s.PeakRSS) / (1 << 20)
	}
	return f
}

func newLatency(h *benchkit.Histogram) *benchLatency {
	if h == nil {
		return &benchLatency{}
	}
	msOf := func(ns int64) float64 { return float64(ns) / 1e6 }
	return &benchLatency{
		P50: msOf(h.Percentile(50)), P99: msOf(h.Percentile(99)), P999: msOf(h.Percentile(99.9)),
		Max: msOf(h.Max()), Mean: h.Mean() / 1e6, Samples: h.Count(),
	}
}

func ratioOf(m, b *benchFigures) benchRatio {
	div := func(x, y float64) float64 {
		if y <= 0 || x <= 0 {
			return 0
		}
		return x / y
	}
	if m.Latency == nil || b.Latency == nil {
		return benchRatio{BlocksPerS: div(m.BlocksPerS, b.BlocksPerS)}
	}
	return benchRatio{P50: div(m.Latency.P50, b.Latency.P50), P99: div(m.Latency.P99, b.Latency.P99), P999: div(m.Latency.P999, b.Latency.P999)}
}

func machine() benchMachine {
	m := benchMachine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

func writeJSON(w io.Writer, rep benchReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeTable prints the report for people: a throughput table and a latency table, each figure
// with its ceilings (the baselines) beside it when --baseline ran.
func writeTable(w io.Writer, rep benchReport) error {
	m := rep.Machine
	cpu := ""
	if m.CPUModel != "" {
		cpu = " (" + m.CPUModel + ")"
	}
	fmt.Fprintf(w, "marvelo bench: %d CPUs%s, %s/%s, %s, GOMAXPROCS %d\n", m.CPUs, cpu, m.OS, m.Arch, m.Go, m.GOMAXPROCS)
	s := rep.Settings
	if rep.Broker == "embedded" {
		store := rep.Store
		if store == "" {
			store = "JetStream in memory"
		}
		pipes := "bytes pipes"
		if s.Codec != "" && s.Codec != "bytes" {
			pipes = s.Codec + " pipes, one integer per block"
		}
		fmt.Fprintf(w, "broker: embedded (%s) with one worker, all in this process; %s\n", store, pipes)
	} else {
		fmt.Fprintf(w, "broker: %s (builtin jobs only: counter → forward/sum → discard, cbor integers; wall time from submit to finished)\n", rep.Broker)
	}
	if rep.Broker == "embedded" && len(s.Rates) > 0 {
		fmt.Fprintf(w, "throughput: %d blocks per source, median of %d runs; latency: receive − send time per block, %.1f s per rate\n", s.Count, s.Runs, s.Duration)
	} else {
		fmt.Fprintf(w, "throughput: %d blocks per source, median of %d runs\n", s.Count, s.Runs)
	}
	if s.Baseline {
		fmt.Fprintf(w, "ceilings, same run: the same topology as plain nats.go relays — core = core NATS; js = JetStream, one message\n")
		fmt.Fprintf(w, "per block, async publish, ack after stored (throughput runs with at most %d blocks); × = marvelo / ceiling\n", s.JSCount)
		fmt.Fprintf(w, "(of blocks/s, the same as of MB/s: same block size); the CPU s/M columns are each program's own\n")
	}

	var tput, lat []benchRow
	for _, r := range rep.Results {
		if r.Rate == 0 {
			tput = append(tput, r)
		} else {
			lat = append(lat, r)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	// The bytes through the broker: a column where the bench reads the embedded server's varz.
	bytesCol := rep.Broker == "embedded"
	if len(tput) > 0 {
		fmt.Fprintln(tw)
		head := []string{"THROUGHPUT", "block", "blocks/s", "MB/s", "CPU s/M"}
		if s.Baseline {
			head = []string{"THROUGHPUT", "block", "blocks/s", "MB/s", "core", "js", "×core", "×js", "CPU s/M", "core", "js"}
		}
		if bytesCol {
			head = append(head, "broker B/block")
		}
		head = append(head, "peak RSS")
		fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
		for _, r := range tput {
			if r.Error != "" {
				fmt.Fprintln(tw, errorCells(r, len(head)))
				continue
			}
			core, js := r.Baseline[baselineCore], r.Baseline[baselineJetStream]
			cells := []string{r.Label, sizeLabel(r.Size), thousands(r.BlocksPerS), mbps(r.MBPerS)}
			if s.Baseline {
				cells = append(cells,
					baseField(core, func(f *benchFigures) string { return mbps(f.MBPerS) }),
					baseField(js, func(f *benchFigures) string { return mbps(f.MBPerS) }),
					ratioField(r.Ratio, baselineCore, func(x benchRatio) float64 { return x.BlocksPerS }),
					ratioField(r.Ratio, baselineJetStream, func(x benchRatio) float64 { return x.BlocksPerS }),
					cpuPerM(r.CPUSecPerM),
					baseField(core, func(f *benchFigures) string { return cpuPerM(f.CPUSecPerM) }),
					baseField(js, func(f *benchFigures) string { return cpuPerM(f.CPUSecPerM) }))
			} else {
				cells = append(cells, cpuPerM(r.CPUSecPerM))
			}
			if bytesCol {
				cells = append(cells, orDash(r.BrokerBytesPerBlock, thousands))
			}
			cells = append(cells, rss(r.PeakRSSMB))
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
	}
	if len(lat) > 0 {
		fmt.Fprintln(tw)
		if s.Baseline {
			fmt.Fprintln(tw, "LATENCY\tblock\trate/s\tp50 ms\tcore\tjs\tp99 ms\tcore\tjs\tp99.9 ms\tcore\tjs\tCPU s/M\tcore\tjs\t")
		} else {
			fmt.Fprintln(tw, "LATENCY\tblock\trate/s\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tCPU s/M\t")
		}
		cols := 8
		if s.Baseline {
			cols = 15
		}
		for _, r := range lat {
			if r.Error != "" {
				fmt.Fprintln(tw, errorCells(r, cols))
				continue
			}
			l := r.Latency
			core, js := r.Baseline[baselineCore], r.Baseline[baselineJetStream]
			lf := func(b *benchFigures, pick func(*benchLatency) float64) string {
				return baseField(b, func(f *benchFigures) string {
					if f.Latency == nil {
						return "-"
					}
					return ms(pick(f.Latency))
				})
			}
			p50 := func(l *benchLatency) float64 { return l.P50 }
			p99 := func(l *benchLatency) float64 { return l.P99 }
			p999 := func(l *benchLatency) float64 { return l.P999 }
			if s.Baseline {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Label, sizeLabel(r.Size), thousands(r.Rate),
					ms(l.P50), lf(core, p50), lf(js, p50), ms(l.P99), lf(core, p99), lf(js, p99), ms(l.P999), lf(core, p999), lf(js, p999),
					cpuPerM(r.CPUSecPerM), baseField(core, func(f *benchFigures) string { return cpuPerM(f.CPUSecPerM) }),
					baseField(js, func(f *benchFigures) string { return cpuPerM(f.CPUSecPerM) }))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Label, sizeLabel(r.Size), thousands(r.Rate), ms(l.P50), ms(l.P99), ms(l.P999), ms(l.Max), cpuPerM(r.CPUSecPerM))
			}
		}
	}
	writeChainTable(tw, rep.Chain) // chain.go
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	reported := map[string]bool{}
	for _, r := range rep.Results {
		label := r.Label
		if r.Scenario == scenarioChain && strings.HasPrefix(r.Error, "not available") {
			label = strings.Replace(label, ", "+r.Variant+")", ")", 1) // once for chained and spread
		}
		if r.Error != "" && !reported[label+r.Error] {
			reported[label+r.Error] = true // "not available" once per scenario
			if strings.HasPrefix(r.Error, "not available") {
				notes = append(notes, fmt.Sprintf("%s: %s", label, r.Error))
			} else {
				notes = append(notes, fmt.Sprintf("%s, %s%s: %s", r.Label, sizeLabel(r.Size), rateLabel(r.Rate), r.Error))
			}
		}
		if r.JobRSSMB > 0 || r.JobCPUSecPerM > 0 {
			what := "the Python job's own process"
			if r.Scenario == scenarioChain {
				what = "the Python jobs' own processes"
			}
			notes = append(notes, fmt.Sprintf("%s, %s%s: %s (not in the columns): %.1f CPU s per million blocks (start included), %.0f MB peak resident",
				r.Label, sizeLabel(r.Size), rateLabel(r.Rate), what, r.JobCPUSecPerM, r.JobRSSMB))
		}
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("%s, %s: %s", r.Label, sizeLabel(r.Size), n))
		}
		if total := r.Count * max(r.Sources, 1); r.LateBlocks > 0 && float64(r.LateBlocks) > 0.05*float64(total) {
			notes = append(notes, fmt.Sprintf("%s, %s at %s/s: the sources sent %d of %d blocks more than an interval late (the machine did not keep up)", r.Label, sizeLabel(r.Size), thousands(r.Rate), r.LateBlocks, total))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, "note:", n)
		}
	}
	if len(rep.Results) > 0 {
		fmt.Fprintln(w)
		for _, r := range rep.Results {
			if r.Scenario == scenarioFanin {
				fmt.Fprintln(w, "fanin: blocks are rounds (one block from each source, one into the sink)")
				break
			}
		}
		fmt.Fprintln(w, "CPU s/M: process CPU seconds (broker, NATS server, worker, bench) per million blocks, first sent to last received")
		if rep.Broker == "embedded" {
			fmt.Fprintln(w, "broker B/block: bytes into and out of the embedded NATS server (its varz; a cluster's servers summed), the whole run, per block into the sink")
			fmt.Fprintln(w, "peak RSS: the process's peak resident memory during the run")
		}
		if len(rep.Chain) > 0 {
			fmt.Fprintln(w, "chain: chained = the document as is (jobs on one worker may pass blocks in process); spread = every job \"spread\": true")
			for _, c := range rep.Chain {
				if c.Jobs == chainPython {
					fmt.Fprintf(w, "chain python: the same with %d Python jobs returning their input (the python scenario's) in place of the forwards\n", chainPythonJobs)
					break
				}
			}
		}
	}
	return nil
}

// errorCells is the table line of a row that has no figures: "failed" or "n/a" where the first
// figure goes, "-" in the other columns (the message is a note under the table).
func errorCells(r benchRow, cols int) string {
	cells := []string{r.Label, sizeLabel(r.Size)}
	if r.Rate > 0 {
		cells = append(cells, thousands(r.Rate))
	}
	status := "failed"
	if strings.HasPrefix(r.Error, "not available") {
		status = "n/a"
	}
	cells = append(cells, status)
	for len(cells) < cols {
		cells = append(cells, "-")
	}
	return strings.Join(cells, "\t") + "\t"
}

func rateLabel(rate float64) string {
	if rate == 0 {
		return ""
	}
	return " at " + thousands(rate) + "/s"
}

func baseField(f *benchFigures, format func(*benchFigures) string) string {
	if f == nil {
		return "-"
	}
	return format(f)
}

func ratioField(r map[string]benchRatio, kind string, pick func(benchRatio) float64) string {
	x, ok := r[kind]
	if !ok || pick(x) == 0 {
		return "-"
	}
	v := pick(x)
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// thousands formats a count with thousands separators.
func thousands(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "-"
	}
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// ms formats milliseconds with three significant digits.
func ms(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

func mbps(v float64) string {
	if v == 0 {
		return "-"
	}
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func cpuPerM(v float64) string {
	if v == 0 {
		return "-"
	}
	if v >= 10 {
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func rss(mb float64) string {
	if mb == 0 {
		return "-"
	}
	return strconv.FormatFloat(mb, 'f', 0, 64) + " MB"
}

func sizeLabel(size int) string {
	switch {
	case size == 0:
		return "int"
	case size >= 1024 && size%1024 == 0:
		return strconv.Itoa(size/1024) + " KiB"
	}
	return strconv.Itoa(size) + " B"
}
