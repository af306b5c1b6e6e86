package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The lifecycle around failover (issue 11): workers that leave are drained, pending jobs are
// placed when a worker fits, and stops end for certain.

// terminate sends SIGTERM to a worker and returns its exit code and how long it took to exit.
func terminate(t *testing.T, p *proc, limit time.Duration) (int, time.Duration) {
	t.Helper()
	began := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(limit):
		t.Fatalf("%s did not exit within %s of SIGTERM", p.name, limit)
	}
	return p.cmd.ProcessState.ExitCode(), time.Since(began)
}

// leaveGraceLimit bounds a leaving worker's exit: the leave grace, the moves, the deregistration.
const leaveGraceLimit = protocol.LeaveGrace + 10*time.Second

func checkDrainedBySIGTERM(t *testing.T, c *cluster, name, worker string, job, count int, out string) {
	t.Helper()
	code, took := terminate(t, c.workers[worker], leaveGraceLimit)
	if code != 0 {
		t.Fatalf("worker %s exited %d after SIGTERM, want 0", worker, code)
	}
	t.Logf("worker %s exited 0 %s after SIGTERM", worker, took.Round(time.Millisecond))
	st := waitFinished(c, name)
	checkExactlyOnce(t, out, count)
	ms := moves(st)
	if len(ms) != 1 || !strings.Contains(ms[0], fmt.Sprintf("job %d:", job)) || !strings.Contains(ms[0], "from worker "+worker) {
		t.Fatalf("moves: %v", ms)
	}
}

func TestSIGTERMOfAWorkerMovesItsConnectorExactlyOnce(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := chainDoc(c, "termfwd", 4000, [3]string{"wb", "wa", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 1000)
	checkDrainedBySIGTERM(t, c, "termfwd", "wa", 2, 4000, out)
}

func TestSIGTERMOfAWorkerMovesItsSourceExactlyOnce(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := chainDoc(c, "termsrc", 3000, [3]string{"wa", "wb", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 800)
	checkDrainedBySIGTERM(t, c, "termsrc", "wa", 1, 3000, out)
}

func TestSIGTERMOfAWorkerMovesItsExecutableJobExactlyOnce(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := execChainDoc(c, "termexec", 3000)
	c.submit(doc)
	waitRows(c, out, 800)
	checkDrainedBySIGTERM(t, c, "termexec", "wa", 2, 3000, out)
}

func workerStatus(c *cluster, name string) protocol.WorkerStatus {
	c.t.Helper()
	out, errOut, code := c.marvelo("workers", "--json")
	if code != 0 {
		c.t.Fatalf("marvelo workers: exit %d: %s", code, errOut)
	}
	var ws []protocol.WorkerStatus
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		c.t.Fatal(err)
	}
	for _, w := range ws {
		if w.Name == name {
			return w
		}
	}
	c.t.Fatalf("no worker %s in %s", name, out)
	return protocol.WorkerStatus{}
}

func TestDrainMovesTheJobsAndUncordonLetsTheWorkerTakeJobsAgain(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "g")
	c.startWorker("wb", "--groups", "g")
	c.startWorker("wc")
	doc, out := chainDoc(c, "drained", 4000, [3]string{"wc", "", "wc"}, [3]string{"", "g", ""})
	c.submit(doc)
	waitRows(c, out, 800)
	from := jobWorker(c.status("drained"), 2)
	other := map[string]string{"wa": "wb", "wb": "wa"}[from]
	if other == "" {
		t.Fatalf("job 2 on %q, want wa or wb", from)
	}
	stdout, errOut, code := c.marvelo("drain", from)
	if code != 0 {
		t.Fatalf("marvelo drain %s: exit %d: %s%s", from, code, stdout, errOut)
	}
	if !strings.Contains(errOut, "forward 2") {
		t.Errorf("drain output does not name the moved job:\n%s", errOut)
	}
	if w := workerStatus(c, from); !w.Alive || !w.Cordoned {
		t.Fatalf("worker %s after drain: alive %v, cordoned %v; want alive and cordoned", from, w.Alive, w.Cordoned)
	}
	st := waitFinished(c, "drained")
	checkExactlyOnce(t, out, 4000)
	if got := jobWorker(st, 2); got != other {
		t.Fatalf("job 2 ended on %s, want %s", got, other)
	}
	// Cordoned, it takes no new job: a pipeline pinned to it waits pending.
	pinned, pinnedOut := chainDoc(c, "pinned", 200, [3]string{"wc", from, "wc"}, [3]string{"", "g", ""})
	if _, _, code := c.marvelo("drain", other); code != 0 {
		t.Fatalf("marvelo drain %s: exit %d", other, code)
	}
	c.submit(pinned)
	if s := c.status("pinned"); s.State != protocol.StatePending {
		t.Fatalf("pipeline on cordoned workers: %s, want pending", s.State)
	}
	if _, errOut, code := c.marvelo("uncordon", from); code != 0 {
		t.Fatalf("marvelo uncordon %s: exit %d: %s", from, code, errOut)
	}
	st = waitFinished(c, "pinned")
	checkExactlyOnce(t, pinnedOut, 200)
	if got := jobWorker(st, 2); got != from {
		t.Fatalf("job 2 of pinned ran on %s, want the uncordoned %s", got, from)
	}
}

