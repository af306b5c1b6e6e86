package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/benchkit"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// The scenarios of marvelo bench.
const (
	scenarioLinear = "linear" // source → stages × forward → sink
	scenarioFanin  = "fanin"  // 3 sources → join → sink
	scenarioExec   = "exec"   // source → a cat-like executable job → sink
	scenarioPython = "python" // source → a Python job returning its input (the runner) → sink
	scenarioChain  = "chain"  // source → 3 × forward → sink, then source → 2 Python jobs → sink, chained and spread (chain.go)
)

// benchScenarios are the scenarios a run may name; defaultScenarios run when none is named.
var (
	benchScenarios   = []string{scenarioLinear, scenarioFanin, scenarioExec, scenarioPython, scenarioChain}
	defaultScenarios = []string{scenarioLinear, scenarioFanin, scenarioExec}
)

// fanInSources is the number of sources of the fanin scenario.
const fanInSources = 3

// Baseline kinds: the same topology as plain nats.go programs.
const (
	baselineCore      = "core"      // core NATS relays
	baselineJetStream = "jetstream" // JetStream relays, one message per block
)

// benchRunner runs the scenarios and their baselines and collects the rows.
type benchRunner struct {
	opts     benchOptions
	progress io.Writer

	env    *local.Env     // the embedded broker and worker (default)
	remote *client.Client // a remote broker (--broker)
	// monitors are the monitoring URLs of the embedded NATS servers (one, or a cluster's three):
	// their varz count the bytes through the broker.
	monitors []string
	closes   []func() // stop what the runner started (embedded.go, cluster.go), last first
	// variant is the chain scenario's run now measured: variantChained or variantSpread; chain
	// its pipeline: chainGo or chainPython.
	variant string
	chain   string

	baseURL  string // where the baseline relays run
	baseOpts []nats.Option

	// python checks, as the embedded worker does before it offers to run a Python job, that
	// there is an interpreter that can: a worker that cannot leaves the pipeline pending.
	python pyjob.Runtime

	failed     int    // rows that failed
	scriptDir  string // the bench's temporary folder: the jobs' working directory
	scriptPath string // the cat-like executable of the exec scenario
	seq        int
	runID      string
	baseCache  map[baseKey]*benchFigures
}

// baseKey identifies a baseline run: the exec scenario shares linear's with one stage.
type baseKey struct {
	kind        string
	topo        benchkit.Topology
	size, count int
	rate        float64
}

func newRunner(opts benchOptions, progress io.Writer) *benchRunner {
	return &benchRunner{opts: opts, progress: progress, runID: newRunID(), baseCache: map[baseKey]*benchFigures{}}
}

// topology is the shape of a scenario, as the baseline relays reproduce it.
func (r *benchRunner) topology(scenario string) benchkit.Topology {
	switch scenario {
	case scenarioFanin:
		return benchkit.Topology{Sources: fanInSources, Stages: 1}
	case scenarioExec, scenarioPython:
		return benchkit.Topology{Sources: 1, Stages: 1}
	case scenarioChain:
		return benchkit.Topology{Sources: 1, Stages: chainStages(r.chain)}
	}
	return benchkit.Topology{Sources: 1, Stages: r.opts.stages}
}

// label names a scenario's row.
func (r *benchRunner) label(scenario string) string {
	switch scenario {
	case scenarioLinear:
		if r.opts.stages == 1 {
			return "linear (1 forward)"
		}
		return fmt.Sprintf("linear (%d forwards)", r.opts.stages)
	case scenarioFanin:
		return fmt.Sprintf("fanin (%d → join)", fanInSources)
	case scenarioExec:
		return "exec (cat)"
	case scenarioPython:
		return "python (forward)"
	case scenarioChain:
		return chainName(r.chain, r.variant)
	}
	return scenario
}

// execScript is the cat-like executable job: it copies its one input to its one output, in the
// fifo mode (named pipes) and in the fd mode (inherited descriptors) alike.
const execScript = `in= out=
while [ $# -gt 0 ]; do
	case $1 in
	-i) in=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	*) shift ;;
	esac
done
case $in in *[!0-9]*) exec <"$in" ;; *) eval "exec <&$in" ;; esac
case $out in *[!0-9]*) exec >"$out" ;; *) eval "exec >&$out" ;; esac
exec cat
`

