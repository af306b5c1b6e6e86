package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/client"
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
// setup.
func runClusterBench(ctx context.Context, opts benchOptions, progress io.Writer) ([]benchRow, int, error) {
	var rows []benchRow
	failed := 0
	for _, s := range clusterSetups {
		fmt.Fprintf(progress, "bench cluster: %s\n", s.label)
		r := &benchRunner{opts: opts, progress: progress, runID: newRunID(), baseCache: map[baseKey]*benchFigures{}}
		var stop func()
		var err error
		if s.brokers == 1 {
			err = r.startLocal(progress)
		} else {
			stop, err = r.startCluster(s, progress)
		}
		if err != nil {
			r.close()
			return rows, failed, fmt.Errorf("%s: %w", s.label, err)
		}
		got, err := r.run(ctx)
		if stop != nil {
			stop()
		}
		r.close()
		for i := range got {
			got[i].Label = s.label + " · " + got[i].Label
		}
		rows = append(rows, got...)
		failed += r.failed
		if err != nil {
			return rows, failed, err
		}
	}
	return rows, failed, nil
}

// startCluster starts s.brokers embedded brokers forming one cluster on loopback with
// s.replicas copies of everything, and the bench worker and client on the first one's server.
// stop shuts them down.
func (r *benchRunner) startCluster(s clusterSetup, progress io.Writer) (func(), error) {
	dir, err := os.MkdirTemp("", "marvelo-bench-*")
	if err != nil {
		return nil, err
	}
	r.scriptDir = dir
	logger := slog.New(slog.DiscardHandler)
	if r.opts.verbose {
		logger = slog.New(slog.NewTextHandler(progress, nil))
	}
	var routes []string
	cports := make([]int, s.brokers)
	for i := range cports {
		if cports[i], err = freeLoopbackPort(); err != nil {
			return nil, err
		}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cports[i]))
	}
	var closes []func()
	stop := func() {
		for i := len(closes) - 1; i >= 0; i-- {
			closes[i]()
		}
	}
	var urls []string
	for i := range cports {
		b, err := broker.Start(broker.Options{
			Listen: "127.0.0.1:-1", Memory: true, Logger: logger.With("broker", i+1),
			ServerName: fmt.Sprintf("bench%d", i+1), Cluster: fmt.Sprintf("127.0.0.1:%d", cports[i]),
			Routes: routes, Replicas: s.replicas,
		})
		if err != nil {
			stop()
			return nil, fmt.Errorf("broker %d: %w", i+1, err)
		}
		closes = append(closes, b.Shutdown)
		urls = append(urls, b.ClientURL())
	}
	connect := func(name string) (*nats.Conn, error) {
		nc, err := nats.Connect(urls[0], nats.Name(name), nats.MaxReconnects(-1))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", urls[0], err)
		}
		closes = append(closes, nc.Close)
		return nc, nil
	}
	cnc, err := connect("marvelo bench")
	if err != nil {
		stop()
		return nil, err
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
			stop()
			return nil, fmt.Errorf("the cluster's control plane did not answer within 60s: %w", err)
		}
		<-t.C
	}
	wnc, err := connect("marvelo bench worker")
	if err != nil {
		stop()
		return nil, err
	}
	w, err := worker.New(wnc, worker.Options{Name: "bench", Any: true, Local: true, SharedWorkDir: true,
		WorkDir: dir, Registry: benchRegistry(), Logger: logger})
	if err != nil {
		stop()
		return nil, err
	}
	wctx, wstop := context.WithCancel(context.Background())
	werr := make(chan error, 1)
	go func() { werr <- w.Run(wctx) }()
	// The worker stops first, then the connections and the brokers.
	closes = append(closes, func() { wstop(); <-werr })
	select {
	case <-w.Ready():
	case err := <-werr:
		werr <- err
		stop()
		return nil, fmt.Errorf("worker: %w", err)
	case <-time.After(30 * time.Second):
		stop()
		return nil, errors.New("the bench worker did not register with the cluster within 30s")
	}
	r.env = &local.Env{Client: cl, Worker: w}
	fmt.Fprintf(progress, "bench cluster: %d brokers up (%s), replicas %d\n", s.brokers, strings.Join(urls, ","), s.replicas)
	return stop, nil
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// benchClusterAction is benchAction for marvelo bench cluster.
func benchClusterAction(ctx context.Context, c *cli.Context, opts benchOptions, progress, out io.Writer) error {
	if opts.baseline {
		return cliutil.UsageError(errors.New("bench: --baseline does not apply to cluster (its ceilings are the single broker's rows)"))
	}
	rows, failed, err := runClusterBench(ctx, opts, progress)
	if err != nil {
		return cliutil.Failure(fmt.Errorf("bench: %w", err))
	}
	preface := fmt.Sprintf("setups: %s; 3 brokers form one NATS cluster (clustered JetStream in memory) on loopback, the worker joins through the first\n", clusterSetupLabels())
	return emitReport(c, out, newBenchReport(opts, "embedded", rows), failed, preface)
}

func clusterSetupLabels() string {
	var ls []string
	for _, s := range clusterSetups {
		ls = append(ls, s.label)
	}
	return strings.Join(ls, ", ")
}
