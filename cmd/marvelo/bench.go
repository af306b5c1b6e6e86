package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/bench"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

// marvelo bench: the command's flags, parsed into bench.Options; the engine (scenarios, runs,
// figures, reports) is cmd/internal/bench.

func benchCommand() *cli.Command {
	return &cli.Command{
		Name:      "bench",
		Usage:     "measure throughput, latency and cost of standard pipelines, with their ceilings",
		ArgsUsage: "[linear] [fanin] [exec] [python] [chain] | failover | cluster [linear] [fanin]",
		Description: `Runs standard pipelines through exactly the machinery of marvelo run (embedded NATS with
JetStream in memory, the broker, one worker, real NATS connections; pipes are bytes pipes of
--size bytes) and prints a table for people, or JSON with --json.

Scenarios (linear, fanin and exec when none is named; jobs spread: every hop through the broker,
compare with chain):
   linear   a source → --stages forward jobs → a sink (once per count of a list such as --stages 1,3)
   fanin    3 sources → a join job (one block per round of its 3 inputs) → a sink; figures are rounds
   exec     a source → a cat-like executable job (a shell script the bench writes, bytes pipes) → a
            sink; reported as "not available: <why>" where it cannot run (no executable jobs in the
            worker, no sh or cat) instead of failing the bench
   python   (only when named) a source → a Python job whose run returns its input (the worker's
            Python runner, bytes pipes) → a sink; compare it with linear (1 forward) in one run:
            marvelo bench linear python --sizes 64,4096 --baseline
   chain    (only when named) a source → 3 forward jobs → a sink on the one embedded worker, run
            twice at each size and rate: chained (the document as is: jobs joined by a pipe whose
            two ends are on one worker pass blocks in process) and spread ("spread": true on every
            job, as in the other scenarios); a CHAIN table shows blocks/s, p50 at 1,000 blocks/s
            (when --rate has it), CPU s/M and broker B/block of each, and chained / spread; then
            the same with 2 Python jobs (python's pass-through job) in place of the forwards, in a
            CHAIN python section ("not available: <why>" without an interpreter):
            marvelo bench chain --sizes 64,4096 --baseline
   failover (only when named, and alone) real processes: marvelo-broker and marvelo-worker found
            beside marvelo (or on PATH); counter → forward → csv_sink with the forward on a worker
            that gets SIGKILL, then SIGSTOP, mid-stream; reports the time from the signal to the
            moved forward's first block, the median of --runs (default 5 here), and checks every
            block reached the sink exactly once. Uses --runs, --timeout, --json and --verbose.

Each scenario runs, for each block size:
   as fast as possible (--count blocks per source, --runs times, the median run reported):
      blocks/s, MB/s of payload into the sink, process CPU seconds per million blocks (broker,
      NATS server, worker and bench together: getrusage at the first block sent and at the last
      one received), the bytes through the broker per block (broker B/block: in_bytes +
      out_bytes of the embedded NATS server's varz, before and after the run, over the blocks
      into the sink), and the peak RSS of the process during the run
   at each fixed rate of --rate (for --duration): latency p50, p99, p99.9 and max, and CPU per
      million blocks — the sources stamp every block with its send time (one process clock: every
      job runs in this process) and the sink records receive − send time per block
Every run starts with one warm-up block that must reach the sink before the clock starts, so the
pipeline's start (consumers binding, an executable starting) counts in no figure but broker B/block
(the whole run's bytes). Sources are paced by a kernel timer (timerfd on Linux); a note says when
they fell behind their rate.

--baseline also runs each topology as plain nats.go programs (publisher → relays → subscriber) on an
embedded NATS server of their own, in the same run, with the same block size, count and rate: over
core NATS (nothing stored), and over JetStream with one message per block (memory streams, async
publish, acknowledged once stored; at most --js-count blocks per throughput run, it is much slower).
Every figure then comes with its ceilings and the ratio marvelo / ceiling.

cluster (marvelo bench cluster [SCENARIO...], default linear and fanin) runs the scenarios, in one
run, on the single embedded broker, then on three embedded brokers forming one NATS cluster with
clustered JetStream in memory, with 1 and with 3 replicas of every pipe: the cost of several head
nodes. The bench's worker joins the cluster through the first broker with the bench job types, so
every figure, latency too, is measured as for the single broker. --baseline does not apply to it.

--sync always|DURATION stores JetStream on disk, in a temporary directory under $TMPDIR, with that
marvelo-broker --sync setting instead of in memory: the cost of durability. A list such as
--sync always,2m runs every scenario once per setting, in one run, its rows labelled with it.
Not with cluster, --broker or --baseline.

--broker URL measures a real deployment instead: the bench-only job types (stamping sources, the
join, the recording sink) are not carried by remote workers, so only builtin jobs run (counter →
forward → discard, 3 counters → sum → discard, counter → sh/cat → discard, cbor integers), the
time is the wall time from submit to finished (scheduling included), and there is no latency or CPU
figure; --baseline then runs the relays against that server (8 B messages, JetStream streams named
BENCHKIT_*, deleted afterwards).

Flags may stand before or after the scenario names. The default run takes about 25 s on a 2-core
machine, a minute with --baseline; --quick runs a few thousand blocks per figure (for tests and
smoke checks). A run that fails shows as "failed: <why>" in its row, the other runs go on, and
the bench exits 1. Exit codes: 0 done, 1 a run failed, 2 bad usage.

Examples:
   marvelo bench                                   # all scenarios, 64 B, 1,000 and 10,000 blocks/s
   marvelo bench --baseline                        # the same, every figure with its ceilings
   marvelo bench linear --stages 2 --sizes 8,64,1024,16384 --rate 0
   marvelo bench linear --baseline --stages 1,3 --sizes 64,1024,4096,16384,65536 --rate 1000
   marvelo bench linear --size 64 --rate 0 --runs 1 --cpuprofile cpu.out && go tool pprof -top cpu.out
   marvelo bench fanin --rate 1000,2000,5000 --duration 5s --json > fanin.json
   marvelo bench --quick --json
   marvelo bench failover --runs 5                # kill -9 and SIGSTOP of a forward's worker
   marvelo bench cluster --count 200000 --rate 1000       # 1 broker vs 3 brokers R1 and R3
   marvelo bench linear --sync always,2m --sizes 64,65536 --rate 1000   # synced vs lazy disk store
   marvelo bench linear python --codec cbor --rate 0                     # integers through a Python job
   marvelo bench chain --sizes 64,4096 --baseline                        # chained vs spread jobs
   marvelo bench linear fanin --broker nats://head:4222 --auth-token T --count 200000`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "qos", Value: "reliable", Usage: "the pipes' qos: reliable (JetStream, bounded, survives failover) or realtime (core NATS, nothing stored; a receiver that falls behind drops the oldest)"},
			&cli.StringFlag{Name: "stages", Value: "1", Usage: "forward jobs between the source and the sink of linear (0: source → sink); a list such as 1,3 runs linear once per count"},
			&cli.IntFlag{Name: "size", Value: 64, Usage: "block size in bytes (at least 8: the send time travels in the first 8 bytes)"},
			&cli.StringFlag{Name: "sizes", Usage: "a sweep of block sizes, e.g. 8,64,1024,16384 (instead of --size)"},
			&cli.IntFlag{Name: "count", Value: 1_000_000, Usage: "blocks per source in each throughput run (0: no throughput runs)"},
			&cli.IntFlag{Name: "runs", Value: 3, Usage: "repetitions of each throughput run; the median is reported"},
			&cli.StringFlag{Name: "rate", Value: "1000,10000", Usage: "fixed rates in blocks/s per source for the latency runs, comma-separated (0: no latency runs)"},
			&cli.DurationFlag{Name: "duration", Value: 2 * time.Second, Usage: "length of each latency run (at least 100 blocks)"},
			&cli.BoolFlag{Name: "baseline", Usage: "also run each topology as plain nats.go relays (core NATS and JetStream) and print marvelo / ceiling"},
			&cli.IntFlag{Name: "js-count", Value: 50_000, Usage: "at most this many blocks per source in a JetStream baseline throughput run"},
			&cli.BoolFlag{Name: "quick", Usage: "a short run: --count 20000 --runs 1 --duration 200ms --js-count 2000 unless given"},
			&cli.BoolFlag{Name: "json", Usage: "print the results as JSON"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of the whole bench to this file (go tool pprof)"},
			&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "longest time one run may take"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log the embedded broker and worker to stderr"},
			&cli.StringFlag{Name: "broker", EnvVars: []string{"MARVELO_BROKER"}, Usage: "measure the deployment behind this broker URL instead of an embedded one (builtin jobs only)"},
			&cli.StringFlag{Name: "auth-token", EnvVars: []string{"MARVELO_AUTH_TOKEN"}, Usage: "token the broker of --broker requires"},
			&cli.StringFlag{Name: "creds", EnvVars: []string{"MARVELO_CREDS"}, Usage: "operator credentials for --broker, instead of --auth-token"},
			&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate to verify the TLS certificate of --broker"},
			&cli.StringFlag{Name: "sync", Usage: "store JetStream on disk (a temporary directory under $TMPDIR) with this marvelo-broker --sync: always or a DURATION such as 2m; a list such as always,2m runs each in turn, in one run (default: in memory)"},
			&cli.StringFlag{Name: "codec", Value: "bytes", Usage: "the pipes' codec: bytes (blocks of --size bytes), or cbor or json carrying one integer per block (the send time when paced; rows labelled int)"},
		},
		Action: benchAction,
	}
}