// execJob returns the exec part of the exec scenario's job: a script in the bench's temporary
// folder, or, on a remote broker whose workers cannot see that folder, the same script run by
// /bin/sh -c.
func (r *benchRunner) execJob() (*pipeline.Exec, error) {
	if r.remote != nil {
		return &pipeline.Exec{Path: "/bin/sh", Params: []string{"-c", execScript, "bench-cat"}}, nil
	}
	if r.scriptPath == "" {
		if r.scriptDir == "" {
			dir, err := os.MkdirTemp("", "marvelo-bench-*")
			if err != nil {
				return nil, err
			}
			r.scriptDir = dir
		}
		path := filepath.Join(r.scriptDir, "bench-cat.sh")
		content := "#!/bin/sh\n# marvelo bench: a cat-like executable job (copies -i IN to -o OUT)\n" + execScript
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			return nil, err
		}
		r.scriptPath = path
	}
	return &pipeline.Exec{Path: r.scriptPath}, nil
}

// pythonForward is the Python scenario's job module: a PythonJob returning its input.
const pythonForward = `from marvelo import PythonJob


class Forward(PythonJob):
    def run(self, block):
        return block
`

// pythonJob returns the python part of the python scenario's job (and of the python chain's):
// the module above, written to the bench's temporary folder and shipped as its dependencies.
func (r *benchRunner) pythonJob() (*pipeline.Python, error) {
	if r.scriptDir == "" {
		dir, err := os.MkdirTemp("", "marvelo-bench-*")
		if err != nil {
			return nil, err
		}
		r.scriptDir = dir
	}
	deps := filepath.Join(r.scriptDir, "python")
	if err := os.MkdirAll(deps, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(deps, "bench_forward.py"), []byte(pythonForward), 0o644); err != nil {
		return nil, err
	}
	return &pipeline.Python{Class: "bench_forward:Forward", Dependencies: deps}, nil
}

func (r *benchRunner) close() {
	for i := len(r.closes) - 1; i >= 0; i-- {
		r.closes[i]()
	}
	r.closes = nil
	if r.scriptDir != "" {
		os.RemoveAll(r.scriptDir)
	}
}

