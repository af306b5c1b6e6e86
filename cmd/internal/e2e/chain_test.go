package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Chains (issue 25): jobs joined by a pipe whose two ends the broker placed on one worker pass
// their blocks in that worker's process, and stay exact when it dies: the chain moves as a whole
// and resumes from its first inputs.

// chainedDoc is counter → forward → forward (all three in group dsp, no node: placement puts
// each beside its producer) → csv_sink on the head node.
func chainedDoc(c *cluster, name string, count int, extra string) (string, string) {
	out := filepath.Join(c.dir, name+".csv")
	doc := c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "groups": ["dsp"]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "groups": ["dsp"]%s},
    {"id": 3, "type": "forward", "inputs": [2], "outputs": [3], "groups": ["dsp"]},
    {"id": 4, "type": "csv_sink", "args": {"path": %q}, "inputs": [3], "groups": ["LOCAL"]}]}`,
		name, count, extra, out))
	return doc, out
}

// waitChained waits until pipes 1 and 2 are chained, with jobs 1 to 3 on one worker, and returns it.
func waitChained(c *cluster, name string) string {
	c.t.Helper()
	var st protocol.PipelineStatus
	c.waitFor("pipes 1 and 2 of "+name+" to be chained", func() bool {
		st = c.status(name)
		return reflect.DeepEqual(st.Chained, []int{1, 2})
	})
	w := jobStatus(st, 1).Worker
	for id := 2; id <= 3; id++ {
		if got := jobStatus(st, id).Worker; got != w {
			c.t.Fatalf("job %d runs on %s, job 1 on %s: a chained pipe joins two workers", id, got, w)
		}
	}
	return w
}

// chainKillRounds is how many seeded kills TestAChainOnAKilledWorkerMovesAsAWholeAndTheSinkIsExact
// makes (MARVELO_CHAIN_KILLS; make test-chaos makes 5).
func chainKillRounds(t *testing.T) int {
	if v := os.Getenv("MARVELO_CHAIN_KILLS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("MARVELO_CHAIN_KILLS=%q: want a positive number", v)
		}
		return n
	}
	return 1
}

func TestAChainOnAKilledWorkerMovesAsAWholeAndTheSinkIsExact(t *testing.T) {
	checkChainMovesWhole(t, "SIGKILL", func(p *proc) { p.kill() })
}

func TestAChainOnAWorkerStoppedBySIGTERMMovesAsAWholeAndTheSinkIsExact(t *testing.T) {
	checkChainMovesWhole(t, "SIGTERM", func(p *proc) { p.stop() })
}

// checkChainMovesWhole ends the worker of a chain mid-stream (end), at a seeded point, and
// checks the chain moved as a whole, formed again on the other worker, and the sink is exact.
func checkChainMovesWhole(t *testing.T, how string, end func(*proc)) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MARVELO_CHAIN_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (MARVELO_CHAIN_SEED repeats it)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	const count = 4000
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "dsp", "--slots", "4")
	c.startWorker("wb", "--groups", "dsp", "--slots", "4")
	for round := 1; round <= chainKillRounds(t); round++ {
		name := fmt.Sprintf("chain%d", round)
		doc, out := chainedDoc(c, name, count, "")
		c.submit(doc)
		victim := waitChained(c, name)
		at := 200 + rng.IntN(count-1700)
		waitRows(c, out, at)
		end(c.workers[victim])
		t.Logf("round %d: %s of %s (the chain's worker) after %d rows", round, how, victim, at)
		// Moved as a whole, the chain forms again on the new worker (jobs moved one by one would
		// each get an epoch of their own and go through the broker). The source paces 1 block a
		// millisecond, so the chain runs on for over a second after its move.
		var moved protocol.PipelineStatus
		c.waitFor("the chain to run again, chained", func() bool {
			moved = c.status(name)
			return moved.State == protocol.StateFinished || (len(moves(moved)) == 3 && reflect.DeepEqual(moved.Chained, []int{1, 2}))
		})
		if moved.State == protocol.StateFinished {
			t.Errorf("round %d: the pipeline finished before its moved chain was seen chained again (moves %v)", round, moves(moved))
		}
		st := waitFinished(c, name)
		checkExactlyOnce(t, out, count)
		ms := moves(st)
		if len(ms) != 3 {
			t.Fatalf("round %d: moves %v; want jobs 1, 2 and 3 moved", round, ms)
		}
		to := map[string]bool{}
		for _, m := range movedRE.FindAllStringSubmatch(strings.Join(ms, "\n"), -1) {
			if m[1] != victim {
				t.Errorf("round %d: a job moved from %s, not from the ended %s: %v", round, m[1], victim, ms)
			}
			to[m[2]] = true
		}
		if len(to) != 1 {
			t.Errorf("round %d: the chain's jobs moved to %v; want one worker (they move as a whole)", round, to)
		}
		c.startWorker(victim, "--groups", "dsp", "--slots", "4") // for the next round
	}
}

func TestASpreadJobIsNeitherChainedNorPlacedBesideItsProducer(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "dsp", "--slots", "4")
	c.startWorker("wb", "--groups", "dsp", "--slots", "4")
	doc, out := chainedDoc(c, "spread", 300, `, "spread": true`)
	c.submit(doc)
	var st protocol.PipelineStatus
	c.waitFor("the jobs to run", func() bool {
		st = c.status("spread")
		return st.State == protocol.StateRunning && jobStatus(st, 3).Worker != ""
	})
	if text, errOut, code := c.marvelo("status", "spread"); code != 0 || !strings.Contains(text, "chained pipes (blocks pass in the worker's process): 2\n") {
		t.Errorf("marvelo status spread: exit %d: %s\n%s; want the line naming chained pipe 2", code, errOut, text)
	}
	if reflect.DeepEqual(st.Chained, []int{1, 2}) || slices.Contains(st.Chained, 1) {
		t.Errorf("chained pipes %v: pipe 1 goes into the spread job 2 and must not be chained", st.Chained)
	}
	if w1, w2 := jobStatus(st, 1).Worker, jobStatus(st, 2).Worker; w1 == w2 {
		t.Errorf("the spread job 2 runs beside its producer on %s, with another worker of its group free", w1)
	}
	if w2, w3 := jobStatus(st, 2).Worker, jobStatus(st, 3).Worker; w2 != w3 || !slices.Contains(st.Chained, 2) {
		t.Errorf("job 3 (not spread) runs on %s, its producer job 2 on %s, chained %v; want it beside job 2, pipe 2 chained", w3, w2, st.Chained)
	}
	waitFinished(c, "spread")
	checkExactlyOnce(t, out, 300)
}

func TestAJobWithARestartPolicyIsNotChainedAndRestartsAloneWithTheSinkExact(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "dsp", "--slots", "4")
	marker := filepath.Join(c.dir, "failed-once")
	dir := filepath.Join(c.dir, "flaky")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flaky.sh"), []byte(flakySh), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(c.dir, "restart.csv")
	doc := c.writeDoc("restart.json", fmt.Sprintf(`{"name": "restart", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 40, "interval": "5ms"}, "outputs": [1], "groups": ["dsp"]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "groups": ["dsp"]},
    {"id": 3, %s, "inputs": [2], "outputs": [3], "groups": ["dsp"],
     "restart": {"policy": "on-failure", "max": 3, "backoff": "100ms"}},
    {"id": 4, "type": "forward", "inputs": [3], "outputs": [4], "groups": ["dsp"]},
    {"id": 5, "type": "csv_sink", "args": {"path": %q}, "inputs": [4], "groups": ["LOCAL"]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}, {"id": 3, "codec": "json"}, {"id": 4, "codec": "json"}]}`,
		flakyExec("once", marker), out))
	c.submit(doc)
	var chained []int
	c.waitFor("the pipeline to run or end", func() bool {
		st := c.status("restart")
		chained = st.Chained
		return len(st.Chained) > 0 || protocol.Terminal(st.State)
	})
	if !reflect.DeepEqual(chained, []int{1}) {
		t.Errorf("chained pipes %v; want [1] only: pipes 2 and 3 join job 3, which has a restart policy", chained)
	}
	st := waitFinished(c, "restart")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("job 3 never ran its failing first run: %v", err)
	}
	checkExactlyOnce(t, out, 40)
	if r := eventsOf(st, "restarted"); len(r) != 1 || !strings.Contains(r[0], "flaky.sh 3 restarted on worker wa") {
		t.Errorf("restarted events %q; want job 3 restarted once", r)
	}
	if m := moves(st); len(m) != 0 {
		t.Errorf("moves %v; a restart of job 3 moves no other job", m)
	}
}

func TestAFrozenChainIsReplacedAndTheSinkIsExact(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "dsp", "--slots", "4")
	c.startWorker("wb", "--groups", "dsp", "--slots", "4")
	doc, out := chainedDoc(c, "frozenchain", 3000, "")
	c.submit(doc)
	victim := waitChained(c, "frozenchain")
	waitRows(c, out, 800)
	p := c.workers[victim]
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the chain to move", func() bool { return len(moves(c.status("frozenchain"))) == 3 })
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFinished(c, "frozenchain")
	checkExactlyOnce(t, out, 3000)
}
