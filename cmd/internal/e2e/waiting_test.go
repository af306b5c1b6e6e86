package e2e

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Waiting without end or reason (issue 24): a stop and a worker's exit wait only for what can
// still come.

// TestStopOfADegradedPipelineDoesNotWaitTheWholeGrace: the forward's only worker is gone, so the
// forward waits pending and the pipeline is degraded. The sink behind it can never drain (no end
// will ever come on its input): marvelo stop stops it at once instead of draining it for the
// whole grace (10 s), and says why.
func TestStopOfADegradedPipelineDoesNotWaitTheWholeGrace(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "a")
	c.startWorker("wb", "--groups", "b")
	doc := c.writeDoc("deg.json", `{"name": "deg", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "5ms"}, "outputs": [1], "groups": ["a"]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "groups": ["b"]},
    {"id": 3, "type": "discard", "inputs": [2], "groups": ["a"]}]}`)
	c.submit(doc)
	c.waitFor("the pipeline to run", func() bool { return c.status("deg").State == protocol.StateRunning })
	c.workers["wb"].kill()
	c.waitFor("the pipeline to be degraded", func() bool { return c.status("deg").State == protocol.StateDegraded })
	began := time.Now()
	_, errOut, code := c.marvelo("stop", "deg")
	took := time.Since(began)
	if code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	t.Logf("marvelo stop of a degraded pipeline took %s", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("marvelo stop took %s: it waited for a job that could not drain (grace 10s)", took.Round(time.Millisecond))
	}
	if strings.Contains(errOut, "did not drain in time") {
		t.Errorf("stop reports jobs stopped outright after the grace:\n%s", errOut)
	}
	st := c.status("deg")
	found := false
	for _, e := range st.Events {
		if e.Kind == "stopping" && strings.Contains(e.Message, "stopped at once, since a job that feeds them is not running: discard 3") {
			found = true
		}
	}
	if st.State != protocol.StateStopped || !found {
		t.Errorf("state %s; events %v", st.State, st.Events)
	}
}

// TestWorkerGivenSIGTERMWhileItsBrokerIsAwayExitsPromptly: with its broker gone, a worker told
// to stop has nobody to drain it, report its jobs' ends to or deregister from: it says so and
// exits within a couple of seconds (it took 17 s: a 15 s leave request, then a 2 s deregister).
func TestWorkerGivenSIGTERMWhileItsBrokerIsAwayExitsPromptly(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	w := c.startWorker("wa")
	doc := c.writeDoc("away.json", `{"name": "away", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "5ms"}, "outputs": [1]},
    {"id": 2, "type": "discard", "inputs": [1]}]}`)
	c.submit(doc)
	c.waitFor("the pipeline to run", func() bool { return c.status("away").State == protocol.StateRunning })
	c.broker.kill()
	began := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("the worker still runs 15s after SIGTERM with its broker away:\n%s", w.out.String())
	}
	took := time.Since(began)
	t.Logf("the worker exited %s after SIGTERM", took.Round(time.Millisecond))
	if took > 4*time.Second {
		t.Errorf("the worker took %s to exit with its broker away, want a few seconds at most", took.Round(time.Millisecond))
	}
	if code := w.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if !strings.Contains(w.out.String(), "broker is away") {
		t.Errorf("the worker did not say why it left without draining:\n%s", w.out.String())
	}
}
