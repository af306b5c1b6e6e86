package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
)

// brokerFlags connect a command to a running broker.
func brokerFlags() []cli.Flag {
	return append(cliutil.AuthFlags(), // --auth-token, --creds
		&cli.StringFlag{Name: "broker", Value: nats.DefaultURL, EnvVars: []string{"MARVELO_BROKER"}, Usage: "NATS URL of the broker; comma-separated URLs of several head nodes (a cluster)"},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate to verify the broker's TLS certificate"},
	)
}

func connect(c *cli.Context) (*nats.Conn, *client.Client, error) {
	opts := []nats.Option{nats.Name("marvelo"), nats.Timeout(5 * time.Second)}
	auth, err := cliutil.AuthOptions(c)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, auth...)
	if ca := c.String("tls-ca"); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	nc, err := nats.Connect(c.String("broker"), opts...)
	if err != nil {
		return nil, nil, cliutil.Failure(worker.DescribeConnectError(c.String("broker"), err))
	}
	return nc, client.New(nc), nil
}

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a pipeline to a running broker",
		ArgsUsage: "pipeline.cbor|pipeline.json",
		Description: `Sends the pipeline document (CBOR or JSON, judged by content) to the broker, which validates
it against the job types its workers carry, places every job and starts them. With --wait,
waits until the pipeline ends; with --follow, also prints job output and events meanwhile.

Exit codes: 0 submitted (or finished, with --wait/--follow), 1 failed, 2 invalid document.

Example:
   marvelo submit pipeline.cbor --broker nats://head:4222 --follow`,
		Flags: append(brokerFlags(),
			&cli.BoolFlag{Name: "wait", Usage: "wait until the pipeline has ended"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "print job output and events until the pipeline has ended"},
		),
		Action: submitAction,
	}
}

func submitAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return cliutil.UsageError(fmt.Errorf("submit: want exactly one pipeline file"))
	}
	path := c.Args().First()
	doc, err := os.ReadFile(path)
	if err != nil {
		return cliutil.UsageError(fmt.Errorf("submit: %w", err))
	}
	// Every problem the document has on its own, before it is sent; the broker then checks the
	// job types and args against its workers' before placing anything.
	p, err := pipeline.Check(doc, pipeline.ValidateOptions{})
	if err != nil {
		return cliutil.UsageError(prefixLines(path, err))
	}
	warnExecPaths(c.App.ErrWriter, path, p)
	nc, cl, err := connect(c)
	if err != nil {
		return err
	}
	defer nc.Close()
	var f *client.Follower
	if c.Bool("wait") || c.Bool("follow") {
		if f, err = cl.Follow(p.Name); err != nil {
			return cliutil.Failure(err)
		}
		defer f.Close()
	}
	r, err := cl.Submit(c.Context, doc, filepath.Dir(path))
	if errors.Is(err, client.ErrInvalid) {
		return cliutil.UsageError(fmt.Errorf("%s: %w", path, err))
	}
	if err != nil {
		return cliutil.Failure(err)
	}
	fmt.Fprintf(os.Stderr, "pipeline %s submitted: %s\n", r.Pipeline, r.State)
	if f == nil {
		return nil
	}
	if ids := client.InteractiveJobs(p); c.Bool("follow") && len(ids) > 0 {
		// Lines typed here reach the interactive jobs; the goroutine ends with the input or
		// with the process.
		go func() { _ = cl.ForwardInput(p.Name, ids, os.Stdin) }()
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var onLine func(protocol.LogLine)
	var onEvent func(protocol.Event)
	if c.Bool("follow") {
		onLine = func(l protocol.LogLine) { printLogLine(os.Stdout, l, false) }
		onEvent = func(e protocol.Event) {
			fmt.Fprintf(os.Stderr, "%s %s: %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Message)
		}
	}
	st, err := f.Wait(ctx, onLine, onEvent)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(os.Stderr, "stopped waiting; pipeline %s keeps running (marvelo stop %s)\n", p.Name, p.Name)
			return cli.Exit("", cliutil.ExitSignaled)
		}
		return cliutil.Failure(err)
	}
	if st.State != protocol.StateFinished {
		return cliutil.Failure(fmt.Errorf("pipeline %s %s: %s", st.Name, st.State, st.Error))
	}
	fmt.Fprintf(os.Stderr, "pipeline %s finished\n", st.Name)
	return nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show pipelines and their jobs",
		ArgsUsage: "[PIPELINE]",
		Description: `Shows each pipeline's state and, per job, the worker it runs on, its state, blocks in and out,
blocks dropped as stale or by max_queue, dummies and restarts; with a pipeline name, also its
events.

Example:
   marvelo status
   marvelo status demo --json`,
		Flags: append(brokerFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts"}),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return cliutil.UsageError(fmt.Errorf("status: at most one pipeline name"))
			}
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			sts, err := cl.Status(c.Context, c.Args().First())
			if err != nil {
				return cliutil.Failure(err)
			}
			if c.Bool("json") {
				return printJSON(sts)
			}
			printStatus(os.Stdout, sts, c.NArg() == 1)
			return nil
		},
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printStatus(w io.Writer, sts []protocol.PipelineStatus, events bool) {
	if len(sts) == 0 {
		fmt.Fprintln(w, "no pipelines")
		return
	}
	for i, st := range sts {
		if i > 0 {
			fmt.Fprintln(w)
		}
		line := fmt.Sprintf("pipeline %s: %s", st.Name, st.State)
		if st.Reason != "" {
			line += " (" + st.Reason + ")"
		}
		if st.Error != "" {
			line += ": " + st.Error
		}
		fmt.Fprintln(w, line)
		if len(st.Runs) > 1 {
			var runs []string
			for _, r := range st.Runs {
				runs = append(runs, fmt.Sprintf("%d %s %s", r.ID, r.State, r.Submitted.Format("15:04:05")))
			}
			fmt.Fprintf(w, "run %d; runs (marvelo logs %s --run ID): %s\n", st.Run, st.Name, strings.Join(runs, ", "))
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tNAME\tWORKER\tSTATE\tIN\tOUT\tSTALE\tDROPPED\tDUMMIES\tRESTARTS")
		for _, j := range st.Jobs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", j.ID, j.Name, orDash(j.Worker), j.State,
				j.Stats.BlocksIn, j.Stats.BlocksOut, j.Stats.Stale, j.Stats.QueueDrops, j.Stats.Dummies, j.Restarts)
		}
		_ = tw.Flush()
		if events {
			for _, e := range st.Events {
				fmt.Fprintf(w, "  %s  %-12s %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Message)
			}
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop a running pipeline and wait for its end",
		ArgsUsage: "PIPELINE",
		Description: `Drains the pipeline: its sources end and the other jobs finish what is in flight, for at
most --grace; what still runs then is stopped outright and named in the output. --force stops
every job outright at once. The command returns once the pipeline has ended and exits 0 only
when it ended stopped.

Example:
   marvelo stop demo
   marvelo stop demo --grace 30s
   marvelo stop demo --force`,
		Flags: append(brokerFlags(),
			&cli.DurationFlag{Name: "grace", Value: protocol.DefaultStopGrace, Usage: "how long the jobs may drain before they are stopped outright"},
			&cli.BoolFlag{Name: "force", Usage: "stop every job outright, without draining"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cliutil.UsageError(fmt.Errorf("stop: want exactly one pipeline name"))
			}
			if c.Duration("grace") <= 0 && !c.Bool("force") {
				return cliutil.UsageError(fmt.Errorf("stop: --grace %s: want a positive duration (or --force)", c.Duration("grace")))
			}
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			name := c.Args().First()
			r, err := cl.StopWith(c.Context, protocol.StopRequest{Pipeline: name, Grace: c.Duration("grace"), Force: c.Bool("force")})
			if err != nil {
				return cliutil.Failure(err)
			}
			for _, j := range r.Forced {
				fmt.Fprintf(os.Stderr, "stopped outright (did not drain in time): %s\n", j)
			}
			if r.State != protocol.StateStopped {
				return cliutil.Failure(fmt.Errorf("pipeline %s ended %s, not stopped", name, r.State))
			}
			fmt.Fprintf(os.Stderr, "pipeline %s stopped\n", name)
			return nil
		},
	}
}

func resetCommand() *cli.Command {
	return &cli.Command{
		Name:      "reset",
		Usage:     "restart the numbering of a pipeline's sources with the reset bit",
		ArgsUsage: "PIPELINE",
		Description: `Every source (and every job whose inputs are all async) of the pipeline restarts its sequence
numbers at 1 with the reset bit; downstream jobs realign once every input has reset. With --at,
the sources restart together at that wall-clock time (RFC 3339), wherever they run.

Example:
   marvelo reset demo
   marvelo reset demo --at 2026-11-26T12:00:00Z`,
		Flags: append(brokerFlags(), &cli.StringFlag{Name: "at", Usage: "RFC 3339 time at which the sources restart"}),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cliutil.UsageError(fmt.Errorf("reset: want exactly one pipeline name"))
			}
			var at time.Time
			if s := c.String("at"); s != "" {
				var err error
				if at, err = time.Parse(time.RFC3339Nano, s); err != nil {
					return cliutil.UsageError(fmt.Errorf("reset: --at %q: want an RFC 3339 time such as 2026-11-26T12:00:00Z", s))
				}
			}
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := cl.Reset(c.Context, c.Args().First(), at); err != nil {
				return cliutil.Failure(err)
			}
			fmt.Fprintf(os.Stderr, "pipeline %s: sources reset\n", c.Args().First())
			return nil
		},
	}
}

