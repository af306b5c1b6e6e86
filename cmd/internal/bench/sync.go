package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

// marvelo bench --sync always,2m: the cost of durability. The scenarios run, in one run, once per
// setting of --sync, each time on an embedded broker that stores JetStream on disk in a fresh
// temporary directory (under $TMPDIR) with that setting — exactly what marvelo-broker --store DIR
// --sync does — instead of in memory. The worker and the bench job types are those of every
// other bench, so the figures compare with the in-memory ones of plain marvelo bench.

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

// benchSyncAction is Run for --sync.
func benchSyncAction(ctx context.Context, opts benchOptions, progress, out io.Writer) error {
	var rows []benchRow
	var chains []chainComparison
	failed := 0
	var names []string
	for _, interval := range opts.syncs {
		name := "sync " + broker.SyncName(interval)
		names = append(names, name)
		fmt.Fprintf(progress, "bench: JetStream on disk, %s\n", name)
		r := newRunner(opts, progress)
		if err := r.startEmbedded(true, interval, progress); err != nil { // embedded.go
			r.close()
			return cliutil.Failure(fmt.Errorf("bench: %s: %w", name, err))
		}
		got, err := r.run(ctx)
		r.close()
		chains = append(chains, compareChains(got, name)...)
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
	rep.Chain = chains
	return emitReport(opts, out, rep, failed, "")
}
