package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/broker/freeport"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/internal/failoverkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The failover scenario of marvelo bench: real broker and worker processes, counter → forward →
// csv_sink, the forward's worker killed (SIGKILL) or frozen (SIGSTOP) mid-stream.
const scenarioFailover = "failover"

// Failover targets (issue 15) and the shape of each run.
const (
	failoverKillTarget   = 250 * time.Millisecond
	failoverFreezeTarget = 2 * time.Second
	failoverBlocks       = 4000 // counter blocks, one per millisecond
	failoverKillAfter    = 500  // blocks on the forward's output before the kill
	failoverDefaultRuns  = 5
)

// failoverRun is one measured failover.
type failoverRun struct {
	Run       int     `json:"run"`
	Detected  float64 `json:"detected_ms"`  // kill → the broker's "worker lost" event
	Recovered float64 `json:"recovered_ms"` // kill → the moved forward's first block
	Why       string  `json:"why,omitempty"`
	Exact     bool    `json:"exactly_once"` // every block at the sink once, in order
	Error     string  `json:"error,omitempty"`
}

// failoverFigures are the runs of one way of losing the worker.
type failoverFigures struct {
	Signal    string        `json:"signal"` // KILL or STOP
	Runs      []failoverRun `json:"runs"`
	Median    float64       `json:"median_recovered_ms"`
	Target    float64       `json:"target_ms"`
	MeetsGoal bool          `json:"meets_target"`
	Exact     int           `json:"exactly_once_runs"`
}

type failoverReport struct {
	Machine  benchMachine      `json:"machine"`
	Scenario string            `json:"scenario"`
	Blocks   int               `json:"blocks_per_run"`
	Results  []failoverFigures `json:"results"`
}

// benchFailover runs the failover scenario (it runs alone: its processes are its own).
func benchFailover(ctx context.Context, opts benchOptions, progress, out io.Writer) error {
	if len(opts.scenarios) > 1 {
		return cliutil.UsageError(fmt.Errorf("bench: %s runs alone (it starts a broker and workers of its own); name it without %s",
			scenarioFailover, strings.Join(slices.DeleteFunc(slices.Clone(opts.scenarios), func(s string) bool { return s == scenarioFailover }), ", ")))
	}
	if opts.broker != "" {
		return cliutil.UsageError(fmt.Errorf("bench: %s starts its own broker and workers; --broker does not apply", scenarioFailover))
	}
	runs := opts.runs
	if !opts.runsSet {
		runs = failoverDefaultRuns
	}
	brokerBin, workerBin, err := failoverBinaries()
	if err != nil {
		return cliutil.Failure(err)
	}
	fb := &failoverBench{brokerBin: brokerBin, workerBin: workerBin, progress: progress, verbose: opts.verbose, timeout: opts.timeout}
	defer fb.close()
	if err := fb.startBroker(ctx); err != nil {
		return cliutil.Failure(err)
	}
	rep := failoverReport{Machine: machine(), Scenario: scenarioFailover, Blocks: failoverBlocks}
	failed := 0
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		fig := failoverFigures{Signal: signalName(sig), Target: failoverMS(failoverTarget(sig))}
		var rec []time.Duration
		for i := 1; i <= runs; i++ {
			run := fb.run(ctx, sig, i)
			if run.Error != "" || !run.Exact {
				failed++
			}
			if run.Error == "" {
				rec = append(rec, time.Duration(run.Recovered*float64(time.Millisecond)))
			}
			if run.Exact {
				fig.Exact++
			}
			fig.Runs = append(fig.Runs, run)
			if ctx.Err() != nil {
				return cliutil.Failure(ctx.Err())
			}
		}
		if len(rec) > 0 {
			slices.Sort(rec)
			med := rec[len(rec)/2]
			fig.Median, fig.MeetsGoal = failoverMS(med), med < failoverTarget(sig) && len(rec) == runs
		}
		rep.Results = append(rep.Results, fig)
	}
	if opts.json {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = writeFailoverTable(out, rep)
	}
	if err != nil {
		return cliutil.Failure(err)
	}
	if failed > 0 {
		return cliutil.Failure(fmt.Errorf("bench: %d failover runs failed or were not exactly once (see the table)", failed))
	}
	return nil
}

func failoverTarget(sig syscall.Signal) time.Duration {
	if sig == syscall.SIGSTOP {
		return failoverFreezeTarget
	}
	return failoverKillTarget
}

func signalName(sig syscall.Signal) string {
	if sig == syscall.SIGSTOP {
		return "STOP"
	}
	return "KILL"
}

func failoverMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// failoverBinaries finds marvelo-broker and marvelo-worker beside this executable, else on PATH.
func failoverBinaries() (string, string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", "", fmt.Errorf("bench %s: %w", scenarioFailover, err)
	}
	find := func(name string) (string, error) {
		beside := filepath.Join(filepath.Dir(self), name)
		if st, err := os.Stat(beside); err == nil && !st.IsDir() {
			return beside, nil
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("bench %s: no %s beside %s nor on PATH (make build puts the three binaries in bin/)", scenarioFailover, name, self)
	}
	b, err := find("marvelo-broker")
	if err != nil {
		return "", "", err
	}
	w, err := find("marvelo-worker")
	return b, w, err
}