func workersCommand() *cli.Command {
	return &cli.Command{
		Name:        "workers",
		Usage:       "list the workers the broker knows",
		Description: "Shows each worker's groups, slots used/total, metrics, last heartbeat and version.\n\nExample:\n   marvelo workers --broker nats://head:4222",
		Flags:       append(brokerFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts"}),
		Action: func(c *cli.Context) error {
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			ws, err := cl.Workers(c.Context)
			if err != nil {
				return cliutil.Failure(err)
			}
			if c.Bool("json") {
				for i := range ws {
					if ws[i].Groups == nil {
						ws[i].Groups = []string{} // the head's worker: a list, never null
					}
				}
				return printJSON(ws)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tGROUPS\tSLOTS\tCPU FREE\tMEM FREE\tSWAP USED\tDISK FREE\tLAST HEARTBEAT\tSTATE\tREFUSED\tVERSION")
			for _, w := range ws {
				groups := strings.Join(w.Groups, ",")
				switch {
				case w.Any:
					groups = "(all)"
				case w.Local:
					groups = "LOCAL"
				case groups == "":
					groups = "ALL"
				}
				state := "alive"
				if !w.Alive {
					state = "dead"
				} else if w.Cordoned {
					state = "cordoned"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%.0f%%\t%.0f%%\t%.0f%%\t%.0f%%\t%s ago\t%s\t%d\t%s\n", w.Name, groups, w.SlotsUsed, w.Slots,
					w.Metrics.CPUFree, w.Metrics.MemFree, w.Metrics.SwapUsed, w.Metrics.DiskFree,
					time.Since(w.LastHeartbeat).Round(time.Millisecond), state, w.Refused, w.Version)
			}
			return tw.Flush()
		},
	}
}

func drainCommand() *cli.Command {
	return &cli.Command{
		Name:      "drain",
		Usage:     "move every job off a worker (or every worker of a group) and keep it from taking new ones",
		ArgsUsage: "WORKER | --group GROUP",
		Description: `Cordons the worker (it takes no new job) and moves its jobs to other workers exactly as a dead
worker's jobs are moved: each ends on the worker, then resumes elsewhere from what it had not
acknowledged. A job no other worker fits waits pending. The worker keeps running; marvelo
uncordon lets it take jobs again. SIGTERM on marvelo-worker drains it the same way before it exits.

With --group, every live worker of the group is drained at once, told on the group's subject
(marvelo.group.GROUP.leave); with --shutdown as well, they then exit as on SIGTERM.

Example:
   marvelo drain node3
   marvelo uncordon node3
   marvelo drain --group mic --shutdown`,
		Flags: append(brokerFlags(),
			&cli.StringFlag{Name: "group", Usage: "drain every worker of this group instead of one worker (example: --group mic)"},
			&cli.BoolFlag{Name: "shutdown", Usage: "with --group: the drained workers then exit, as on SIGTERM (example: --group mic --shutdown)"},
		),
		Action: func(c *cli.Context) error {
			group := c.String("group")
			switch {
			case group == "" && c.NArg() != 1:
				return cliutil.UsageError(fmt.Errorf("drain: want exactly one worker name, or --group GROUP"))
			case group != "" && c.NArg() != 0:
				return cliutil.UsageError(fmt.Errorf("drain: a worker name and --group %s: give one of them", group))
			case group == "" && c.Bool("shutdown"):
				return cliutil.UsageError(fmt.Errorf("drain: --shutdown goes with --group (SIGTERM stops one worker)"))
			}
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			if group != "" {
				return drainGroup(c, cl, group)
			}
			moved, err := cl.Drain(c.Context, c.Args().First())
			if err != nil {
				return cliutil.Failure(err)
			}
			for _, j := range moved {
				fmt.Fprintf(os.Stderr, "moved %s\n", j)
			}
			fmt.Fprintf(os.Stderr, "worker %s drained (%d jobs moved); marvelo uncordon %s lets it take jobs again\n", c.Args().First(), len(moved), c.Args().First())
			return nil
		},
	}
}

// drainGroup drains every worker of a group (marvelo drain --group).
func drainGroup(c *cli.Context, cl *client.Client, group string) error {
	moved, err := cl.DrainGroup(c.Context, group, c.Bool("shutdown"))
	if err != nil {
		return cliutil.Failure(err)
	}
	for _, j := range moved {
		fmt.Fprintf(os.Stderr, "moved %s\n", j)
	}
	if c.Bool("shutdown") {
		fmt.Fprintf(os.Stderr, "group %s drained (%d jobs moved); its workers are shutting down\n", group, len(moved))
		return nil
	}
	fmt.Fprintf(os.Stderr, "group %s drained (%d jobs moved); marvelo uncordon each worker to let it take jobs again\n", group, len(moved))
	return nil
}

func uncordonCommand() *cli.Command {
	return &cli.Command{
		Name:        "uncordon",
		Usage:       "let a drained worker take jobs again",
		ArgsUsage:   "WORKER",
		Description: "The worker takes jobs again; pending jobs it fits are placed on it.\n\nExample:\n   marvelo uncordon node3",
		Flags:       brokerFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cliutil.UsageError(fmt.Errorf("uncordon: want exactly one worker name"))
			}
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := cl.Uncordon(c.Context, c.Args().First()); err != nil {
				return cliutil.Failure(err)
			}
			fmt.Fprintf(os.Stderr, "worker %s takes jobs again\n", c.Args().First())
			return nil
		},
	}
}

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the output and logs of a pipeline's jobs",
		ArgsUsage: "PIPELINE",
		Description: `Prints what the jobs of a pipeline wrote (their output and log lines) in its latest run, or in
the run given by --run (marvelo status lists the runs), kept by the broker for 24 hours. With
-f, keeps printing new lines until the run ends or the command is interrupted.

With --json, prints one JSON object a line: {"time", "pipeline", "run", "job", "name",
"worker", "stream", "level", "text"}. stream is "stdout" for what a job printed (a Go job's
Printf and Out, an executable's standard output) and "log" for its log records, whose level
is "debug", "info", "warn" or "error" (an executable's standard error is logged at "warn").

Example:
   marvelo logs demo --job 6
   marvelo logs demo --run 2
   marvelo logs demo -f
   marvelo logs demo --json | jq -r 'select(.stream == "log") | .text'`,
		Flags: append(brokerFlags(),
			&cli.IntFlag{Name: "job", Usage: "only this job's lines"},
			&cli.IntFlag{Name: "run", Usage: "this run's lines (default: the latest)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new lines until the run ends"},
			&cli.BoolFlag{Name: "json", Usage: "one JSON object a line (time, pipeline, run, job, name, worker, stream, level, text)"},
		),
		Action: logsAction,
	}
}