// benchOptionsFrom reads the flags and arguments into the bench's options (bench.Run checks
// them).
func benchOptionsFrom(c *cli.Context) (bench.Options, error) {
	o := bench.Options{
		Count: c.Int("count"), Runs: c.Int("runs"), RunsSet: c.IsSet("runs"), Duration: c.Duration("duration"),
		Baseline: c.Bool("baseline"), JSCount: c.Int("js-count"), Timeout: c.Duration("timeout"),
		Broker: c.String("broker"), Verbose: c.Bool("verbose"), QoS: c.String("qos"), Codec: c.String("codec"),
		JSON: c.Bool("json"), CPUProfile: c.String("cpuprofile"), Out: c.App.Writer, Progress: c.App.ErrWriter,
	}
	if c.Bool("quick") {
		if !c.IsSet("count") {
			o.Count = 20_000
		}
		if !c.IsSet("runs") {
			o.Runs = 1
		}
		if !c.IsSet("duration") {
			o.Duration = 200 * time.Millisecond
		}
		if !c.IsSet("js-count") {
			o.JSCount = 2_000
		}
	}
	var err error
	if o.Syncs, err = parseBenchSync(c); err != nil {
		return o, err
	}
	for _, a := range c.Args().Slice() {
		o.Scenarios = append(o.Scenarios, strings.Split(a, ",")...)
	}
	if c.IsSet("sizes") && c.IsSet("size") {
		return o, fmt.Errorf("bench: give --size or --sizes, not both")
	}
	o.Sizes = []int{c.Int("size")}
	if c.IsSet("sizes") {
		if o.Sizes, err = parseList(c.String("sizes"), strconv.Atoi); err != nil {
			return o, fmt.Errorf("bench: --sizes: %w", err)
		}
	}
	o.Stages, err = parseList(c.String("stages"), strconv.Atoi)
	if err != nil || len(o.Stages) == 0 {
		return o, fmt.Errorf("bench: --stages %q: want counts such as 1 or 1,3", c.String("stages"))
	}
	if o.Rates, err = parseList(c.String("rate"), func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }); err != nil {
		return o, fmt.Errorf("bench: --rate: %w", err)
	}
	if o.Broker != "" {
		o.Connect = func() (*nats.Conn, *client.Client, []nats.Option, error) {
			nc, cl, err := connect(c)
			if err != nil {
				return nil, nil, nil, err
			}
			opts, err := cliutil.AuthOptions(c)
			if err != nil {
				nc.Close()
				return nil, nil, nil, err
			}
			if ca := c.String("tls-ca"); ca != "" {
				opts = append(opts, nats.RootCAs(ca))
			}
			return nc, cl, opts, nil
		}
	}
	return o, nil
}

func parseList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		if f == "" {
			continue
		}
		v, err := parse(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseBenchSync reads --sync: the settings to run, in order; none keeps JetStream in memory.
func parseBenchSync(c *cli.Context) ([]time.Duration, error) {
	if !c.IsSet("sync") {
		return nil, nil
	}
	var out []time.Duration
	for _, s := range strings.Split(c.String("sync"), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		d, err := broker.ParseSync(s)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bench: --sync %q: want always, a duration, or a list such as always,2m", c.String("sync"))
	}
	return out, nil
}

func benchAction(c *cli.Context) error {
	opts, err := benchOptionsFrom(c)
	if err != nil {
		return cliutil.UsageError(err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return bench.Run(ctx, opts)
}