// failoverBench owns the processes of the scenario.
type failoverBench struct {
	brokerBin, workerBin string
	progress             io.Writer
	verbose              bool
	timeout              time.Duration

	dir    string
	url    string
	nc     *nats.Conn
	cl     *client.Client
	procs  []*benchProc
	broker *benchProc
}

// benchProc is one child process; done closes when it has exited.
type benchProc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

func (fb *failoverBench) start(name, bin string, args ...string) (*benchProc, error) {
	logf, err := os.Create(filepath.Join(fb.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &benchProc{name: name, cmd: exec.Command(bin, args...), log: logf, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if fb.verbose {
		w := io.MultiWriter(logf, prefixWriter{name, fb.progress})
		p.cmd.Stdout, p.cmd.Stderr = w, w
	}
	p.cmd.Dir = fb.dir
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench %s: start %s: %w", scenarioFailover, name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	fb.procs = append(fb.procs, p)
	return p, nil
}

// kill ends a process (a frozen one too) and waits for it.
func (p *benchProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.log.Close()
}

// tail returns the end of the process's log, for an error message.
func (p *benchProc) tail() string {
	b, err := os.ReadFile(p.log.Name())
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

type prefixWriter struct {
	name string
	w    io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(b), "\n") {
		if line != "" {
			fmt.Fprintf(p.w, "%s: %s", p.name, line)
		}
	}
	return len(b), nil
}

func (fb *failoverBench) close() {
	if fb.nc != nil {
		fb.nc.Close()
	}
	for _, p := range fb.procs {
		p.kill()
	}
	if fb.dir != "" {
		_ = os.RemoveAll(fb.dir)
	}
}

// startBroker starts marvelo-broker on a free loopback port (its LOCAL worker runs the sink) and
// the source's worker.
func (fb *failoverBench) startBroker(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "marvelo-bench-failover-*")
	if err != nil {
		return err
	}
	fb.dir = dir
	ports, err := freeport.Loopback(1) // a child process: its port is named in advance
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	fb.url = "nats://" + addr
	fmt.Fprintf(fb.progress, "failover: broker %s, blocks in %s\n", fb.url, dir)
	if fb.broker, err = fb.start("broker", fb.brokerBin, "--listen", addr, "--memory", "--workdir", filepath.Join(dir, "head")); err != nil {
		return err
	}
	fb.nc, err = nats.Connect(fb.url, nats.Name("marvelo bench failover"), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		return fmt.Errorf("bench %s: connect to the broker: %w", scenarioFailover, err)
	}
	fb.cl = client.New(fb.nc)
	if err := fb.waitWorker(ctx, "head"); err != nil {
		return err
	}
	_, err = fb.startWorker(ctx, "src", "src")
	return err
}

// startWorker starts a marvelo-worker in a group and waits until the broker lists it alive.
func (fb *failoverBench) startWorker(ctx context.Context, name, group string) (*benchProc, error) {
	p, err := fb.start(name, fb.workerBin, "--broker", fb.url, "--name", name, "--groups", group, "--slots", "2",
		"--workdir", filepath.Join(fb.dir, name))
	if err != nil {
		return nil, err
	}
	return p, fb.waitWorker(ctx, name)
}

// waitWorker polls the broker's worker list until name is alive (or the timeout).
func (fb *failoverBench) waitWorker(ctx context.Context, name string) error {
	return fb.poll(ctx, "worker "+name+" to register", func(ctx context.Context) (bool, error) {
		ws, err := fb.cl.Workers(ctx)
		if err != nil {
			return false, nil // the broker is not up yet
		}
		for _, w := range ws {
			if w.Name == name && w.Alive {
				return true, nil
			}
		}
		return false, nil
	})
}

// poll checks cond on a ticker until it holds, fails, or the bench's --timeout passes.
func (fb *failoverBench) poll(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, fb.timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := cond(rctx)
		rcancel()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			if fb.broker != nil {
				select {
				case <-fb.broker.done:
					return fmt.Errorf("bench %s: the broker exited:\n%s", scenarioFailover, fb.broker.tail())
				default:
				}
			}
			return fmt.Errorf("bench %s: waiting for %s: %w", scenarioFailover, what, ctx.Err())
		}
	}
}

// run measures one failover: two fresh workers of a group of their own, the forward placed on
// the first, which is killed or frozen once the forward has written failoverKillAfter blocks.
func (fb *failoverBench) run(ctx context.Context, sig syscall.Signal, i int) failoverRun {
	run := failoverRun{Run: i}
	tag := fmt.Sprintf("%s%d", strings.ToLower(signalName(sig)), i)
	name := "failover-" + tag
	fmt.Fprintf(fb.progress, "failover: %s run %d: ", signalName(sig), i)
	res, err := fb.measure(ctx, sig, tag, name, &run)
	if err != nil {
		run.Error = err.Error()
		fmt.Fprintf(fb.progress, "failed: %v\n", err)
		return run
	}
	run.Detected, run.Recovered, run.Why = failoverMS(res.Detected), failoverMS(res.Recovered), res.Why
	fmt.Fprintf(fb.progress, "sink again %s after the signal (worker lost at %s), exactly once: %v\n",
		res.Recovered.Round(time.Millisecond), res.Detected.Round(time.Millisecond), run.Exact)
	return run
}

