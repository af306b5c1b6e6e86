package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func topCommand() *cli.Command {
	return &cli.Command{
		Name:      "top",
		Usage:     "show the running pipelines' jobs live, with rates",
		UsageText: "marvelo top [PIPELINE] [--once] [--json] [--interval 1s] [--broker URL]",
		Description: `Asks the broker for the status of the pipelines (or of one) every --interval and shows, per
job, its state, worker, blocks in and out per second, rounds per second, and the dummies, stale
blocks, queue drops and restarts so far. Rates are the change of the workers' counters between
two samples. --once takes two samples one interval apart, prints them and exits; --json prints
the rows as JSON.

Example:
   marvelo top --broker nats://head:4222
   marvelo top demo --once --json`,
		Flags: append(brokerFlags(),
			&cli.BoolFlag{Name: "once", Usage: "print one sample and exit"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON (with --once: one array; otherwise one array a line)"},
			&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "time between samples"},
		),
		Action: topAction,
	}
}

// topRow is one job in marvelo top.
type topRow struct {
	Pipeline    string  `json:"pipeline"`
	Job         int     `json:"job"`
	Name        string  `json:"name"`
	Worker      string  `json:"worker"`
	State       string  `json:"state"`
	BlocksInPS  float64 `json:"blocks_in_per_s"`
	BlocksOutPS float64 `json:"blocks_out_per_s"`
	RoundsPS    float64 `json:"rounds_per_s"`
	BlocksIn    uint64  `json:"blocks_in"`
	BlocksOut   uint64  `json:"blocks_out"`
	Dummies     uint64  `json:"dummies"`
	Stale       uint64  `json:"stale"`
	QueueDrops  uint64  `json:"queue_drops"`
	Restarts    int     `json:"restarts"`
}

func topAction(c *cli.Context) error {
	if c.NArg() > 1 {
		return cliutil.UsageError(fmt.Errorf("top: at most one pipeline name, got %d arguments", c.NArg()))
	}
	interval := c.Duration("interval")
	if interval <= 0 {
		return cliutil.UsageError(fmt.Errorf("top: --interval must be positive"))
	}
	nc, cl, err := connect(c)
	if err != nil {
		return err
	}
	defer nc.Close()
	name := c.Args().First()
	prev, prevAt, err := topSample(c.Context, cl, name)
	if err != nil {
		return cliutil.Failure(err)
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-c.Context.Done():
			return nil
		case <-ticker.C:
		}
		cur, at, err := topSample(c.Context, cl, name)
		if err != nil {
			return cliutil.Failure(err)
		}
		rows := topRows(prev, cur, at.Sub(prevAt))
		if c.Bool("json") {
			b, _ := json.Marshal(rows)
			fmt.Fprintf(c.App.Writer, "%s\n", b)
		} else {
			if !c.Bool("once") {
				fmt.Fprint(c.App.Writer, "\033[H\033[2J") // clear the terminal
			}
			printTop(c.App.Writer, rows, at)
		}
		if c.Bool("once") {
			return nil
		}
		prev, prevAt = cur, at
	}
}

func topSample(ctx context.Context, cl *client.Client, name string) ([]protocol.PipelineStatus, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, name)
	return st, time.Now(), err
}

// topRows pairs each job of cur with its counters in prev and computes the rates over d.
func topRows(prev, cur []protocol.PipelineStatus, d time.Duration) []topRow {
	before := map[string]protocol.JobStatus{}
	for _, p := range prev {
		for _, j := range p.Jobs {
			before[fmt.Sprintf("%s/%d", p.Name, j.ID)] = j
		}
	}
	rows := []topRow{}
	secs := d.Seconds()
	for _, p := range cur {
		for _, j := range p.Jobs {
			r := topRow{Pipeline: p.Name, Job: j.ID, Name: j.Name, Worker: j.Worker, State: j.State,
				BlocksIn: j.Stats.BlocksIn, BlocksOut: j.Stats.BlocksOut, Dummies: j.Stats.Dummies,
				Stale: j.Stats.Stale, QueueDrops: j.Stats.QueueDrops, Restarts: j.Restarts}
			if b, ok := before[fmt.Sprintf("%s/%d", p.Name, j.ID)]; ok && secs > 0 {
				r.BlocksInPS = rate(b.Stats.BlocksIn, j.Stats.BlocksIn, secs)
				r.BlocksOutPS = rate(b.Stats.BlocksOut, j.Stats.BlocksOut, secs)
				r.RoundsPS = rate(b.Stats.Rounds, j.Stats.Rounds, secs)
			}
			rows = append(rows, r)
		}
	}
	sort.SliceStable(rows, func(a, b int) bool {
		if rows[a].Pipeline != rows[b].Pipeline {
			return rows[a].Pipeline < rows[b].Pipeline
		}
		return rows[a].Job < rows[b].Job
	})
	return rows
}

// rate is the change per second; a counter that went back (a restarted job) counts from zero.
func rate(before, after uint64, secs float64) float64 {
	if after < before {
		before = 0
	}
	return float64(after-before) / secs
}

func printTop(w io.Writer, rows []topRow, at time.Time) {
	fmt.Fprintf(w, "marvelo top — %s\n", at.Format("15:04:05"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tJOB\tNAME\tWORKER\tSTATE\tIN/S\tOUT/S\tROUNDS/S\tIN\tOUT\tDUMMIES\tSTALE\tDROPS\tRESTARTS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Pipeline, r.Job, r.Name, r.Worker, r.State,
			r.BlocksInPS, r.BlocksOutPS, r.RoundsPS, r.BlocksIn, r.BlocksOut, r.Dummies, r.Stale, r.QueueDrops, r.Restarts)
	}
	_ = tw.Flush()
}
