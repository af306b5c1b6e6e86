// Package bench is the engine of `marvelo bench`: it runs standard pipelines (the scenarios)
// through exactly the machinery of marvelo run — an embedded broker and worker, or a real
// deployment — measures their throughput, latency and cost, with their ceilings (the same
// topologies as plain nats.go relays), and reports them as a table or as JSON. It also runs the
// failover scenario (real broker and worker processes) and the cluster and --sync comparisons.
//
// cmd/marvelo parses the command's flags into Options and calls Run.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/benchkit"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
)

// Options are the settings of a bench run: marvelo bench's flags, parsed. Run checks them.
type Options struct {
	// Scenarios are the names given: linear, fanin, exec, python, chain, all (every one of
	// these), failover (alone), and cluster (the scenarios on one embedded broker, then on three
	// forming one cluster); none names the default ones (linear, fanin, exec).
	Scenarios []string
	// Stages are the counts of forward jobs of linear, run in turn.
	Stages []int
	// Sizes are the block sizes in bytes.
	Sizes []int
	// Count is the blocks per source of each throughput run (0: no throughput runs).
	Count int
	// Runs is the repetitions of each throughput run; RunsSet says it was given (the failover
	// scenario runs 5 times otherwise).
	Runs    int
	RunsSet bool
	// Rates are the fixed rates of the latency runs in blocks/s per source (0 is none).
	Rates []float64
	// Duration is the length of each latency run.
	Duration time.Duration
	// Baseline also runs each topology as plain nats.go relays.
	Baseline bool
	// JSCount bounds the blocks per source of a JetStream baseline throughput run.
	JSCount int
	// Timeout is the longest time one run may take.
	Timeout time.Duration
	// Verbose logs the embedded broker and worker (or the failover processes) to Progress.
	Verbose bool
	// QoS and Codec are the pipes' qos and codec (bytes, or cbor or json carrying integers).
	QoS, Codec string
	// Syncs, when set, store JetStream on disk with each sync setting in turn.
	Syncs []time.Duration
	// Broker is the URL of a deployment to measure instead of an embedded broker; Connect
	// connects to it and returns the connection, the broker API's client, and the NATS options
	// (authentication, TLS) for the baseline relays run against it.
	Broker  string
	Connect func() (*nats.Conn, *client.Client, []nats.Option, error)
	// JSON prints the report as JSON instead of a table.
	JSON bool
	// CPUProfile, when set, is where a CPU profile of the whole bench is written.
	CPUProfile string
	// Out receives the report, Progress the progress lines (default: stdout and stderr).
	Out, Progress io.Writer
}

// benchOptions are the checked settings the runners work with.
type benchOptions struct {
	scenarios []string
	stages    int   // forward jobs of the linear scenario now running
	stageList []int // every count of --stages, run in turn
	sizes     []int
	count     int
	runs      int
	runsSet   bool
	rates     []float64
	duration  time.Duration
	baseline  bool
	jsCount   int
	timeout   time.Duration
	broker    string // a remote broker's URL; empty: the embedded one
	verbose   bool
	qos       string          // the pipes' qos: reliable (JetStream) or realtime (core NATS)
	codec     string          // the pipes' codec: bytes, or cbor or json carrying integers (size 0)
	cluster   bool            // marvelo bench cluster: one broker and three in a cluster (cluster.go)
	syncs     []time.Duration // --sync: JetStream on disk with each setting in turn (sync.go)
	json      bool
}

// check checks the settings and resolves the scenarios; its errors are bad usage.
func (o Options) check() (benchOptions, error) {
	b := benchOptions{
		count: o.Count, runs: o.Runs, runsSet: o.RunsSet, duration: o.Duration, baseline: o.Baseline,
		jsCount: o.JSCount, timeout: o.Timeout, broker: o.Broker, verbose: o.Verbose, qos: o.QoS,
		codec: o.Codec, syncs: o.Syncs, json: o.JSON,
	}
	if b.qos != pipeline.QoSReliable && b.qos != pipeline.QoSRealtime {
		return b, fmt.Errorf("bench: --qos %q is not one of %s, %s", b.qos, pipeline.QoSReliable, pipeline.QoSRealtime)
	}
	for _, name := range o.Scenarios {
		switch {
		case name == "cluster":
			b.cluster = true
		case name == "all":
			b.scenarios = append(b.scenarios, benchScenarios...)
		case slices.Contains(benchScenarios, name) || name == scenarioFailover:
			b.scenarios = append(b.scenarios, name)
		default:
			return b, fmt.Errorf("bench: unknown scenario %q (want %s)", name, strings.Join(benchScenarios, ", "))
		}
	}
	if len(b.scenarios) == 0 {
		b.scenarios = defaultScenarios
		if b.cluster {
			b.scenarios = clusterScenarios
		}
	}
	b.scenarios = uniq(b.scenarios)
	b.sizes = o.Sizes
	for _, s := range b.sizes {
		if s < benchkit.StampSize || s > 1<<20 {
			return b, fmt.Errorf("bench: block size %d: want 8 bytes to 1 MiB", s)
		}
	}
	switch b.codec {
	case "bytes":
	case "cbor", "json":
		if b.broker != "" {
			return b, fmt.Errorf("bench: --codec goes with the embedded broker (--broker runs cbor counters already)")
		}
		b.sizes = []int{0} // one integer per block: no size
	default:
		return b, fmt.Errorf("bench: --codec %q: want bytes, cbor or json", b.codec)
	}
	if len(o.Stages) == 0 {
		return b, errors.New("bench: --stages: want counts such as 1 or 1,3")
	}
	for _, st := range o.Stages {
		if st < 0 || st > 64 {
			return b, fmt.Errorf("bench: --stages %d: want 0 to 64", st)
		}
	}
	b.stageList = uniq(o.Stages)
	b.stages = b.stageList[0]
	for _, r := range o.Rates {
		switch {
		case r < 0 || r > 1e6:
			return b, fmt.Errorf("bench: rate %g: want 0 (none) or up to 1,000,000 blocks/s", r)
		case r > 0:
			b.rates = append(b.rates, r)
		}
	}
	switch {
	case b.count < 0:
		return b, fmt.Errorf("bench: --count %d is negative", b.count)
	case b.runs < 1:
		return b, fmt.Errorf("bench: --runs %d: want at least 1", b.runs)
	case b.duration <= 0:
		return b, fmt.Errorf("bench: --duration must be positive")
	case b.jsCount < 1:
		return b, fmt.Errorf("bench: --js-count %d: want at least 1", b.jsCount)
	case b.timeout <= 0:
		return b, fmt.Errorf("bench: --timeout must be positive")
	case b.count == 0 && len(b.rates) == 0:
		return b, fmt.Errorf("bench: --count 0 and --rate 0 leave nothing to measure")
	case b.cluster && slices.Contains(b.scenarios, scenarioFailover):
		return b, fmt.Errorf("bench: cluster runs linear, fanin, exec or chain, not failover")
	case b.cluster && b.broker != "":
		return b, fmt.Errorf("bench: cluster starts brokers of its own: leave --broker out")
	case b.broker != "" && b.count == 0:
		return b, fmt.Errorf("bench: --broker measures throughput only: --count must be positive")
	case b.broker != "" && slices.Contains(b.scenarios, scenarioChain):
		return b, fmt.Errorf("bench: %s measures chaining on the one embedded worker: leave --broker out", scenarioChain)
	}
	return b, checkBenchSync(b)
}