// TestThawedOnlyWorkerOfAGroupGetsItsJobBack freezes the only worker of a source's group until
// it is declared dead; the source waits pending, and on the thaw it is placed again (the stale
// instance is told to stop) and the pipeline finishes exactly once.
func TestThawedOnlyWorkerOfAGroupGetsItsJobBack(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	wa := c.startWorker("wa", "--groups", "src")
	c.startWorker("wb")
	doc, out := chainDoc(c, "thaw", 3000, [3]string{"", "wb", "wb"}, [3]string{"src", "", ""})
	c.submit(doc)
	waitRows(c, out, 500)
	if err := wa.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the source to wait pending", func() bool {
		st := c.status("thaw")
		return st.State == protocol.StateDegraded && jobState(st, 1) == protocol.StatePending
	})
	if err := wa.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	st := waitFinished(c, "thaw")
	checkExactlyOnce(t, out, 3000)
	if jobWorker(st, 1) != "wa" {
		t.Fatalf("source ended on %q, want wa", jobWorker(st, 1))
	}
	if !hasEvent(st, "stale instance") {
		t.Errorf("no event for the stale instance the thawed worker still ran: %v", eventKinds(st))
	}
}

func jobState(st protocol.PipelineStatus, id int) string {
	for _, j := range st.Jobs {
		if j.ID == id {
			return j.State
		}
	}
	return ""
}

