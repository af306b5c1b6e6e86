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
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// brokerFlags connect a command to a running broker.
func brokerFlags() []cli.Flag {
	return append(cliutil.AuthFlags(), // --auth-token, --creds
		&cli.StringFlag{Name: "broker", Value: nats.DefaultURL, EnvVars: []string{"MARVELO_BROKER"}, Usage: "NATS URL of the broker; comma-separated URLs of several head nodes (a cluster)"},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate to verify the broker's TLS certificate"},
	)
}

// connect reaches the broker of the brokerFlags (cliutil.Connect).
func connect(c *cli.Context) (*nats.Conn, *client.Client, error) {
	return cliutil.Connect(c, "marvelo")
}

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit a pipeline to a running broker",
		ArgsUsage: "pipeline.cbor|pipeline.json|pipeline.yaml",
		Description: `Sends the pipeline document (CBOR, JSON or YAML, judged by content) to the broker, which
validates it against the job types its live workers carry (checked here first, each problem
with its line and column), places every job and starts them. With --wait, waits until the
pipeline ends, saying why it is pending while it is (each reason once: again only when it
changes, as when a worker joins that cannot run the job either); with --follow, also prints job
output and events meanwhile. --timeout bounds that wait: when it runs out, the command exits 1
naming the pipeline's state and its reason (the pipeline stays: marvelo stop NAME).

Exit codes: 0 submitted (or finished, with --wait/--follow), 1 failed or timed out, 2 invalid
document.

Example:
   marvelo submit pipeline.cbor --broker nats://head:4222 --follow
   marvelo submit pipeline.yaml --wait --timeout 5m`,
		Flags: append(brokerFlags(),
			&cli.BoolFlag{Name: "wait", Usage: "wait until the pipeline has ended"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "print job output and events until the pipeline has ended"},
			&cli.DurationFlag{Name: "timeout", Usage: "with --wait or --follow: give up waiting after `DURATION` (exit 1, naming the state and why)"},
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
	wait := c.Bool("wait") || c.Bool("follow")
	if c.IsSet("timeout") && (!wait || c.Duration("timeout") <= 0) {
		return cliutil.UsageError(fmt.Errorf("submit: --timeout %s: want a positive duration, with --wait or --follow", c.Duration("timeout")))
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
	// The job types against the live workers' here, where the document's text is: each problem
	// with its line and column, an unknown type with the closest known one or with what must
	// run. The broker checks again (a worker may leave meanwhile).
	opts, err := brokerTypes(c, cl)
	if err != nil {
		return err
	}
	if _, err := pipeline.Check(doc, opts); err != nil {
		return cliutil.UsageError(prefixLines(path, err))
	}
	if pipeline.IsYAML(doc) { // the wire carries CBOR or JSON: a broker of before YAML reads it too
		if doc, err = pipeline.EncodeCBOR(p); err != nil {
			return cliutil.Failure(err)
		}
	}
	var f *client.Follower
	if wait {
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
	stderr := c.App.ErrWriter
	fmt.Fprintf(stderr, "pipeline %s submitted: %s\n", r.Pipeline, r.State)
	if f == nil {
		return nil
	}
	if ids := client.InteractiveJobs(p); c.Bool("follow") && len(ids) > 0 {
		// Lines typed here reach the interactive jobs; the goroutine ends with the input or
		// with the process.
		go func() { _ = cl.ForwardInput(p.Name, ids, os.Stdin) }()
	}
	sigCtx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx := sigCtx
	if d := c.Duration("timeout"); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(sigCtx, d)
		defer cancel()
	}
	var onLine func(protocol.LogLine)
	var onEvent func(protocol.Event)
	if c.Bool("follow") {
		onLine = func(l protocol.LogLine) { printLogLine(c.App.Writer, l, false) }
		onEvent = func(e protocol.Event) {
			fmt.Fprintf(stderr, "%s %s: %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Message)
		}
	} else {
		// --wait is silent but for why the pipeline waits: each reason once, a new one when it
		// changes (a worker that joins may not fit either; the reason when it gives up is the
		// latest).
		said := ""
		pending := func(reason string) {
			if reason != "" && reason != said {
				said = reason
				fmt.Fprintf(stderr, "pipeline %s is pending: %s (still waiting)\n", p.Name, reason)
			}
		}
		onEvent = func(e protocol.Event) {
			if e.Job == 0 && e.Kind == protocol.StatePending {
				pending(e.Message)
			}
		}
		if r.State == protocol.StatePending { // its event may have gone before the follower heard it
			if sts, err := cl.Status(ctx, p.Name); err == nil && len(sts) == 1 && sts[0].State == protocol.StatePending {
				pending(sts[0].Reason)
			}
		}
	}
	st, err := f.Wait(ctx, onLine, onEvent)
	if err != nil {
		switch {
		case sigCtx.Err() != nil:
			fmt.Fprintf(stderr, "stopped waiting; pipeline %s keeps running (marvelo stop %s)\n", p.Name, p.Name)
			return cli.Exit("", cliutil.ExitSignaled)
		case ctx.Err() != nil:
			return cliutil.Failure(timedOut(c, cl, p.Name))
		}
		return cliutil.Failure(err)
	}
	if st.State != protocol.StateFinished {
		return cliutil.Failure(fmt.Errorf("pipeline %s %s: %s", st.Name, st.State, st.Error))
	}
	fmt.Fprintf(stderr, "pipeline %s finished\n", st.Name)
	return nil
}

// timedOut says where a pipeline stands when submit's --timeout runs out: its state and why.
func timedOut(c *cli.Context, cl *client.Client, name string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Context), 5*time.Second)
	defer cancel()
	d := c.Duration("timeout")
	sts, err := cl.Status(ctx, name)
	if err != nil || len(sts) != 1 {
		return fmt.Errorf("pipeline %s has not ended after %s, and its status is unknown: %v (marvelo status %s)", name, d, err, name)
	}
	st := sts[0]
	why := st.Reason
	if st.Error != "" {
		why = strings.TrimPrefix(why+"; "+st.Error, "; ")
	}
	if why == "" {
		why = "no reason given (marvelo status " + name + ")"
	}
	return fmt.Errorf("pipeline %s is still %s after %s: %s; it stays on the broker (marvelo stop %s)", name, st.State, d, why, name)
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "show pipelines and their jobs",
		ArgsUsage: "[PIPELINE]",
		Description: `Without a name, shows one line per pipeline: its state, its jobs running of all, its run, its
age and why it is degraded, failed or when it ended. With a pipeline name, shows it in full: per
job, the worker it runs on, its state, blocks in and out, blocks dropped as stale or by
max_queue, dummies and restarts (moves and restarts after a failure; "3 (2/5 failed)": 2 of
them restarts after a failure, of the 5 its restart policy allows), then its events (each
restart says why). --json prints every pipeline (or the one
named) in full. marvelo rm forgets ended pipelines.

Example:
   marvelo status
   marvelo status demo
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
			if c.NArg() == 1 {
				printStatus(c.App.Writer, sts, true)
				return nil
			}
			printSummary(c.App.Writer, c.App.ErrWriter, sts, time.Now())
			return nil
		},
	}
}

// printSummary prints one line per pipeline (marvelo status without a name): the full status
// of every pipeline, one after the other, drowned the one that mattered.
func printSummary(w, hints io.Writer, sts []protocol.PipelineStatus, now time.Time) {
	if len(sts) == 0 {
		fmt.Fprintln(w, "no pipelines")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PIPELINE\tSTATE\tJOBS RUNNING\tRUN\tAGE\tNOTE")
	ended := 0
	for _, st := range sts {
		running := 0
		for _, j := range st.Jobs {
			if j.State == protocol.StateRunning {
				running++
			}
		}
		note := st.Reason
		if st.Error != "" {
			note = st.Error
		}
		if protocol.Terminal(st.State) {
			ended++
			if note == "" && !st.Ended.IsZero() {
				note = "ended " + roundAge(now.Sub(st.Ended)) + " ago"
			}
		}
		if i := strings.IndexByte(note, '\n'); i >= 0 {
			note = note[:i] + " …"
		}
		if r := []rune(note); len(r) > 100 {
			note = string(r[:99]) + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%s\t%s\n", st.Name, st.State, running, len(st.Jobs), st.Run, roundAge(now.Sub(st.Submitted)), note)
	}
	_ = tw.Flush()
	if ended > 0 {
		fmt.Fprintf(hints, "%d ended; marvelo status NAME shows one in full, marvelo rm NAME (or --ended) forgets them\n", ended)
	}
}

// roundAge writes an age to the second (to the minute past an hour): 42s, 3m12s, 2h5m.
func roundAge(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
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
		if len(st.Chained) > 0 {
			fmt.Fprintf(w, "chained pipes (blocks pass in the worker's process): %s\n", joinInts(st.Chained))
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "JOB\tNAME\tWORKER\tSTATE\tIN\tOUT\tSTALE\tDROPPED\tDUMMIES\tRESTARTS")
		for _, j := range st.Jobs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", j.ID, j.Name, orDash(j.Worker), j.State,
				j.Stats.BlocksIn, j.Stats.BlocksOut, j.Stats.Stale, j.Stats.QueueDrops, j.Stats.Dummies, restartsCell(j))
		}
		_ = tw.Flush()
		if events {
			for _, e := range st.Events {
				fmt.Fprintf(w, "  %s  %-12s %s\n", e.Time.Format("15:04:05.000"), e.Kind, e.Message)
			}
		}
	}
}

// joinInts lists numbers as "1, 2, 3".
func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// restartsCell is a job's RESTARTS: its new instances (moves and restarts), and of them the
// restarts after a failure against what its restart policy allows: "3 (2/5 failed)".
func restartsCell(j protocol.JobStatus) string {
	s := strconv.Itoa(j.Restarts)
	if j.FailureRestarts > 0 {
		s += fmt.Sprintf(" (%d/%d failed)", j.FailureRestarts, j.RestartMax)
	}
	return s
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
when it ended stopped. A pipeline that has already ended (failed) is not stopped again, but
--force still stops outright those of its jobs a worker still runs, and names them.

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

func rmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "forget ended pipelines: their status, events, checkpoints and logs",
		ArgsUsage: "PIPELINE... | --ended",
		Description: `Removes pipelines that have ended (finished, failed or stopped) from the broker: they no longer
show in marvelo status and top, and their saved state, events, checkpoints and log lines are
deleted. A pipeline that has not ended is refused (marvelo stop it first). --ended removes
every pipeline that has ended. A name removed can be submitted again; its runs start at 1.

Exit codes: 0 every pipeline named removed, 1 one refused (its reason is printed).

Example:
   marvelo rm demo
   marvelo rm --ended`,
		Flags: append(brokerFlags(), &cli.BoolFlag{Name: "ended", Usage: "remove every pipeline that has ended"}),
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 && !c.Bool("ended") {
				return cliutil.UsageError(fmt.Errorf("rm: want pipeline names, or --ended"))
			}
			for _, name := range c.Args().Slice() {
				if err := protocol.CheckName("pipeline", name); err != nil {
					return cliutil.UsageError(fmt.Errorf("rm: %w", err))
				}
			}
			nc, cl, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			removed, err := cl.Remove(c.Context, c.Args().Slice(), c.Bool("ended"))
			for _, name := range removed {
				fmt.Fprintf(c.App.ErrWriter, "pipeline %s removed\n", name)
			}
			if err != nil {
				return cliutil.Failure(err)
			}
			if len(removed) == 0 {
				fmt.Fprintln(c.App.ErrWriter, "no ended pipeline to remove")
			}
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
				heard := "unknown since restart" // alive when the broker restarted, silent since
				if !w.LastHeartbeat.IsZero() {
					heard = time.Since(w.LastHeartbeat).Round(time.Millisecond).String() + " ago"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%.0f%%\t%.0f%%\t%.0f%%\t%.0f%%\t%s\t%s\t%d\t%s\n", w.Name, groups, w.SlotsUsed, w.Slots,
					w.Metrics.CPUFree, w.Metrics.MemFree, w.Metrics.SwapUsed, w.Metrics.DiskFree,
					heard, state, w.Refused, w.Version)
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
acknowledged. A job no other worker fits waits pending. It prints what moved and what did not,
with why, and exits 1 when a job did not move. The worker keeps running; marvelo uncordon lets
it take jobs again. SIGTERM on marvelo-worker drains it the same way before it exits.

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
			name := c.Args().First()
			r, err := cl.Drain(c.Context, name)
			if err != nil {
				return cliutil.Failure(err)
			}
			if err := printDrain(os.Stderr, r, "worker "+name); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "worker %s drained (%d jobs moved); marvelo uncordon %s lets it take jobs again\n", name, len(r.Moved), name)
			return nil
		},
	}
}

// drainGroup drains every worker of a group (marvelo drain --group).
func drainGroup(c *cli.Context, cl *client.Client, group string) error {
	r, err := cl.DrainGroup(c.Context, group, c.Bool("shutdown"))
	if err != nil {
		return cliutil.Failure(err)
	}
	if err := printDrain(os.Stderr, r, "group "+group); err != nil {
		return err
	}
	if c.Bool("shutdown") {
		fmt.Fprintf(os.Stderr, "group %s drained (%d jobs moved); its workers are shutting down\n", group, len(r.Moved))
		return nil
	}
	fmt.Fprintf(os.Stderr, "group %s drained (%d jobs moved); marvelo uncordon each worker to let it take jobs again\n", group, len(r.Moved))
	return nil
}

// printDrain prints what a drain moved and what it could not, with why; jobs that could not
// move make it a failure (exit 1), though what was drained stays cordoned.
func printDrain(w io.Writer, r protocol.DrainReply, what string) error {
	for _, j := range r.Moved {
		fmt.Fprintf(w, "moved %s\n", j)
	}
	for _, j := range r.Pending {
		fmt.Fprintf(w, "not moved %s\n", j)
	}
	if len(r.Pending) > 0 {
		return cliutil.Failure(fmt.Errorf("%s drained and cordoned, but %d of its %d jobs did not move (see \"not moved\" above); a pending job starts once a worker that fits joins or is uncordoned",
			what, len(r.Pending), len(r.Pending)+len(r.Moved)))
	}
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
-f, keeps printing new lines until the run ends or the command is interrupted. Among them,
marked (event), come the pipeline's events: a job placed, started, its worker lost, moved,
pending, finished or failed, its notices; with --job N, those of job N.

With --json, prints one JSON object a line: {"time", "pipeline", "run", "job", "name",
"worker", "stream", "level", "text"}. stream is "stdout" for what a job printed (a Go job's
Printf and Out, an executable's standard output), "log" for its log records, whose level
is "debug", "info", "warn" or "error" (an executable's standard error is logged at "warn"),
and "event" for an event, whose "kind" names it (job 0: the pipeline's own).

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
	// The run's lines: from its submission until the next run's (bound), or, with -f on the
	// latest run, until it has ended.
	q := client.LogQuery{Filter: protocol.LogFilter(name), From: run.Submitted, Until: bound}
	if j := c.Int("job"); j > 0 {
		q.Filter = protocol.LogSubject(name, j)
	}
	if c.Bool("follow") && bound.IsZero() {
		q.Ended = func(ctx context.Context) (bool, error) {
			sts, err := cl.Status(ctx, name)
			if err != nil {
				return false, err
			}
			return len(sts) != 1 || sts[0].Run != run.ID || protocol.Terminal(sts[0].State), nil
		}
		fmt.Fprintf(os.Stderr, "following the logs of pipeline %s, run %d, until it ends (Ctrl-C stops)\n", name, run.ID)
	}
	asJSON, enc := c.Bool("json"), json.NewEncoder(c.App.Writer)
	err = cl.ReadLogs(ctx, q, func(e client.LogEntry) error {
		l, err := e.Line()
		if err != nil {
			return nil // not a log line: nothing to print
		}
		if asJSON {
			return enc.Encode(jsonLogLine(l, run.ID))
		}
		printLogLine(c.App.Writer, l, true)
		return nil
	})
	if err != nil {
		return cliutil.Failure(fmt.Errorf("logs of pipeline %s: %w", name, err))
	}
	return nil
}

// logLineJSON is one line of marvelo logs --json.
type logLineJSON struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	Run      int       `json:"run"`
	Job      int       `json:"job"`
	Name     string    `json:"name"`
	Worker   string    `json:"worker"`
	Stream   string    `json:"stream"` // "stdout", "log" or "event"
	Level    string    `json:"level,omitempty"`
	Kind     string    `json:"kind,omitempty"` // an event's kind: placed, worker lost, moved, job failed…
	Text     string    `json:"text"`
}

// jsonLogLine is a log line of a run as logs --json prints it: a job's output (level "out" on
// the wire) is stream stdout without a level, a log record stream log with its level.
func jsonLogLine(l protocol.LogLine, run int) logLineJSON {
	out := logLineJSON{Time: l.Time, Pipeline: l.Pipeline, Run: run, Job: l.Job, Name: l.Name, Worker: l.Worker,
		Stream: "log", Level: l.Level, Text: l.Text}
	switch l.Level {
	case "out":
		out.Stream, out.Level = "stdout", ""
	case protocol.LevelEvent:
		out.Stream, out.Level, out.Kind = "event", "", l.Kind
	}
	return out
}

func printLogLine(w io.Writer, l protocol.LogLine, withTime bool) {
	prefix := l.Name + " " + strconv.Itoa(l.Job)
	if l.Level == protocol.LevelEvent { // the job's lifecycle (or, job 0, the pipeline's)
		if l.Job == 0 {
			prefix = "pipeline"
		}
		fmt.Fprintf(w, "%s %s (event) | %s: %s\n", l.Time.Format("15:04:05.000"), prefix, l.Kind, l.Text)
		return
	}
	if withTime {
		fmt.Fprintf(w, "%s %s %s | %s\n", l.Time.Format("15:04:05.000"), prefix, l.Worker, l.Text)
		return
	}
	fmt.Fprintf(w, "%s | %s\n", prefix, l.Text)
}
