package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// chainDoc is counter → forward → forward → csv_sink (LOCAL), with the first three jobs pinned to
// workers by node and extra groups for each job.
func chainDoc(c *cluster, name string, count int, nodes [3]string, groups [3]string) (string, string) {
	out := filepath.Join(c.dir, name+".csv")
	g := func(i int) string {
		if groups[i] == "" {
			return ""
		}
		return fmt.Sprintf(`, "groups": [%q]`, groups[i])
	}
	doc := c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": %q%s},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": %q%s},
    {"id": 3, "type": "forward", "inputs": [2], "outputs": [3], "node": %q%s},
    {"id": 4, "type": "csv_sink", "args": {"path": %q}, "inputs": [3], "groups": ["LOCAL"]}]}`,
		name, count, nodes[0], g(0), nodes[1], g(1), nodes[2], g(2), out))
	return doc, out
}

// execChainDoc is counter (on wb) → the executable sum.sh shipped as dependencies (on wa) →
// forward (on wc) → csv_sink (LOCAL), on json pipes.
func execChainDoc(c *cluster, name string, count int) (string, string) {
	c.addDependencies("sum", "sum.sh")
	out := filepath.Join(c.dir, name+".csv")
	doc := c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "wb"},
    {"id": 2, "exec": {"path": "./sum.sh", "params": ["--add", "0"], "dependencies": "sum"}, "inputs": [1], "outputs": [2], "node": "wa"},
    {"id": 3, "type": "forward", "inputs": [2], "outputs": [3], "node": "wc"},
    {"id": 4, "type": "csv_sink", "args": {"path": %q}, "inputs": [3], "groups": ["LOCAL"]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`, name, count, out))
	return doc, out
}

// checkExactlyOnce asserts the CSV holds 1..n, each once, in order.
func checkExactlyOnce(t *testing.T, path string, n int) {
	t.Helper()
	lines := readLines(t, path)
	if len(lines) != n+1 {
		seen := map[string]int{}
		for _, l := range lines[1:] {
			seen[l]++
		}
		var dups, missing []string
		for i := 1; i <= n; i++ {
			switch seen[fmt.Sprint(i)] {
			case 0:
				missing = append(missing, fmt.Sprint(i))
			case 1:
			default:
				dups = append(dups, fmt.Sprint(i))
			}
		}
		t.Fatalf("%d rows, want %d; missing %d (%s), duplicated %d (%s)", len(lines)-1, n, len(missing), head(missing), len(dups), head(dups))
	}
	for i, l := range lines[1:] {
		if l != fmt.Sprint(i+1) {
			t.Fatalf("row %d = %q, want %d", i+1, l, i+1)
		}
	}
}

func head(xs []string) string {
	if len(xs) > 10 {
		return strings.Join(xs[:10], ",") + ",…"
	}
	return strings.Join(xs, ",")
}

var movedRE = regexp.MustCompile(`moved from worker (\S+) to worker (\S+), (\S+) after detection`)

// moves returns the "moved" events of a pipeline: job, from, to, time since detection.
func moves(st protocol.PipelineStatus) []string {
	var out []string
	for _, e := range st.Events {
		if e.Kind == "moved" {
			out = append(out, fmt.Sprintf("job %d: %s", e.Job, e.Message))
		}
	}
	return out
}

func recoveryTimes(t *testing.T, st protocol.PipelineStatus) []time.Duration {
	t.Helper()
	var ds []time.Duration
	for _, e := range st.Events {
		if m := movedRE.FindStringSubmatch(e.Message); m != nil {
			d, err := time.ParseDuration(m[3])
			if err != nil {
				t.Fatalf("event %q: %v", e.Message, err)
			}
			ds = append(ds, d)
		}
	}
	return ds
}

func waitRows(c *cluster, path string, n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(readLinesIfAny(path)) <= n {
		if time.Now().After(deadline) {
			// Which job and which pipe stopped: each job's counters and each pipe's lag.
			top, topErr, _ := c.marvelo("top", "--once")
			c.t.Fatalf("timed out after 30s waiting for %d rows in %s (%d there)\n--- marvelo top --once:\n%s%s",
				n, filepath.Base(path), len(readLinesIfAny(path)), top, topErr)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-c.t.Context().Done():
			c.t.Fatalf("test ended waiting for %d rows in %s", n, filepath.Base(path))
		}
	}
}