func hasEvent(st protocol.PipelineStatus, kind string) bool {
	for _, e := range st.Events {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

func eventKinds(st protocol.PipelineStatus) []string {
	var ks []string
	for _, e := range st.Events {
		ks = append(ks, e.Kind)
	}
	return ks
}

func TestPipelineWithAnOptionalInputFinishes(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	doc := c.writeDoc("opt.json", `{"name":"opt","jobs":[{"id":1,"type":"counter","args":{"count":5},"outputs":[1]},{"id":2,"type":"discard","inputs":[1]}],"pipes":[{"id":1,"optional":{"default":0}}]}`)
	if _, errOut, code := c.marvelo("submit", doc, "--wait"); code != 0 {
		t.Fatalf("submit --wait: exit %d: %s", code, errOut)
	}
	if st := c.status("opt"); st.State != protocol.StateFinished {
		t.Fatalf("state %s, want finished", st.State)
	}
}

// TestStopOfAStuckJobNamesTheForcedJob stops a pipeline whose executable never ends: the drain
// ends at the grace, the job is stopped outright and named, the pipeline ends stopped, and while
// the stop is under way a submit of the same name is refused with the reason.
func TestStopOfAStuckJobNamesTheForcedJob(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	dir := filepath.Join(c.dir, "stuck")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stuck.sh"), []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := c.writeDoc("stuck.json", `{"name": "stuck", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "10ms"}, "outputs": [1]},
    {"id": 2, "exec": {"path": "./stuck.sh", "dependencies": "stuck"}, "inputs": [1]}],
  "pipes": [{"id": 1, "codec": "json"}]}`)
	c.submit(doc)
	c.waitFor("the stuck job to run", func() bool { return jobState(c.status("stuck"), 2) == protocol.StateRunning })
	type result struct {
		errOut string
		code   int
		took   time.Duration
	}
	done := make(chan result, 1)
	began := time.Now()
	go func() {
		_, errOut, code := c.marvelo("stop", "stuck", "--grace", "3s")
		done <- result{errOut, code, time.Since(began)}
	}()
	c.waitFor("the pipeline to be stopping", func() bool { return c.status("stuck").State == protocol.StateStopping })
	_, errOut, code := c.marvelo("submit", doc)
	if code == 0 || !strings.Contains(errOut, "still stopping") {
		t.Errorf("submit while stopping: exit %d: %s; want a refusal naming the state", code, errOut)
	}
	r := <-done
	if r.code != 0 {
		t.Fatalf("stop: exit %d: %s", r.code, r.errOut)
	}
	if !strings.Contains(r.errOut, "stopped outright") || !strings.Contains(r.errOut, "stuck.sh 2") {
		t.Errorf("stop output does not name the forced job:\n%s", r.errOut)
	}
	if r.took > 3*time.Second+protocol.StopKillWait+5*time.Second {
		t.Errorf("stop took %s", r.took)
	}
	if st := c.status("stuck"); st.State != protocol.StateStopped {
		t.Fatalf("after stop: %s, want stopped", st.State)
	}
	// Ended, the name may be submitted again.
	c.submit(doc)
	if _, errOut, code := c.marvelo("stop", "stuck", "--force"); code != 0 {
		t.Fatalf("stop --force: exit %d: %s", code, errOut)
	}
}

func TestDocumentRefusedAtSubmitLeavesNoPipeline(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	doc := c.writeDoc("refused.json", `{"name": "refused", "jobs": [
    {"id": 1, "type": "counter", "args": {"cuont": 3}, "outputs": [1]},
    {"id": 2, "type": "discard", "inputs": [1]}]}`)
	_, errOut, code := c.marvelo("submit", doc)
	if code != 2 || !strings.Contains(errOut, `unknown arg "cuont"`) {
		t.Fatalf("submit: exit %d: %s; want 2 naming the arg", code, errOut)
	}
	_, errOut, code = c.marvelo("status", "refused")
	if code == 0 || !strings.Contains(errOut, `no pipeline named "refused"`) {
		t.Fatalf("status of the refused pipeline: exit %d: %s", code, errOut)
	}
}

var readyTimeRE = regexp.MustCompile(`time=(\S+) level=INFO msg="broker ready"`)

// TestBrokerKilledAndRestartedResumesWithinTwoSeconds kills the broker (-9) mid-stream and
// restarts it on the same --store: the sink advances again within 2 s of the broker's ready
// line (the deliveries in flight come again at once, not after the ack wait), exactly once.
func TestBrokerKilledAndRestartedResumesWithinTwoSeconds(t *testing.T) {
	c := newCluster(t, clusterOpts{store: true})
	c.startWorker("w1", "--slots", "4")
	out := filepath.Join(c.dir, "resume.csv")
	doc := c.writeDoc("resume.json", fmt.Sprintf(`{"name": "resume", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 800, "interval": "5ms"}, "outputs": [1]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2]}]}`, out))
	c.submit(doc)
	waitRows(c, out, 100)
	c.broker.kill()
	before := len(readLinesIfAny(out))
	c.startBroker()
	m := readyTimeRE.FindStringSubmatch(c.broker.out.String())
	if m == nil {
		t.Fatalf("no ready line in the restarted broker's output")
	}
	ready, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the sink to advance after the restart", func() bool { return len(readLinesIfAny(out)) > before })
	took := time.Since(ready)
	t.Logf("the sink advanced %s after the broker's ready line", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the sink advanced %s after the broker was ready, want under 2s", took.Round(time.Millisecond))
	}
	waitFinished(c, "resume")
	checkExactlyOnce(t, out, 800)
}

func TestLogsShowTheLatestRunOrTheOneAskedForAndRefuseAnUnknownName(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	for _, n := range []int{3, 5} {
		doc := c.writeDoc("logrun.json", fmt.Sprintf(`{"name": "logrun", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d}, "outputs": [1]},
    {"id": 2, "type": "discard", "inputs": [1]}]}`, n))
		if _, errOut, code := c.marvelo("submit", doc, "--wait"); code != 0 {
			t.Fatalf("submit --wait: exit %d: %s", code, errOut)
		}
	}
	st := c.status("logrun")
	if st.Run != 2 || len(st.Runs) != 2 {
		t.Fatalf("run %d, runs %v; want run 2 of 2", st.Run, st.Runs)
	}
	latest, errOut, code := c.marvelo("logs", "logrun")
	if code != 0 || !strings.Contains(latest, "blocks=5") || strings.Contains(latest, "blocks=3") {
		t.Fatalf("logs (latest run): exit %d: %s\n%s", code, errOut, latest)
	}
	first, errOut, code := c.marvelo("logs", "logrun", "--run", "1")
	if code != 0 || !strings.Contains(first, "blocks=3") || strings.Contains(first, "blocks=5") {
		t.Fatalf("logs --run 1: exit %d: %s\n%s", code, errOut, first)
	}
	_, errOut, code = c.marvelo("logs", "nosuchpipe")
	if code != 1 || !strings.Contains(errOut, `no pipeline named "nosuchpipe"`) {
		t.Fatalf("logs nosuchpipe: exit %d: %s", code, errOut)
	}
}

func TestLogsFollowEndsOnSIGINTAndAtTheEndOfTheRun(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	endless := c.writeDoc("endless.json", `{"name": "endless", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "5ms"}, "outputs": [1]},
    {"id": 2, "type": "discard", "inputs": [1]}]}`)
	c.submit(endless)
	follow := start(t, "logs -f endless", "marvelo", c.operatorArgs("logs", "endless", "-f")...)
	c.waitFor("the job to run", func() bool { return jobState(c.status("endless"), 2) == protocol.StateRunning })
	c.waitFor("logs -f to follow", func() bool { return strings.Contains(follow.out.String(), "following the logs") })
	began := time.Now()
	if err := follow.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-follow.done:
		t.Logf("logs -f ended %s after SIGINT", time.Since(began).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatalf("logs -f still running 5s after SIGINT")
	}
	if code := follow.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("logs -f exit %d after SIGINT, want 0", code)
	}
	// Following a run that ends: the command ends with it, having printed its last lines.
	follow = start(t, "logs -f endless", "marvelo", c.operatorArgs("logs", "endless", "-f")...)
	c.waitFor("logs -f to follow", func() bool { return strings.Contains(follow.out.String(), "following the logs") })
	if _, errOut, code := c.marvelo("stop", "endless"); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	select {
	case <-follow.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("logs -f still running 15s after the run ended")
	}
	if code := follow.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(follow.out.String(), "discard summary") {
		t.Fatalf("logs -f at the end of the run: exit %d, output:\n%s", code, follow.out.String())
	}
}