// pickRun finds a run of a pipeline (0: the latest) and the time its lines end: the next run's
// submission, or none (zero) for the latest.
func pickRun(st protocol.PipelineStatus, id int) (protocol.Run, time.Time, error) {
	if id == 0 {
		id = st.Run
	}
	for i, r := range st.Runs {
		if r.ID != id {
			continue
		}
		var bound time.Time
		if i+1 < len(st.Runs) {
			bound = st.Runs[i+1].Submitted
		}
		return r, bound, nil
	}
	var ids []string
	for _, r := range st.Runs {
		ids = append(ids, strconv.Itoa(r.ID))
	}
	return protocol.Run{}, time.Time{}, fmt.Errorf("pipeline %s has no run %d (runs: %s)", st.Name, id, strings.Join(ids, ", "))
}

func logsAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return cliutil.UsageError(fmt.Errorf("logs: want exactly one pipeline name"))
	}
	name := c.Args().First()
	if err := protocol.CheckName("pipeline", name); err != nil {
		return cliutil.UsageError(err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := readLogs(ctx, c, name)
	if err != nil && ctx.Err() != nil {
		return nil // interrupted: that is how -f ends
	}
	return err
}

func readLogs(ctx context.Context, c *cli.Context, name string) error {
	nc, cl, err := connect(c)
	if err != nil {
		return err
	}
	defer nc.Close()
	sts, err := cl.Status(ctx, name)
	if err != nil {
		return cliutil.Failure(err)
	}
	if len(sts) != 1 {
		return cliutil.Failure(fmt.Errorf("no pipeline named %q", name))
	}
	run, bound, err := pickRun(sts[0], c.Int("run"))
	if err != nil {
		return cliutil.Failure(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return cliutil.Failure(err)
	}
	filter := protocol.LogFilter(name)
	if j := c.Int("job"); j > 0 {
		filter = protocol.LogSubject(name, j)
	}
	start := run.Submitted
	cons, err := js.OrderedConsumer(ctx, protocol.LogStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start})
	if err != nil {
		return cliutil.Failure(fmt.Errorf("logs: %w", err))
	}
	follow := c.Bool("follow") && bound.IsZero()
	// done ends the reading: at once on a signal; without -f once nothing is pending; with -f once
	// the run has ended and nothing is pending (checked every half second, by a goroutine that
	// ends with the command).
	done, finish := context.WithCancel(ctx)
	defer finish()
	var printed atomic.Uint64 // the stream sequence of the last line handled
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- watchLogsEnd(done, cl, cons, &printed, name, run.ID, follow)
		finish()
	}()
	it, err := cons.Messages()
	if err != nil {
		return cliutil.Failure(fmt.Errorf("logs: %w", err))
	}
	defer context.AfterFunc(done, it.Stop)()
	if follow {
		fmt.Fprintf(os.Stderr, "following the logs of pipeline %s, run %d, until it ends (Ctrl-C stops)\n", name, run.ID)
	}
	asJSON, enc := c.Bool("json"), json.NewEncoder(c.App.Writer)
	for {
		m, err := it.Next()
		if err != nil {
			if done.Err() != nil {
				if werr := <-watchErr; werr != nil && ctx.Err() == nil {
					return cliutil.Failure(werr)
				}
				return nil
			}
			return cliutil.Failure(fmt.Errorf("logs: %w", err))
		}
		md, err := m.Metadata()
		if err == nil && !bound.IsZero() && !md.Timestamp.Before(bound) {
			finish() // the next run's lines: this run's are all printed
			continue
		}
		var l protocol.LogLine
		if err := json.Unmarshal(m.Data(), &l); err == nil {
			if asJSON {
				if err := enc.Encode(jsonLogLine(l, run.ID)); err != nil {
					return cliutil.Failure(fmt.Errorf("logs: %w", err))
				}
			} else {
				printLogLine(c.App.Writer, l, true)
			}
		}
		if md != nil {
			printed.Store(md.Sequence.Stream)
		}
	}
}

