package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Observability in pieces (issue 24): what marvelo workers, status and logs show.

func (c *cluster) workersJSON() map[string]protocol.WorkerStatus {
	c.t.Helper()
	out, errOut, code := c.marvelo("workers", "--json")
	if code != 0 {
		c.t.Fatalf("marvelo workers --json: exit %d: %s", code, errOut)
	}
	var ws []protocol.WorkerStatus
	if err := json.Unmarshal([]byte(out), &ws); err != nil {
		c.t.Fatalf("marvelo workers --json: %v\n%s", err, out)
	}
	m := map[string]protocol.WorkerStatus{}
	for _, w := range ws {
		m[w.Name] = w
	}
	return m
}

// TestWorkersAfterABrokerRestartShowWhenTheyWereReallyLastHeard: worker wa dies before the
// broker restarts, wb while it is down. The restarted broker shows wa's last heartbeat from
// before its death, not a time after the restart ("1.974s ago"), and wb's as unknown since the
// restart, also once it is declared dead. A worker's disk free is that of its file system, not 0.
func TestWorkersAfterABrokerRestartShowWhenTheyWereReallyLastHeard(t *testing.T) {
	c := newCluster(t, clusterOpts{store: true})
	c.startWorker("wa")
	c.startWorker("wb")
	if w := c.workersJSON()["wa"]; w.Metrics.DiskFree <= 0 {
		t.Errorf("worker wa reports %.1f%% disk free (its working directory is not made yet)", w.Metrics.DiskFree)
	}
	c.workers["wa"].kill()
	killed := time.Now()
	c.waitFor("wa to be declared dead", func() bool { return !c.workersJSON()["wa"].Alive })
	c.broker.kill()
	c.workers["wb"].kill()
	c.startBroker()
	ws := c.workersJSON()
	if wa := ws["wa"]; wa.Alive || wa.LastHeartbeat.IsZero() || wa.LastHeartbeat.After(killed) {
		t.Errorf("wa after the restart: alive %v, last heartbeat %s; want dead, heard before %s", wa.Alive, wa.LastHeartbeat, killed)
	}
	if wb := ws["wb"]; !wb.LastHeartbeat.IsZero() {
		t.Errorf("wb after the restart: last heartbeat %s, want unknown (zero)", wb.LastHeartbeat)
	}
	c.waitFor("wb to be declared dead", func() bool { return !c.workersJSON()["wb"].Alive })
	out, errOut, code := c.marvelo("workers")
	if code != 0 {
		t.Fatalf("marvelo workers: exit %d: %s", code, errOut)
	}
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "wb "):
			if !strings.Contains(l, "unknown since restart") {
				t.Errorf("wb: %q, want its last heartbeat unknown since restart", l)
			}
		case strings.HasPrefix(l, "wa "):
			if strings.Contains(l, "unknown") || !strings.Contains(l, " ago") {
				t.Errorf("wa: %q, want the time since its real last heartbeat", l)
			}
		}
	}
}

func jobStatus(st protocol.PipelineStatus, id int) protocol.JobStatus {
	for _, j := range st.Jobs {
		if j.ID == id {
			return j
		}
	}
	return protocol.JobStatus{}
}

// TestAMovedJobsCountsContinueFromItsOldInstance: the forward's worker is killed a third of the
// way; the forward moves and its blocks in and out go on from what its old instance last
// reported (they restarted from 0: the forward showed IN 16 while the sink behind it had 70).
func TestAMovedJobsCountsContinueFromItsOldInstance(t *testing.T) {
	const n = 3000
	c, before := moveAForward(t, n)
	st := waitFinished(c, "moves")
	fwd, sink := jobStatus(st, 2), jobStatus(st, 3)
	t.Logf("forward: in %d out %d (had %d before the move); sink: in %d", fwd.Stats.BlocksIn, fwd.Stats.BlocksOut, before, sink.Stats.BlocksIn)
	// The old instance's counts are those of its last heartbeat (every 200 ms here): what it
	// counted after that, up to its death, is not known to anyone.
	const lastMoments = 400
	if fwd.Stats.BlocksIn+lastMoments < n || fwd.Stats.BlocksOut+lastMoments < sink.Stats.BlocksIn || fwd.Restarts != 1 {
		t.Errorf("forward after its move: in %d, out %d, restarts %d; want in and out within %d of %d (every block, whichever instance counted it)",
			fwd.Stats.BlocksIn, fwd.Stats.BlocksOut, fwd.Restarts, lastMoments, n)
	}
}

// moveAForward runs counter(n) → forward → discard, the forward alone on worker wb, and kills
// wb once the forward has counted a third of the blocks; the forward moves to wc. It returns
// the forward's blocks in before the kill.
func moveAForward(t *testing.T, n int) (*cluster, uint64) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	c.startWorker("wb", "--groups", "f")
	doc := c.writeDoc("moves.json", fmt.Sprintf(`{"name": "moves", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "groups": ["f"]},
    {"id": 3, "type": "discard", "inputs": [2], "node": "wa"}]}`, n))
	c.submit(doc)
	c.waitFor("the forward to run on wb", func() bool { return jobWorker(c.status("moves"), 2) == "wb" })
	c.startWorker("wc", "--groups", "f")
	var before uint64
	c.waitFor("the forward to count a third of the blocks", func() bool {
		before = jobStatus(c.status("moves"), 2).Stats.BlocksIn
		return before >= uint64(n/3)
	})
	c.workers["wb"].kill()
	c.waitFor("the forward to move to wc", func() bool { return jobWorker(c.status("moves"), 2) == "wc" })
	return c, before
}

// TestLogsOfAJobShowItsLifecycle: marvelo logs PIPE --job 2 shows, among the forward's own
// lines and in order, that it was placed, that its worker was lost, that it moved and that it
// finished; the other jobs' events are not there.
func TestLogsOfAJobShowItsLifecycle(t *testing.T) {
	c, _ := moveAForward(t, 1500)
	waitFinished(c, "moves")
	out, errOut, code := c.marvelo("logs", "moves", "--job", "2")
	if code != 0 {
		t.Fatalf("marvelo logs moves --job 2: exit %d: %s", code, errOut)
	}
	at := 0
	for _, w := range []string{"forward 2 (event) | placed: ", "forward 2 (event) | worker lost: job 2: worker wb",
		"forward 2 (event) | moved: forward 2 moved from worker wb to worker wc", "forward 2 (event) | job finished: "} {
		i := strings.Index(out[at:], w)
		if i < 0 {
			t.Fatalf("marvelo logs --job 2 lacks %q after byte %d:\n%s", w, at, out)
		}
		at += i + len(w)
	}
	if !strings.Contains(out, "forward 2 wc | job finished") {
		t.Errorf("the forward's own log lines are missing:\n%s", out)
	}
	// Every line is job 2's: "TIME forward 2 WORKER|(event) | text". A line's text may name
	// other jobs (a job ending because its consumer discard 3 finished), its job may not.
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if fields := strings.Fields(line); len(fields) < 3 || fields[1] != "forward" || fields[2] != "2" {
			t.Errorf("marvelo logs --job 2 shows a line not job 2's: %q\n%s", line, out)
		}
	}
}