// document builds a scenario's pipeline: with the bench-only job types and bytes pipes of size
// bytes on the embedded broker, with builtin types only (counter, forward, sum, discard) and
// cbor pipes on a remote one. count is per source; rate 0 is as fast as possible. Every job is
// spread (every block goes through the broker on every pipe) but in the chain scenario's
// chained run. The chain scenario's python pipeline has chainPythonJobs Python jobs in place of
// the forwards.
func (r *benchRunner) document(name, scenario string, size, count int, rate float64, probe string) ([]byte, error) {
	p := pipeline.Pipeline{Name: name}
	builtinOnly := r.remote != nil
	source := func(id, out int) pipeline.Job {
		if builtinOnly {
			return pipeline.Job{ID: id, Type: "counter", Args: map[string]any{"count": count}, Outputs: []int{out}}
		}
		args := map[string]any{"size": max(size, benchkit.StampSize), "count": count, "probe": probe}
		if size == 0 {
			args["codec"] = r.opts.codec // integers, not bytes
		}
		if rate > 0 {
			args["rate"] = rate
		}
		return pipeline.Job{ID: id, Type: "bench_source", Args: args, Outputs: []int{out}}
	}
	sink := func(id, in int) pipeline.Job {
		if builtinOnly {
			return pipeline.Job{ID: id, Type: "discard", Inputs: []int{in}}
		}
		args := map[string]any{"probe": probe, "stamped": rate > 0}
		if size == 0 {
			args["codec"] = r.opts.codec
		}
		return pipeline.Job{ID: id, Type: "bench_sink", Args: args, Inputs: []int{in}}
	}
	var last int // the pipe into the sink
	switch scenario {
	case scenarioChain:
		if r.chain != chainPython {
			p.Jobs = append(p.Jobs, source(1, 1))
			for s := 1; s <= chainForwards; s++ {
				p.Jobs = append(p.Jobs, pipeline.Job{ID: s + 1, Type: "forward", Inputs: []int{s}, Outputs: []int{s + 1}})
			}
			last = chainForwards + 1
			break
		}
		py, err := r.pythonJob()
		if err != nil {
			return nil, err
		}
		p.Jobs = append(p.Jobs, source(1, 1))
		for s := 1; s <= chainPythonJobs; s++ {
			job := *py
			p.Jobs = append(p.Jobs, pipeline.Job{ID: s + 1, Python: &job, Inputs: []int{s}, Outputs: []int{s + 1}})
		}
		last = chainPythonJobs + 1
	case scenarioLinear:
		stages := r.opts.stages
		p.Jobs = append(p.Jobs, source(1, 1))
		for s := 1; s <= stages; s++ {
			p.Jobs = append(p.Jobs, pipeline.Job{ID: s + 1, Type: "forward", Inputs: []int{s}, Outputs: []int{s + 1}})
		}
		last = stages + 1
	case scenarioFanin:
		ins := make([]int, fanInSources)
		for i := range fanInSources {
			p.Jobs = append(p.Jobs, source(i+1, i+1))
			ins[i] = i + 1
		}
		join := "bench_join"
		if builtinOnly {
			join = "sum"
		}
		last = fanInSources + 1
		p.Jobs = append(p.Jobs, pipeline.Job{ID: last, Type: join, Inputs: ins, Outputs: []int{last}})
	case scenarioExec:
		ex, err := r.execJob()
		if err != nil {
			return nil, err
		}
		p.Jobs = append(p.Jobs, source(1, 1), pipeline.Job{ID: 2, Exec: ex, Inputs: []int{1}, Outputs: []int{2}})
		last = 2
	case scenarioPython:
		py, err := r.pythonJob()
		if err != nil {
			return nil, err
		}
		p.Jobs = append(p.Jobs, source(1, 1), pipeline.Job{ID: 2, Python: py, Inputs: []int{1}, Outputs: []int{2}})
		last = 2
	default:
		return nil, fmt.Errorf("unknown scenario %q", scenario)
	}
	p.Jobs = append(p.Jobs, sink(len(p.Jobs)+1, last))
	spread := scenario != scenarioChain || r.variant == variantSpread
	for i := range p.Jobs {
		p.Jobs[i].Spread = spread
	}
	for id := 1; id <= last; id++ {
		if builtinOnly {
			p.Pipes = append(p.Pipes, pipeline.Pipe{ID: id, Codec: "cbor", QoS: r.opts.qos})
		} else if size == 0 {
			p.Pipes = append(p.Pipes, pipeline.Pipe{ID: id, Codec: r.opts.codec, QoS: r.opts.qos})
		} else {
			p.Pipes = append(p.Pipes, pipeline.Pipe{ID: id, Codec: "bytes", BlockSize: size, QoS: r.opts.qos})
		}
	}
	return pipeline.EncodeCBOR(&p)
}

