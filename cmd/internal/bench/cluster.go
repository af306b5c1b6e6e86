package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/broker/freeport"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/worker"
)

// marvelo bench cluster: the cost of several head nodes. The same scenarios run, in one run, on
// the single embedded broker of every other bench, then on three embedded brokers forming one
// NATS cluster with clustered JetStream (in memory), with one and with three replicas of every
// pipe. The bench's own worker carries the bench job types and joins the cluster through the
// first broker's server, so every job runs in this process: the latency figures keep one clock.
// The pipes' stream leaders are wherever JetStream puts them, so blocks cross the routes.

// clusterSetup is one deployment the cluster bench measures.
type clusterSetup struct {
	label    string
	brokers  int
	replicas int
}

// clusterScenarios are what marvelo bench cluster runs when no scenario is named.
var clusterScenarios = []string{scenarioLinear, scenarioFanin}

var clusterSetups = []clusterSetup{
	{"1 broker", 1, 1},
	{"3 brokers, R1", 3, 1},
	{"3 brokers, R3", 3, 3},
}

// runClusterBench runs the scenarios on each setup and returns the rows, each label naming its
// setup, and the chain scenario's comparisons.
func runClusterBench(ctx context.Context, opts benchOptions, progress io.Writer) ([]benchRow, []chainComparison, int, error) {
	var rows []benchRow
	var chains []chainComparison
	failed := 0
	for _, s := range clusterSetups {
		fmt.Fprintf(progress, "bench cluster: %s\n", s.label)
		r := newRunner(opts, progress)
		var err error
		if s.brokers == 1 {
			err = r.startLocal(progress)
		} else {
			err = r.startCluster(s, progress)
		}
		if err != nil {
			r.close()
			return rows, chains, failed, fmt.Errorf("%s: %w", s.label, err)
		}
		got, err := r.run(ctx)
		r.close()
		chains = append(chains, compareChains(got, s.label)...)
		for i := range got {
			got[i].Label = s.label + " · " + got[i].Label
		}
		rows = append(rows, got...)
		failed += r.failed
		if err != nil {
			return rows, chains, failed, err
		}
	}
	return rows, chains, failed, nil
}

// startCluster starts s.brokers embedded brokers forming one cluster on loopback with
// s.replicas copies of everything, each with its monitoring endpoint, and the bench worker and
// client on the first one's server. r.close stops them.
func (r *benchRunner) startCluster(s clusterSetup, progress io.Writer) error {
	dir, err := os.MkdirTemp("", "marvelo-bench-*")
	if err != nil {
		return err
	}
	r.scriptDir = dir
	logger := r.logger(progress)
	cports, err := freeport.Loopback(s.brokers)
	if err != nil {
		return err
	}
	var routes []string
	for _, p := range cports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var urls []string
	for i := range cports {
		// Every route is named before the first server starts, so the cluster ports are picked
		// free in advance, below the kernel's ephemeral range: the client and monitoring ports
		// are the servers' own picks from that range, and outgoing route connections take their
		// local ports from it, so none of them can take a cluster port a later broker has still
		// to bind (a monitor did, once: "broker 3: nats server did not become ready").
		b, err := broker.Start(broker.Options{
			Listen: "127.0.0.1:-1", Memory: true, Logger: logger.With("broker", i+1),
			ServerName: fmt.Sprintf("bench%d", i+1), Cluster: fmt.Sprintf("127.0.0.1:%d", cports[i]),
			Routes: routes, Replicas: s.replicas, Monitor: anyLoopbackPort,
		})
		if err != nil {
			return fmt.Errorf("broker %d: %w", i+1, err)
		}
		r.closes = append(r.closes, b.Shutdown)
		r.monitors = append(r.monitors, b.MonitorURL())
		urls = append(urls, b.ClientURL())
	}
	connect := func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(urls[0], nats.Name(name), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", urls[0], err)
		}
		r.closes = append(r.closes, nc.Close)
		return nc, nil
	}
	cnc, err := connect("marvelo bench")
	if err != nil {
		return err
	}
	cl := client.New(cnc)
	// The cluster elects its control plane: wait until it answers.
	deadline := time.Now().Add(60 * time.Second)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cl.Workers(cctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the cluster's control plane did not answer within 60s: %w", err)
		}
		<-t.C
	}
	wnc, err := connect("marvelo bench worker")
	if err != nil {
		return err
	}
	w, err := worker.New(wnc, worker.Options{Name: "bench", Any: true, Local: true, SharedWorkDir: true,
		WorkDir: dir, Registry: benchRegistry(), Logger: logger})
	if err != nil {
		return err
	}
	// The worker stops first, then the connections and the brokers.
	if err := r.runWorker(w, 30*time.Second, "the cluster"); err != nil {
		return err
	}
	r.env = &local.Env{Client: cl, Worker: w}
	fmt.Fprintf(progress, "bench cluster: %d brokers up (%s), replicas %d\n", s.brokers, strings.Join(urls, ","), s.replicas)
	return nil
}

// benchClusterAction is Run for marvelo bench cluster.
func benchClusterAction(ctx context.Context, opts benchOptions, progress, out io.Writer) error {
	if opts.baseline {
		return cliutil.UsageError(errors.New("bench: --baseline does not apply to cluster (its ceilings are the single broker's rows)"))
	}
	rows, chains, failed, err := runClusterBench(ctx, opts, progress)
	if err != nil {
		return cliutil.Failure(fmt.Errorf("bench: %w", err))
	}
	preface := fmt.Sprintf("setups: %s; 3 brokers form one NATS cluster (clustered JetStream in memory) on loopback, the worker joins through the first\n", clusterSetupLabels())
	rep := newBenchReport(opts, "embedded", rows)
	rep.Chain = chains
	return emitReport(opts, out, rep, failed, preface)
}

func clusterSetupLabels() string {
	var ls []string
	for _, s := range clusterSetups {
		ls = append(ls, s.label)
	}
	return strings.Join(ls, ", ")
}
