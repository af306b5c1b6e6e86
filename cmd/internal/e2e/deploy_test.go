package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func TestPlacementByGroupsAndNode(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("w1", "--groups", "dsp")
	c.startWorker("w2", "--groups", "mic")
	c.startWorker("w3")
	doc := c.writeDoc("placed.json", `{
  "name": "placed",
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 20}, "outputs": [1], "groups": ["mic"]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "w3", "groups": ["dsp"]},
    {"id": 3, "type": "sum", "inputs": [2], "outputs": [3], "groups": ["nosuchgroup", "dsp"]},
    {"id": 4, "type": "csv_sink", "args": {"path": "placed.csv"}, "inputs": [3], "groups": ["LOCAL"]}
  ],
  "pipes": [{"id": 2, "block_count": 4}]
}`)
	_, errOut, code := c.marvelo("submit", doc, "--wait")
	if code != 0 {
		t.Fatalf("submit --wait: exit %d\n%s", code, errOut)
	}
	st := c.status("placed")
	want := map[int]string{1: "w2", 2: "w3", 3: "w1", 4: "head"}
	for id, w := range want {
		if got := jobWorker(st, id); got != w {
			t.Errorf("job %d on %q, want %q", id, got, w)
		}
	}
	lines := readLines(t, filepath.Join(c.dir, "placed.csv"))
	if got := strings.Join(lines, " "); got != "pipe_3 10 26 42 58 74" {
		t.Errorf("placed.csv: %s", got)
	}
}

func TestTwoPipelinesSideBySideAndStop(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("w1", "--slots", "8")
	endless := c.writeDoc("endless.json", `{"name": "endless", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "2ms"}, "outputs": [1]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "discard", "inputs": [2]}]}`)
	if _, errOut, code := c.marvelo("submit", endless); code != 0 {
		t.Fatalf("submit endless: exit %d: %s", code, errOut)
	}
	demo := c.writeDoc("demo.json", `{"name": "demo", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 30}, "outputs": [1]},
    {"id": 2, "type": "counter", "args": {"count": 30}, "outputs": [2]},
    {"id": 3, "type": "product", "inputs": [1, 2], "outputs": [3]},
    {"id": 4, "type": "csv_sink", "args": {"path": "demo.csv"}, "inputs": [3], "groups": ["LOCAL"]}]}`)
	if _, errOut, code := c.marvelo("submit", demo, "--wait"); code != 0 {
		t.Fatalf("submit demo --wait: exit %d: %s", code, errOut)
	}
	if lines := readLines(t, filepath.Join(c.dir, "demo.csv")); len(lines) != 31 || lines[30] != "900" {
		t.Errorf("demo.csv: %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	if st := c.status("endless"); st.State != protocol.StateRunning {
		t.Fatalf("endless is %s while the other pipeline ran", st.State)
	}
	if _, errOut, code := c.marvelo("stop", "endless"); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	c.waitFor("endless to stop", func() bool { return c.status("endless").State == protocol.StateStopped })
	st := c.status("endless")
	for _, j := range st.Jobs {
		if j.State == protocol.StateFailed {
			t.Errorf("job %d failed on stop: %s", j.ID, j.Error)
		}
	}
	if _, _, code := c.marvelo("stop", "nosuch"); code != 1 {
		t.Errorf("stop of an unknown pipeline: exit %d, want 1", code)
	}
}

func TestClientWithoutTokenIsRefused(t *testing.T) {
	c := newCluster(t, clusterOpts{token: "s3cret"})
	_, errOut, code := runMarvelo(t, c.dir, "workers", "--broker", c.url)
	if code != 1 || !strings.Contains(strings.ToLower(errOut), "authorization") {
		t.Fatalf("without token: exit %d, stderr %q; want 1 and an authorization error", code, errOut)
	}
	_, errOut, code = runMarvelo(t, c.dir, "workers", "--broker", c.url, "--auth-token", "wrong")
	if code != 1 {
		t.Fatalf("wrong token: exit %d: %s", code, errOut)
	}
	if out, errOut, code := c.marvelo("workers"); code != 0 || !strings.Contains(out, "head") {
		t.Fatalf("with token: exit %d\n%s%s", code, out, errOut)
	}
	// A broker on a non-loopback address must not start without a token.
	p := start(t, "open broker", "marvelo-broker", "--listen", fmt.Sprintf("0.0.0.0:%d", testkit.FreePort(t)), "--memory")
	<-p.done
	if !strings.Contains(p.out.String(), "without --auth-token") {
		t.Fatalf("open broker: %v\n%s", p.kit.Err(), p.out.String())
	}
}

func TestBrokerRestartWithStoreKeepsThePipelineRunning(t *testing.T) {
	c := newCluster(t, clusterOpts{store: true})
	c.startWorker("w1", "--slots", "4")
	out := filepath.Join(c.dir, "restart.csv")
	doc := c.writeDoc("restart.json", fmt.Sprintf(`{"name": "restart", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 300, "interval": "10ms"}, "outputs": [1]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2]}]}`, out))
	c.submit(doc)
	c.waitFor("some rows", func() bool { return len(readLinesIfAny(out)) > 20 })
	c.broker.stop()
	c.startBroker()
	c.waitFor("the pipeline to finish", func() bool {
		st := c.status("restart")
		if st.State == protocol.StateFailed {
			t.Fatalf("pipeline failed after the broker restart: %s", st.Error)
		}
		return st.State == protocol.StateFinished
	})
	checkExactlyOnce(t, out, 300)
}

// TestWorkerTokenCannotRunTheOperatorAPI: workers holding the worker token run jobs — fetching
// an executable's dependencies included — but the operator API refuses that token at once.
func TestWorkerTokenCannotRunTheOperatorAPI(t *testing.T) {
	c := newCluster(t, clusterOpts{token: "operator-secret", workerToken: "worker-secret"})
	c.startWorker("w1")
	c.addDependencies("sum", "sum.sh")
	doc := c.writeDoc("tok.json", `{"name": "tok", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 10}, "outputs": [1]},
    {"id": 2, "exec": {"path": "./sum.sh", "params": ["--add", "1"], "dependencies": "sum"}, "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": "tok.csv"}, "inputs": [2], "groups": ["LOCAL"]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`)
	c.submit(doc, "--wait")
	if got := strings.Join(readLines(t, filepath.Join(c.dir, "tok.csv")), " "); got != "pipe_2 2 3 4 5 6 7 8 9 10 11" {
		t.Fatalf("tok.csv: %s", got)
	}
	start := time.Now()
	_, errOut, code := runMarvelo(t, c.dir, "stop", "tok", "--broker", c.url, "--auth-token", c.workerToken)
	if code != 1 || !strings.Contains(errOut, "permission") {
		t.Fatalf("stop with the worker token: exit %d, %q; want 1 and a permissions error", code, errOut)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the refusal took %v: it should not wait for a timeout", d)
	}
}