// runMarvelo runs a scenario once through marvelo and measures it.
func (r *benchRunner) runMarvelo(ctx context.Context, scenario string, size, count int, rate float64) (*benchFigures, error) {
	if r.remote == nil && (scenario == scenarioPython || scenario == scenarioChain && r.chain == chainPython) {
		// The embedded worker's own check (its interpreter: $MARVELO_PYTHON, then python3): a
		// worker that fails it does not take the job, and the run would wait for --timeout.
		if err := r.python.CanRun(ctx, &pipeline.Python{}); err != nil {
			return nil, err // "python interpreter …": not available
		}
	}
	probeID, pr := newProbe()
	defer dropProbe(probeID)
	r.seq++
	name := fmt.Sprintf("bench-%s-%s-%d", r.runID, scenario, r.seq)
	doc, err := r.document(name, scenario, size, count, rate, probeID)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, r.opts.timeout)
	defer cancel()
	before, err := r.brokerBytes(rctx) // embedded.go
	if err != nil {
		return nil, err
	}
	sample, err := benchkit.Measure(func() error {
		if r.remote != nil {
			return runRemote(rctx, r.remote, name, doc)
		}
		_, err := r.env.RunPipeline(rctx, name, doc, local.Options{})
		return err
	})
	if err != nil {
		if rctx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("no end after %s (--timeout): %w", r.opts.timeout, err)
		}
		return nil, err
	}
	rounds := int64(count)
	if r.remote != nil {
		// Only builtin jobs run remotely: the time is the wall time from submit to finished.
		f := newFigures(rounds, sample.Wall.Seconds(), 0, benchkit.Sample{Wall: sample.Wall})
		f.WallSeconds = sample.Wall.Seconds()
		return f, nil
	}
	select {
	case <-pr.done:
	case <-time.After(10 * time.Second):
		return nil, errors.New("the bench sink did not report within 10s of the pipeline's end")
	}
	after, err := r.brokerBytes(ctx)
	if err != nil {
		return nil, err
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	if pr.blocks != uint64(rounds)+1 { // and the warm-up round
		return nil, fmt.Errorf("the sink saw %d blocks, want %d (the warm-up and %d measured; more: dummies for blocks the pipeline numbered wrong or lost)", pr.blocks, rounds+1, rounds)
	}
	if pr.endCPU > pr.startCPU {
		sample.CPU = pr.endCPU - pr.startCPU // the measured blocks only
	}
	f := newFigures(rounds, float64(pr.end-pr.start)/1e9, size, sample)
	f.WallSeconds = sample.Wall.Seconds()
	if after > before && pr.blocks > 0 {
		// The whole run, the warm-up block and the pipeline's start and end included.
		f.BrokerBytesPerBlock = float64(after-before) / float64(pr.blocks)
	}
	if scenario == scenarioPython || scenario == scenarioChain && r.chain == chainPython {
		f.addJobProcess(sample, rounds)
	}
	if rate > 0 {
		f.Latency = newLatency(pr.hist)
		f.LateBlocks = pr.late
	}
	return f, nil
}

// benchPlaceWait is how long a remote pipeline may stay pending (no worker with a free slot)
// before the bench gives up on it.
const benchPlaceWait = 10 * time.Second

// runRemote submits doc to a remote broker and waits until the pipeline has ended. A pipeline
// that cannot be placed within benchPlaceWait is stopped, with the broker's reason.
func runRemote(ctx context.Context, cl *client.Client, name string, doc []byte) error {
	f, err := cl.Follow(name)
	if err != nil {
		return err
	}
	defer f.Close()
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var mu sync.Mutex
	var pending string
	var pendingAt time.Time
	onEvent := func(ev protocol.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Kind {
		case "pending":
			if pending == "" {
				pendingAt = time.Now()
			}
			pending = ev.Message
		case "placed", "started":
			pending = ""
		}
	}
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
				mu.Lock()
				if pending != "" && time.Since(pendingAt) > benchPlaceWait {
					cancel(fmt.Errorf("the pipeline could not be placed within %s: %s", benchPlaceWait, pending))
				}
				mu.Unlock()
			}
		}
	}()
	if _, err := cl.Submit(ctx, doc, ""); err != nil {
		return err
	}
	st, err := f.Wait(wctx, nil, onEvent)
	if err != nil {
		if wctx.Err() != nil {
			sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer scancel()
			_ = cl.Stop(sctx, name)
			if cause := context.Cause(wctx); ctx.Err() == nil && cause != nil {
				return cause
			}
		}
		return err
	}
	if st.State != protocol.StateFinished {
		if st.Error != "" {
			return fmt.Errorf("pipeline %s %s: %s", name, st.State, st.Error)
		}
		return fmt.Errorf("pipeline %s %s", name, st.State)
	}
	return nil
}

