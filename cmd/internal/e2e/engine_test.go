package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The round engine through a broker and worker processes: file sinks that restart write every
// row once, and executable jobs hold to the protocol of DESIGN.md §5.

// TestCSVSinkMovedAfterItsWorkersKillWritesEveryRowOnce: the worker running csv_sink is killed;
// the sink moves to another worker of its group, finds its file (same machine), cuts it back to
// its checkpoint and appends: 1..n, each once, in order.
func TestCSVSinkMovedAfterItsWorkersKillWritesEveryRowOnce(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	c.startWorker("wb", "--groups", "sinks")
	const n = 6000
	out := filepath.Join(c.dir, "moved.csv")
	doc := c.writeDoc("moved.json", fmt.Sprintf(`{"name": "moved", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "wa"},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2], "groups": ["sinks"]}]}`, n, out))
	c.submit(doc)
	c.waitFor("the sink on wb", func() bool { return jobWorker(c.status("moved"), 3) == "wb" })
	c.startWorker("wc", "--groups", "sinks")
	waitRows(c, out, 2000)
	c.workers["wb"].kill()
	st := waitFinished(c, "moved")
	checkExactlyOnce(t, out, n)
	if ms := moves(st); len(ms) != 1 || !strings.Contains(ms[0], "job 3") {
		t.Fatalf("moves: %v", ms)
	}
}

// TestLocalCSVSinkRestartedWithTheBrokerWritesEveryRowOnce: the broker (and with it its LOCAL
// worker running csv_sink) is killed and started again on its store: 1..n, each once, in order.
func TestLocalCSVSinkRestartedWithTheBrokerWritesEveryRowOnce(t *testing.T) {
	c := newCluster(t, clusterOpts{store: true})
	c.startWorker("w1", "--slots", "4")
	const n = 5000
	out := filepath.Join(c.dir, "local.csv")
	doc := c.writeDoc("local.json", fmt.Sprintf(`{"name": "local", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2], "groups": ["LOCAL"]}]}`, n, out))
	c.submit(doc)
	waitRows(c, out, 1500)
	c.broker.kill()
	c.startBroker()
	waitFinished(c, "local")
	checkExactlyOnce(t, out, n)
}

// protoRounds reads the rounds proto.py --record wrote: values and heads.
func protoRounds(t *testing.T, path string) (vals [][]int64, heads [][]int) {
	t.Helper()
	for _, line := range readLines(t, path) {
		var r struct {
			Vals  []int64
			Heads []int
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("round %q: %v", line, err)
		}
		vals, heads = append(vals, r.Vals), append(heads, r.Heads)
	}
	return vals, heads
}

// TestExecutableProtocolAcrossWorkers runs executables on separate workers from the jobs around
// them: the finished bit passes a connector with block_count 3, a connector that skips rounds
// with the corrupted bit gives dummies exactly there at a join, and programs that answer too few
// rounds or write malformed output fail naming job, pipe and counts or offset.
func TestExecutableProtocolAcrossWorkers(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "6")
	c.startWorker("wb", "--slots", "6")
	c.addDependencies("proto", "proto.py")
	exec := func(params ...string) string {
		b, _ := json.Marshal(params)
		return fmt.Sprintf(`{"path": "./proto.py", "params": %s, "dependencies": "proto"}`, b)
	}

	t.Run("finished_bit_with_block_count", func(t *testing.T) {
		rec := filepath.Join(c.dir, "fin.jsonl")
		doc := c.writeDoc("fin.json", fmt.Sprintf(`{"name": "fin", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 9}, "outputs": [1], "node": "wa"},
    {"id": 2, "exec": %s, "inputs": [1], "outputs": [2], "node": "wb"},
    {"id": 3, "exec": %s, "inputs": [2], "head": true, "node": "wa"}],
  "pipes": [{"id": 1, "codec": "json", "block_count": 3}, {"id": 2, "codec": "json"}]}`,
			exec("--bc", "3"), exec("--head", "--record", rec)))
		c.submit(doc)
		waitFinished(c, "fin")
		vals, heads := protoRounds(t, rec)
		if fmt.Sprint(vals) != "[[6] [15] [24]]" {
			t.Fatalf("the sink program got %v, want [[6] [15] [24]]", vals)
		}
		// The first block carries the reset bit (0x40), the last the finished bit (0x20).
		if fmt.Sprint(heads) != "[[64] [0] [32]]" {
			t.Fatalf("heads %v, want [[64] [0] [32]]", heads)
		}
	})

	t.Run("skipped_rounds_are_dummies_at_the_join", func(t *testing.T) {
		out := filepath.Join(c.dir, "skip.csv")
		doc := c.writeDoc("skip.json", fmt.Sprintf(`{"name": "skip", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 22}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "counter", "args": {"count": 22}, "outputs": [2], "node": "wa"},
    {"id": 3, "exec": %s, "inputs": [1], "outputs": [3], "head": true, "node": "wb"},
    {"id": 4, "type": "sum", "inputs": [3, 2], "outputs": [4], "node": "wa"},
    {"id": 5, "type": "csv_sink", "args": {"path": %q}, "inputs": [4], "node": "wa"}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 3, "codec": "json"}]}`, exec("--head", "--skip", "5"), out))
		c.submit(doc)
		st := waitFinished(c, "skip")
		var want []string
		for n := 1; n <= 22; n++ {
			v := 2 * n
			if n%5 == 0 {
				v = n // a zero dummy (0) + n
			}
			want = append(want, fmt.Sprint(v))
		}
		if got := readLines(t, out)[1:]; strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("rows %v, want %v", got, want)
		}
		for _, j := range st.Jobs {
			if j.ID == 4 && j.Stats.Dummies != 4 {
				t.Errorf("the join made %d dummies, want 4", j.Stats.Dummies)
			}
		}
	})

	fails := func(t *testing.T, name, params string, count int, want ...string) {
		t.Helper()
		doc := c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "exec": %s, "inputs": [1], "outputs": [2], "node": "wb"},
    {"id": 3, "type": "discard", "inputs": [2], "node": "wa"}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`, name, count, params))
		start := time.Now()
		c.submit(doc)
		var st protocol.PipelineStatus
		testkit.WaitFor(t, 60*time.Second, name+" to fail", func() bool {
			st = c.status(name)
			return st.State == protocol.StateFailed
		})
		t.Logf("failed after %s: %s", time.Since(start).Round(time.Millisecond), st.Error)
		for _, w := range want {
			if !strings.Contains(st.Error, w) {
				t.Errorf("error %q lacks %q", st.Error, w)
			}
		}
	}
	t.Run("too_few_answers", func(t *testing.T) {
		fails(t, "few", exec("--answer", "7"), 10, "job 2 (proto.py)", "output pipe 2", "answered 7 of the 10 rounds")
	})
	t.Run("malformed_output_after_valid_frames", func(t *testing.T) {
		// The counter would run for 100 s: the failure must come at once.
		fails(t, "garbage", exec("--garbage", "2"), 100000, "job 2 (proto.py)", "output pipe 2", "at byte 4")
	})
}