// watchLogsEnd returns when the lines to print are all delivered: without follow, once none is
// pending; with follow, once the run has ended and none is pending. It returns early, with
// nil, when ctx ends.
func watchLogsEnd(ctx context.Context, cl *client.Client, cons jetstream.Consumer, printed *atomic.Uint64, name string, run int, follow bool) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		ended := !follow
		if follow {
			sts, err := cl.Status(ctx, name)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			ended = len(sts) != 1 || sts[0].Run != run || protocol.Terminal(sts[0].State)
		}
		if ended {
			info, err := cons.Info(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("logs: %w", err)
			}
			if info.NumPending == 0 && (info.Delivered.Consumer == 0 || printed.Load() >= info.Delivered.Stream) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// logLineJSON is one line of marvelo logs --json.
type logLineJSON struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	Run      int       `json:"run"`
	Job      int       `json:"job"`
	Name     string    `json:"name"`
	Worker   string    `json:"worker"`
	Stream   string    `json:"stream"` // "stdout" or "log"
	Level    string    `json:"level,omitempty"`
	Text     string    `json:"text"`
}

// jsonLogLine is a log line of a run as logs --json prints it: a job's output (level "out" on
// the wire) is stream stdout without a level, a log record stream log with its level.
func jsonLogLine(l protocol.LogLine, run int) logLineJSON {
	out := logLineJSON{Time: l.Time, Pipeline: l.Pipeline, Run: run, Job: l.Job, Name: l.Name, Worker: l.Worker,
		Stream: "log", Level: l.Level, Text: l.Text}
	if l.Level == "out" {
		out.Stream, out.Level = "stdout", ""
	}
	return out
}

func printLogLine(w io.Writer, l protocol.LogLine, withTime bool) {
	prefix := l.Name + " " + strconv.Itoa(l.Job)
	if withTime {
		fmt.Fprintf(w, "%s %s %s | %s\n", l.Time.Format("15:04:05.000"), prefix, l.Worker, l.Text)
		return
	}
	fmt.Fprintf(w, "%s | %s\n", prefix, l.Text)
}