func uniq[T comparable](xs []T) []T {
	var out []T
	for _, x := range xs {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// Run runs the bench o asks for and prints its report to o.Out. Bad settings are usage errors
// (cliutil.UsageError), a run that failed or could not start a failure (cliutil.Failure); ctx
// ends the bench (an interrupt).
func Run(ctx context.Context, o Options) error {
	opts, err := o.check()
	if err != nil {
		return cliutil.UsageError(err)
	}
	progress, out := o.Progress, o.Out
	if progress == nil {
		progress = os.Stderr
	}
	if out == nil {
		out = os.Stdout
	}
	if slices.Contains(opts.scenarios, scenarioFailover) {
		return benchFailover(ctx, opts, progress, out) // failover.go
	}
	if opts.cluster {
		return benchClusterAction(ctx, opts, progress, out) // cluster.go
	}
	if len(opts.syncs) > 0 {
		return benchSyncAction(ctx, opts, progress, out) // sync.go
	}
	r := newRunner(opts, progress)
	defer r.close()
	brokerName := "embedded"
	if opts.broker != "" {
		if o.Connect == nil {
			return cliutil.UsageError(errors.New("bench: --broker: no way to connect to it"))
		}
		nc, cl, natsOpts, err := o.Connect()
		if err != nil {
			return err
		}
		defer nc.Close()
		r.remote, brokerName = cl, opts.broker
		r.baseURL = opts.broker
		r.baseOpts = append(r.baseOpts, natsOpts...)
	} else {
		if err := r.startLocal(progress); err != nil { // embedded.go
			return cliutil.Failure(err)
		}
		if opts.baseline {
			srv, err := benchkit.StartServer()
			if err != nil {
				return cliutil.Failure(err)
			}
			defer srv.Shutdown()
			r.baseURL = srv.URL()
		}
	}
	if path := o.CPUProfile; path != "" {
		f, err := os.Create(path)
		if err != nil {
			return cliutil.UsageError(fmt.Errorf("bench: --cpuprofile: %w", err))
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return cliutil.Failure(err)
		}
		defer pprof.StopCPUProfile()
	}
	rows, err := r.run(ctx)
	if err != nil {
		return cliutil.Failure(fmt.Errorf("bench: %w", err))
	}
	rep := newBenchReport(opts, brokerName, rows)
	rep.Chain = compareChains(rows, "")
	return emitReport(opts, out, rep, r.failed, "")
}

// newBenchReport is the report of a run: the machine, the broker, the rows and the settings.
func newBenchReport(opts benchOptions, brokerName string, rows []benchRow) benchReport {
	rep := benchReport{
		Machine: machine(), Broker: brokerName, Results: rows,
		Settings: benchSettings{
			Count: opts.count, Runs: opts.runs, Stages: opts.stages, StageList: opts.stageList, Sizes: opts.sizes, Rates: opts.rates,
			Codec: opts.codec, Duration: opts.duration.Seconds(), Baseline: opts.baseline,
		},
	}
	if rep.Settings.Rates == nil {
		rep.Settings.Rates = []float64{}
	}
	if opts.baseline {
		rep.Settings.JSCount = opts.jsCount
	}
	return rep
}

// emitReport prints the report as JSON (--json) or as a table after preface, and fails the
// command when runs failed.
func emitReport(opts benchOptions, out io.Writer, rep benchReport, failed int, preface string) error {
	var err error
	if opts.json {
		err = writeJSON(out, rep)
	} else {
		fmt.Fprint(out, preface)
		err = writeTable(out, rep)
	}
	if err != nil {
		return cliutil.Failure(err)
	}
	if failed > 0 {
		return cliutil.Failure(fmt.Errorf("bench: %d of %d runs failed (see the table)", failed, len(rep.Results)))
	}
	return nil
}
