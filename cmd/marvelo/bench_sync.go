package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
)

// marvelo bench --sync always,2m: the cost of durability. The scenarios run, in one run, once per
// setting of --sync, each time on an embedded broker that stores JetStream on disk in a fresh
// temporary directory (under $TMPDIR) with that setting — exactly what marvelo-broker --store DIR
// --sync does — instead of in memory. The worker and the bench job types are those of every
// other bench, so the figures compare with the in-memory ones of plain marvelo bench.

// benchSyncFlag is marvelo bench's --sync.
var benchSyncFlag = &cli.StringFlag{Name: "sync", Usage: "store JetStream on disk (a temporary directory under $TMPDIR) with this marvelo-broker --sync: always or a DURATION such as 2m; a list such as always,2m runs each in turn, in one run (default: in memory)"}

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

// checkBenchSync refuses what --sync cannot go with.
func checkBenchSync(o benchOptions) error {
	switch {
	case len(o.syncs) == 0:
		return nil
	case o.broker != "":
		return errors.New("bench: --sync sets the embedded broker's store; a --broker keeps its own")
	case o.cluster:
		return errors.New("bench: cluster runs in memory; leave --sync out")
	case slices.Contains(o.scenarios, scenarioFailover):
		return errors.New("bench: failover runs marvelo-broker processes of its own; leave --sync out")
	case o.baseline:
		return errors.New("bench: --baseline's ceilings run in memory; leave it out with --sync (compare with a plain marvelo bench run)")
	}
	return nil
}

// benchSyncAction is benchAction for --sync.
func benchSyncAction(ctx context.Context, c *cli.Context, opts benchOptions, progress, out io.Writer) error {
	var rows []benchRow
	failed := 0
	var names []string
	for _, interval := range opts.syncs {
		name := "sync " + broker.SyncName(interval)
		names = append(names, name)
		fmt.Fprintf(progress, "bench: JetStream on disk, %s\n", name)
		r := &benchRunner{opts: opts, progress: progress, runID: newRunID(), baseCache: map[baseKey]*benchFigures{}}
		stop, err := r.startStored(interval, progress)
		if err != nil {
			r.close()
			return cliutil.Failure(fmt.Errorf("bench: %s: %w", name, err))
		}
		got, err := r.run(ctx)
		stop()
		r.close()
		for i := range got {
			got[i].Label = name + " · " + got[i].Label
		}
		rows = append(rows, got...)
		failed += r.failed
		if err != nil {
			return cliutil.Failure(fmt.Errorf("bench: %w", err))
		}
	}
	rep := newBenchReport(opts, "embedded", rows)
	rep.Store = "JetStream on disk in a temporary directory under " + os.TempDir() + ", " + strings.Join(names, ", then ")
	return emitReport(c, out, rep, failed, "")
}

// startStored starts an embedded broker storing JetStream on disk with the sync interval (0:
// always), in a temporary directory of its own, and the bench worker; stop shuts them down and
// removes the store.
func (r *benchRunner) startStored(interval time.Duration, progress io.Writer) (func(), error) {
	dir, err := os.MkdirTemp("", "marvelo-bench-*")
	if err != nil {
		return nil, err
	}
	r.scriptDir = dir
	logger := slog.New(slog.DiscardHandler)
	if r.opts.verbose {
		logger = slog.New(slog.NewTextHandler(progress, nil))
	}
	env, err := local.Start(local.Options{WorkDir: dir, Registry: benchRegistry(), Logger: logger,
		Stored: true, SyncInterval: interval}) // a temporary store of its own
	if err != nil {
		return nil, err
	}
	r.env = env
	return env.Close, nil
}