func (fb *failoverBench) measure(ctx context.Context, sig syscall.Signal, tag, name string, run *failoverRun) (failoverkit.Result, error) {
	group := "fwd-" + tag
	victim, err := fb.startWorker(ctx, group+"-a", group)
	if err != nil {
		return failoverkit.Result{}, err
	}
	defer victim.kill()
	spare, err := fb.startWorker(ctx, group+"-b", group)
	if err != nil {
		return failoverkit.Result{}, err
	}
	defer spare.kill()
	out := filepath.Join(fb.dir, name+".csv")
	doc := fmt.Sprintf(`{"name": %q, "jobs": [
  {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "src"},
  {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": %q, "groups": [%q]},
  {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2], "groups": ["LOCAL"]}]}`,
		name, failoverBlocks, victim.name, group, out)
	probe, err := failoverkit.Watch(fb.nc, name, 2, 2)
	if err != nil {
		return failoverkit.Result{}, err
	}
	defer probe.Close()
	rctx, cancel := context.WithTimeout(ctx, fb.timeout)
	defer cancel()
	if _, err := fb.cl.Submit(rctx, []byte(doc), fb.dir); err != nil {
		return failoverkit.Result{}, fmt.Errorf("submit %s: %w", name, err)
	}
	if err := probe.WaitMessages(rctx, failoverKillAfter); err != nil {
		return failoverkit.Result{}, err
	}
	signalled := time.Now()
	if err := victim.cmd.Process.Signal(sig); err != nil {
		return failoverkit.Result{}, fmt.Errorf("signal %s: %w", victim.name, err)
	}
	res, err := probe.Recovery(rctx, signalled)
	if err != nil {
		return res, err
	}
	var st protocol.PipelineStatus
	err = fb.poll(rctx, name+" to finish", func(ctx context.Context) (bool, error) {
		sts, err := fb.cl.Status(ctx, name)
		if err != nil || len(sts) == 0 {
			return false, nil
		}
		st = sts[0]
		switch st.State {
		case protocol.StateFinished:
			return true, nil
		case protocol.StateFailed, protocol.StateStopped:
			return false, fmt.Errorf("pipeline %s %s: %s", name, st.State, st.Error)
		}
		return false, nil
	})
	if err != nil {
		return res, err
	}
	run.Exact, err = exactlyOnce(out, failoverBlocks)
	return res, err
}

// exactlyOnce reports whether a csv_sink's file holds 1..n, each once, in order; err says what
// differs.
func exactlyOnce(path string, n int) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) < 1 {
		return false, errors.New(path + ": empty")
	}
	rows := lines[1:] // the header
	if len(rows) != n {
		return false, fmt.Errorf("%s: %d rows, want %d", path, len(rows), n)
	}
	for i, r := range rows {
		if r != fmt.Sprint(i+1) {
			return false, fmt.Errorf("%s: row %d is %q, want %d", path, i+1, r, i+1)
		}
	}
	return true, nil
}

func writeFailoverTable(w io.Writer, rep failoverReport) error {
	fmt.Fprintf(w, "failover: counter → forward → csv_sink (%d blocks, 1 per ms), real processes; the forward's worker\n", rep.Blocks)
	fmt.Fprintf(w, "gets the signal after %d blocks; recovered = from the signal to the moved forward's first block\n", failoverKillAfter)
	fmt.Fprintf(w, "machine: %s, %d CPUs\n\n", rep.Machine.CPUModel, rep.Machine.CPUs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "signal\truns (recovered, ms)\tmedian\ttarget\tmet\texactly once\t")
	for _, f := range rep.Results {
		var runs []string
		for _, r := range f.Runs {
			if r.Error != "" {
				runs = append(runs, "failed")
				continue
			}
			runs = append(runs, fmt.Sprintf("%.0f", r.Recovered))
		}
		met := "no"
		if f.MeetsGoal {
			met = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f ms\t< %.0f ms\t%s\t%d/%d\t\n", f.Signal, strings.Join(runs, " "), f.Median, f.Target, met, f.Exact, len(f.Runs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range rep.Results {
		for _, r := range f.Runs {
			if r.Error != "" {
				fmt.Fprintf(w, "%s run %d failed: %s\n", f.Signal, r.Run, r.Error)
			}
		}
		if len(f.Runs) > 0 && f.Runs[0].Why != "" {
			fmt.Fprintf(w, "%s: the broker noticed: %s\n", f.Signal, f.Runs[0].Why)
		}
	}
	return nil
}