// runBaseline runs a scenario's topology once as plain nats.go relays.
func (r *benchRunner) runBaseline(ctx context.Context, kind string, topo benchkit.Topology, size, count int, rate float64) (*benchFigures, error) {
	// Integer rows (size 0) compare with relays of messages as large as a CBOR uint64.
	cfg := benchkit.RelayConfig{URL: r.baseURL, Options: r.baseOpts, Topology: topo, Size: max(size, benchkit.StampSize+1), Count: count, Rate: rate}
	run := benchkit.CoreRelays
	if kind == baselineJetStream {
		run = benchkit.JetStreamRelays
	}
	var res benchkit.RelayResult
	sample, err := benchkit.Measure(func() error {
		var err error
		res, err = run(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.CPU > 0 {
		sample.CPU = res.CPU // the measured messages only
	}
	f := newFigures(res.Rounds, res.Elapsed.Seconds(), size, sample)
	f.WallSeconds = sample.Wall.Seconds()
	if rate > 0 {
		f.Latency = newLatency(res.Latency)
		f.LateBlocks = res.Late
	}
	return f, nil
}

// median runs fn runs times and returns the run with the median blocks/s.
func (r *benchRunner) median(what string, runs int, fn func() (*benchFigures, error)) (*benchFigures, error) {
	var all []*benchFigures
	for i := range runs {
		f, err := fn()
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(r.progress, "  %s: run %d/%d: %s blocks/s\n", what, i+1, runs, thousands(f.BlocksPerS))
		all = append(all, f)
	}
	slices.SortFunc(all, func(a, b *benchFigures) int {
		switch {
		case a.BlocksPerS < b.BlocksPerS:
			return -1
		case a.BlocksPerS > b.BlocksPerS:
			return 1
		}
		return 0
	})
	return all[len(all)/2], nil
}

// throughput measures one scenario at one block size, as fast as it goes.
func (r *benchRunner) throughput(ctx context.Context, scenario string, size int) benchRow {
	row := r.newRow(scenario, size, 0, r.opts.count)
	fmt.Fprintf(r.progress, "%s, %s, as fast as possible: %s blocks per source\n", row.Label, sizeLabel(row.Size), thousands(float64(r.opts.count)))
	f, err := r.median("marvelo", r.opts.runs, func() (*benchFigures, error) {
		return r.runMarvelo(ctx, scenario, size, r.opts.count, 0)
	})
	if err != nil {
		row.Error = err.Error()
		return row
	}
	row.benchFigures = *f
	r.addBaselines(ctx, &row, scenario, size, 0)
	return row
}

// latency measures one scenario at one block size and a fixed rate.
func (r *benchRunner) latency(ctx context.Context, scenario string, size int, rate float64) benchRow {
	count := max(int(rate*r.opts.duration.Seconds()), 100)
	row := r.newRow(scenario, size, rate, count)
	fmt.Fprintf(r.progress, "%s, %s, %s blocks/s: %s blocks per source\n", row.Label, sizeLabel(row.Size), thousands(rate), thousands(float64(count)))
	f, err := r.runMarvelo(ctx, scenario, size, count, rate)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	row.benchFigures = *f
	fmt.Fprintf(r.progress, "  marvelo: p50 %s ms, p99 %s ms\n", ms(f.Latency.P50), ms(f.Latency.P99))
	r.addBaselines(ctx, &row, scenario, size, rate)
	return row
}

func (r *benchRunner) newRow(scenario string, size int, rate float64, count int) benchRow {
	topo := r.topology(scenario)
	row := benchRow{Scenario: scenario, Label: r.label(scenario), Sources: topo.Sources, Stages: topo.Stages, Size: size, Rate: rate, Count: count}
	if scenario == scenarioChain {
		row.Variant, row.Jobs = r.variant, r.chain
	}
	if r.remote != nil {
		row.Size = 0 // cbor integers from counter jobs
		row.Runs = r.opts.runs
	} else if rate == 0 {
		row.Runs = r.opts.runs
	} else {
		row.Runs = 1
	}
	return row
}

// addBaselines runs the row's topology as core NATS and JetStream relays, with the same block
// size, count and rate (the JetStream throughput run with at most --js-count blocks), and
// sets the ratios. A baseline that fails leaves a note; the row stays.
func (r *benchRunner) addBaselines(ctx context.Context, row *benchRow, scenario string, size int, rate float64) {
	if !r.opts.baseline {
		return
	}
	if r.remote != nil {
		size = 8 // the nearest to a small cbor integer that carries a stamp
	}
	topo := r.topology(scenario)
	for _, kind := range []string{baselineCore, baselineJetStream} {
		count := row.Count
		if kind == baselineJetStream && rate == 0 {
			count = min(count, r.opts.jsCount)
		}
		key := baseKey{kind: kind, topo: topo, size: size, count: count, rate: rate}
		f, ok := r.baseCache[key]
		if !ok {
			var err error
			f, err = r.median(kind+" baseline", row.Runs, func() (*benchFigures, error) {
				return r.runBaseline(ctx, kind, topo, size, count, rate)
			})
			if err != nil {
				row.Notes = append(row.Notes, fmt.Sprintf("%s baseline failed: %v", kind, err))
				continue
			}
			r.baseCache[key] = f
		}
		if row.Baseline == nil {
			row.Baseline = map[string]*benchFigures{}
			row.Ratio = map[string]benchRatio{}
		}
		row.Baseline[kind] = f
		row.Ratio[kind] = ratioOf(&row.benchFigures, f)
	}
}

// run runs every scenario, size and rate asked for. A failed run is recorded in its row and the
// bench goes on (r.failed counts them); the exec scenario is "not available" where the worker
// cannot run executable jobs, and its other rows are skipped. An interrupt ends the bench.
func (r *benchRunner) run(ctx context.Context) ([]benchRow, error) {
	var rows []benchRow
	type pass struct {
		scenario string
		stages   int
		chain    string // the chain scenario's pipeline
	}
	var passes []pass
	stageList := r.opts.stageList
	if len(stageList) == 0 {
		stageList = []int{r.opts.stages}
	}
	for _, sc := range r.opts.scenarios {
		switch sc {
		case scenarioLinear:
			for _, st := range stageList {
				passes = append(passes, pass{sc, st, ""})
			}
		case scenarioChain:
			for _, ch := range chainPipelines { // chain.go: the forwards, then the Python jobs
				passes = append(passes, pass{sc, stageList[0], ch})
			}
		default:
			passes = append(passes, pass{sc, stageList[0], ""})
		}
	}
	for _, ps := range passes {
		sc := ps.scenario
		r.opts.stages, r.chain = ps.stages, ps.chain
		variants := []string{""}
		if sc == scenarioChain {
			variants = chainVariants // chain.go: one after the other, at each size and rate
		}
		var unavailable string
		sizes := r.opts.sizes
		if r.remote != nil {
			sizes = sizes[:1] // counter jobs send cbor integers: the block size does not apply
		}
		measure := func(size int, rate float64) error {
			for _, v := range variants {
				r.variant = v
				count := r.opts.count
				if rate > 0 {
					count = 0 // latency sets it from the rate and --duration
				}
				row := r.newRow(sc, size, rate, count)
				switch {
				case unavailable != "":
					row.Error = unavailable
				case rate == 0:
					row = r.throughput(ctx, sc, size)
				default:
					row = r.latency(ctx, sc, size, rate)
				}
				if err := r.rowError(ctx, &row, &unavailable); err != nil {
					return err
				}
				rows = append(rows, row)
			}
			return nil
		}
		for _, size := range sizes {
			if r.opts.count > 0 {
				if err := measure(size, 0); err != nil {
					return rows, err
				}
			}
			if r.remote != nil {
				continue // no clock shared with remote jobs: no latency
			}
			for _, rate := range r.opts.rates {
				if err := measure(size, rate); err != nil {
					return rows, err
				}
			}
		}
	}
	r.variant, r.chain = "", ""
	return rows, nil
}

// rowError classifies a failed row: "not available" for an exec, python or python chain
// scenario the worker cannot run (the rest of the scenario, or of the pipeline, is skipped),
// "failed" otherwise (counted: the bench exits 1). An interrupt is returned.
func (r *benchRunner) rowError(ctx context.Context, row *benchRow, unavailable *string) error {
	if row.Error == "" || row.Error == *unavailable {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	jobs := row.Scenario == scenarioExec || row.Scenario == scenarioPython || row.Scenario == scenarioChain && row.Jobs == chainPython
	if jobs && execUnsupported(row.Error) {
		row.Error = "not available: " + row.Error
		*unavailable = row.Error
	} else {
		row.Error = "failed: " + row.Error
		r.failed++
	}
	fmt.Fprintf(r.progress, "  %s\n", row.Error)
	return nil
}

// execUnsupported reports whether an error of the exec scenario says that the worker (or the
// document format) does not know executable jobs, or that their adapter cannot start one here.
func execUnsupported(msg string) bool {
	for _, s := range []string{"not supported", "unknown key", "unknown field", "executable file not found", "no such file", "permission denied", "python interpreter"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func newRunID() string {
	id := nuid.Next()
	return id[len(id)-6:]
}