func waitFinished(c *cluster, name string) protocol.PipelineStatus {
	var st protocol.PipelineStatus
	testkit.WaitFor(c.t, 60*time.Second, name+" to finish", func() bool {
		st = c.status(name)
		if st.State == protocol.StateFailed {
			c.t.Fatalf("pipeline %s failed: %s\n%s", name, st.Error, strings.Join(moves(st), "\n"))
		}
		return st.State == protocol.StateFinished
	})
	return st
}

func TestFailoverKilledConnectorLosesNothing(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := chainDoc(c, "kill", 5000, [3]string{"wb", "wa", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 1500)
	c.workers["wa"].kill()
	st := waitFinished(c, "kill")
	checkExactlyOnce(t, out, 5000)
	ms := moves(st)
	if len(ms) != 1 || !strings.Contains(ms[0], "from worker wa") {
		t.Fatalf("moves: %v", ms)
	}
	rec := recoveryTimes(t, st)
	t.Logf("recovery (detection → running on the new worker): %v", rec)
	if rec[0] > 2*time.Second {
		t.Errorf("recovery took %v, want under 2s", rec[0])
	}
}

func TestFailoverKilledSourceResumesFromItsCheckpoint(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := chainDoc(c, "source", 3000, [3]string{"wa", "wb", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 1000)
	c.workers["wa"].kill()
	st := waitFinished(c, "source")
	checkExactlyOnce(t, out, 3000)
	if ms := moves(st); len(ms) != 1 || !strings.Contains(ms[0], "job 1") {
		t.Fatalf("moves: %v", ms)
	}
}

func TestFrozenWorkerIsReplacedAndStopsItsStaleJobs(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := chainDoc(c, "frozen", 3000, [3]string{"wb", "wa", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 800)
	wa := c.workers["wa"]
	if err := wa.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the job to move", func() bool { return len(moves(c.status("frozen"))) > 0 })
	if err := wa.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFinished(c, "frozen")
	checkExactlyOnce(t, out, 3000)
	// The thawed worker's instance of job 2 (epoch 1) is told to stop, or is fenced off when it
	// publishes: either way that instance, and no other, ends on wa.
	stale := regexp.MustCompile(`msg="job ended" worker=wa pipeline=frozen job=2 epoch=1 state=stopped|msg="job failed" worker=wa pipeline=frozen job=2 epoch=1 error=.*another instance of this job publishes`)
	c.waitFor("the thawed worker to end its stale instance of job 2", func() bool { return stale.MatchString(wa.out.String()) })
}

func TestDegradedUntilAFittingWorkerJoins(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "special")
	c.startWorker("wb")
	doc, out := chainDoc(c, "degraded", 2000, [3]string{"wb", "", "wb"}, [3]string{"", "special", ""})
	c.submit(doc)
	waitRows(c, out, 300)
	c.workers["wa"].kill()
	c.waitFor("the pipeline to be degraded", func() bool { return c.status("degraded").State == protocol.StateDegraded })
	st := c.status("degraded")
	if !strings.Contains(st.Reason, "special") {
		t.Errorf("degraded without naming the group: %q", st.Reason)
	}
	c.startWorker("wd", "--groups", "special")
	waitFinished(c, "degraded")
	checkExactlyOnce(t, out, 2000)
}

// TestFailureInjection kills a worker hosting one of the jobs at a random point, round after
// round (seeded), and checks every block arrives exactly once each time.
func TestFailureInjection(t *testing.T) {
	const rounds, count = 5, 1500
	rng := rand.New(rand.NewPCG(7, 11))
	c := newCluster(t, clusterOpts{})
	for _, w := range []string{"w1", "w2", "w3"} {
		c.startWorker(w, "--slots", "4")
	}
	spare := 4
	var table []string
	for r := 1; r <= rounds; r++ {
		name := fmt.Sprintf("inject%d", r)
		var alive []string
		for n := range c.workers {
			if c.workerAlive(n) {
				alive = append(alive, n)
			}
		}
		sort.Strings(alive)
		nodes := [3]string{alive[rng.IntN(len(alive))], alive[rng.IntN(len(alive))], alive[rng.IntN(len(alive))]}
		doc, out := chainDoc(c, name, count, nodes, [3]string{})
		c.submit(doc)
		victimJob := rng.IntN(3)
		victim := nodes[victimJob]
		waitRows(c, out, 100+rng.IntN(count/2))
		c.workers[victim].kill()
		delete(c.workers, victim)
		st := waitFinished(c, name)
		checkExactlyOnce(t, out, count)
		for _, d := range recoveryTimes(t, st) {
			table = append(table, fmt.Sprintf("round %d  killed %-4s (job %d)  recovery %v", r, victim, victimJob+1, d))
		}
		c.startWorker(fmt.Sprintf("w%d", spare), "--slots", "4")
		spare++
	}
	t.Logf("failure injection, %d rounds of %d blocks, every block exactly once:\n%s", rounds, count, strings.Join(table, "\n"))
}

// TestExecutableJobAcrossWorkersMovesWithItsDependencies submits a pipeline mixing Go jobs and an
// executable (shipped as dependencies by `marvelo submit`), kills the worker running the
// executable, and checks it moves — fetching its dependencies again — losing nothing.
func TestExecutableJobAcrossWorkersMovesWithItsDependencies(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorkers("wa", "wb", "wc")
	doc, out := execChainDoc(c, "mixed", 3000)
	c.submit(doc)
	waitRows(c, out, 1000)
	c.workers["wa"].kill()
	st := waitFinished(c, "mixed")
	checkExactlyOnce(t, out, 3000)
	if ms := moves(st); len(ms) != 1 || !strings.Contains(ms[0], "job 2") {
		t.Fatalf("moves: %v", ms)
	}
}

// TestSourceWithoutCheckpointRestartsWithTheResetBit kills the worker of a source that keeps no
// checkpoint (clock): as in MARVELO it restarts from the beginning with the reset bit, which the
// sink downstream sees (a program recording its heads), the job between realigns — one dummy
// round — and the pipeline still ends.
func TestSourceWithoutCheckpointRestartsWithTheResetBit(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	c.startWorker("wb")
	c.addDependencies("proto", "proto.py")
	rec := filepath.Join(c.dir, "clock.jsonl")
	doc := c.writeDoc("clock.json", fmt.Sprintf(`{"name": "clock", "jobs": [
    {"id": 1, "type": "clock", "args": {"count": 3000, "interval": "2ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "wb"},
    {"id": 3, "exec": {"path": "./proto.py", "params": ["--head", "--record", %q], "dependencies": "proto"},
     "inputs": [2], "head": true, "groups": ["LOCAL"]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`, rec))
	c.submit(doc)
	waitRows(c, rec, 300)
	c.workers["wa"].kill()
	st := waitFinished(c, "clock")
	var fwd protocol.JobStatus
	for _, j := range st.Jobs {
		if j.ID == 2 {
			fwd = j
		}
	}
	if fwd.Stats.Dummies < 1 {
		t.Errorf("forward made %d dummies; a reset costs one dummy round", fwd.Stats.Dummies)
	}
	// The sink saw the reset bit (0x40) on the first block and again where the source restarted.
	_, heads := protoRounds(t, rec)
	var resets []int
	for i, h := range heads {
		if h[0]&0x40 != 0 {
			resets = append(resets, i)
		}
	}
	if len(resets) != 2 || resets[0] != 0 {
		t.Errorf("reset bits at rounds %v of %d, want the first and the restart", resets, len(heads))
	}
	// Everything before the kill, then the whole restarted sequence (and its dummy round).
	if len(heads) < 3000+300 {
		t.Errorf("%d rows: the restarted source did not run to its end", len(heads))
	}
}
