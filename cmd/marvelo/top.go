package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
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
		UsageText: "marvelo top [PIPELINE] [--all] [--once] [--json] [--interval 1s] [--broker URL]",
		Description: `Asks the broker for the status of the pipelines (or of one) every --interval and shows, per
job, its state, worker, blocks in and out per second, rounds per second, payload bytes in and
out per second, CPU (percent of one core) and resident memory, the lag of its inputs (messages
stored in its input pipes, not yet delivered to it: the JetStream consumers' NumPending), and
the dummies, stale blocks, queue drops, redeliveries and restarts so far. Rates are the change
of the workers' counters between two samples. CPU and memory are an executable's own program's;
a Go job's are its worker process's, shared by every Go job on that worker. --once takes two
samples one interval apart, prints them and exits; --json prints the rows as JSON (rates end
in _per_s, cpu_percent, mem_bytes, lag). Without a PIPELINE, the pipelines that have ended are
left out unless --all is given (marvelo rm forgets them).

Example:
   marvelo top --broker nats://head:4222
   marvelo top demo --once --json`,
		Flags: append(brokerFlags(),
			&cli.BoolFlag{Name: "once", Usage: "print one sample and exit"},
			&cli.BoolFlag{Name: "all", Usage: "also the pipelines that have ended (without a PIPELINE)"},
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
	BytesInPS   float64 `json:"bytes_in_per_s"`
	BytesOutPS  float64 `json:"bytes_out_per_s"`
	CPUPercent  float64 `json:"cpu_percent"` // of one core; a Go job's is its worker process's
	MemBytes    uint64  `json:"mem_bytes"`   // resident; a Go job's is its worker process's
	Lag         uint64  `json:"lag"`         // messages in its input pipes not yet delivered to it
	BlocksIn    uint64  `json:"blocks_in"`
	BlocksOut   uint64  `json:"blocks_out"`
	BytesIn     uint64  `json:"bytes_in"`
	BytesOut    uint64  `json:"bytes_out"`
	Dummies     uint64  `json:"dummies"`
	Stale       uint64  `json:"stale"`
	QueueDrops  uint64  `json:"queue_drops"`
	Redelivered uint64  `json:"redeliveries"`
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
	all := c.Bool("all") || name != "" // a pipeline asked for by name is shown, ended or not
	prev, prevAt, err := topSample(c.Context, cl, name, all)
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
		cur, at, err := topSample(c.Context, cl, name, all)
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

// topSample asks for the pipelines' status with their pipes; all keeps those that have ended.
func topSample(ctx context.Context, cl *client.Client, name string, all bool) ([]protocol.PipelineStatus, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := cl.StatusWithPipes(ctx, name)
	if !all {
		st = slices.DeleteFunc(st, func(p protocol.PipelineStatus) bool { return protocol.Terminal(p.State) })
	}
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
		lag := map[int]uint64{}
		for _, ps := range p.Pipes {
			lag[ps.Job] += ps.Pending
		}
		for _, j := range p.Jobs {
			r := topRow{Pipeline: p.Name, Job: j.ID, Name: j.Name, Worker: j.Worker, State: j.State,
				BlocksIn: j.Stats.BlocksIn, BlocksOut: j.Stats.BlocksOut, BytesIn: j.Stats.BytesIn, BytesOut: j.Stats.BytesOut,
				MemBytes: j.Stats.MemBytes, Lag: lag[j.ID], Dummies: j.Stats.Dummies, Stale: j.Stats.Stale,
				QueueDrops: j.Stats.QueueDrops, Redelivered: j.Stats.Redeliveries, Restarts: j.Restarts}
			if b, ok := before[fmt.Sprintf("%s/%d", p.Name, j.ID)]; ok && secs > 0 {
				r.BlocksInPS = rate(b.Stats.BlocksIn, j.Stats.BlocksIn, secs)
				r.BlocksOutPS = rate(b.Stats.BlocksOut, j.Stats.BlocksOut, secs)
				r.RoundsPS = rate(b.Stats.Rounds, j.Stats.Rounds, secs)
				r.BytesInPS = rate(b.Stats.BytesIn, j.Stats.BytesIn, secs)
				r.BytesOutPS = rate(b.Stats.BytesOut, j.Stats.BytesOut, secs)
				if d := j.Stats.CPUSeconds - b.Stats.CPUSeconds; d > 0 {
					r.CPUPercent = 100 * d / secs
				}
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
	fmt.Fprintln(tw, "PIPELINE\tJOB\tNAME\tWORKER\tSTATE\tIN/S\tOUT/S\tROUNDS/S\tIN B/S\tOUT B/S\tCPU%\tMEM\tLAG\tIN\tOUT\tDUMMIES\tSTALE\tDROPS\tREDELIV\tRESTARTS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t%.1f\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Pipeline, r.Job, r.Name, r.Worker, r.State,
			r.BlocksInPS, r.BlocksOutPS, r.RoundsPS, humanBytes(r.BytesInPS), humanBytes(r.BytesOutPS), r.CPUPercent, humanBytes(float64(r.MemBytes)),
			r.Lag, r.BlocksIn, r.BlocksOut, r.Dummies, r.Stale, r.QueueDrops, r.Redelivered, r.Restarts)
	}
	_ = tw.Flush()
}

// humanBytes writes a byte count (or rate) with a binary unit: 512, 1.5Ki, 20.0Mi.
func humanBytes(v float64) string {
	units := []string{"", "Ki", "Mi", "Gi", "Ti"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + units[i]
}
