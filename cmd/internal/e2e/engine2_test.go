package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestCSVSinkMovedWhereItsFileIsNotStartsItAgainWithAnEvent: the worker running csv_sink (a
// relative path: each worker has its own working directory, as on another machine) is killed;
// the sink moves to a worker that does not have the file, starts it again with its header and
// the rows from where it resumed, and the move is a "job notice" event in marvelo status naming
// both workers. Between the two files every row is there, in order.
func TestCSVSinkMovedWhereItsFileIsNotStartsItAgainWithAnEvent(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	c.startWorker("wb", "--groups", "sinks")
	const n = 4000
	doc := c.writeDoc("away.json", fmt.Sprintf(`{"name": "away", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "csv_sink", "args": {"path": "away.csv"}, "inputs": [1], "groups": ["sinks"]}]}`, n))
	c.submit(doc)
	c.waitFor("the sink on wb", func() bool { return jobWorker(c.status("away"), 2) == "wb" })
	c.startWorker("wc", "--groups", "sinks")
	first := filepath.Join(c.dir, "wb", "away", "2", "away.csv")
	second := filepath.Join(c.dir, "wc", "away", "2", "away.csv")
	waitRows(c, first, 1000)
	c.workers["wb"].kill()
	st := waitFinished(c, "away")

	var notices []protocol.Event
	for _, e := range st.Events {
		if e.Kind == protocol.EventJobNotice {
			notices = append(notices, e)
		}
	}
	if len(notices) != 1 || notices[0].Job != 2 ||
		!strings.Contains(notices[0].Message, "worker wb") || !strings.Contains(notices[0].Message, "worker wc") ||
		!strings.Contains(notices[0].Message, "starting it again") {
		t.Fatalf("job notice events %+v, want one for job 2 naming workers wb and wc; all events: %v", notices, eventKinds(st))
	}
	t.Logf("event: %s", notices[0].Message)

	rows := func(path string) []int {
		lines := readLines(t, path)
		if len(lines) == 0 || lines[0] != "pipe_1" {
			t.Fatalf("%s: header %q, want pipe_1", path, head(lines))
		}
		var vs []int
		for _, l := range lines[1:] {
			v, err := strconv.Atoi(l)
			if err != nil {
				t.Fatalf("%s: row %q: %v", path, l, err)
			}
			if len(vs) > 0 && v != vs[len(vs)-1]+1 {
				t.Fatalf("%s: row %d after %d", path, v, vs[len(vs)-1])
			}
			vs = append(vs, v)
		}
		return vs
	}
	a, b := rows(first), rows(second)
	if len(a) == 0 || a[0] != 1 || len(b) == 0 || b[len(b)-1] != n {
		t.Fatalf("the first file holds %d rows (%s), the second %d (%s); want 1.. and ..%d", len(a), head(itoa(a)), len(b), head(itoa(b)), n)
	}
	// The second file starts at the first row not acknowledged on wb: at most one past the first
	// file's end (nothing lost), and after the rows wb wrote before the kill had been stored.
	if b[0] > a[len(a)-1]+1 || b[0] < 2 {
		t.Fatalf("the second file starts at %d, the first ends at %d", b[0], a[len(a)-1])
	}
}

func itoa(vs []int) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strconv.Itoa(v)
	}
	return out
}

// TestSumAndProductOverDummiesAfterAResetOnCBORAndJSON: on cbor and on json pipes, two counters
// join at sum and two at product, each into a csv_sink, across a broker and two workers;
// `marvelo reset` in mid-stream restarts the counters' numbering, which costs each join a round
// of dummies (zero dummies: the zero of the last real block, never null). Both pipelines
// finish, both joins counted their dummies, and every row is an integer.
func TestSumAndProductOverDummiesAfterAResetOnCBORAndJSON(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "8")
	c.startWorker("wb", "--slots", "8")
	const n = 3000
	codecs := []string{"cbor", "json"}
	outs := map[string][2]string{}
	for _, cd := range codecs {
		name := "reset_" + cd
		sum, prod := filepath.Join(c.dir, name+"_sum.csv"), filepath.Join(c.dir, name+"_product.csv")
		outs[cd] = [2]string{sum, prod}
		counter := func(id int, node string) string {
			return fmt.Sprintf(`{"id": %d, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [%d], "node": %q}`, id, n, id, node)
		}
		var pipes []string
		for id := 1; id <= 6; id++ {
			pipes = append(pipes, fmt.Sprintf(`{"id": %d, "codec": %q}`, id, cd))
		}
		doc := c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [%s, %s, %s, %s,
    {"id": 5, "type": "sum", "inputs": [1, 2], "outputs": [5], "node": "wb"},
    {"id": 6, "type": "product", "inputs": [3, 4], "outputs": [6], "node": "wb"},
    {"id": 7, "type": "csv_sink", "args": {"path": %q}, "inputs": [5], "node": "wa"},
    {"id": 8, "type": "csv_sink", "args": {"path": %q}, "inputs": [6], "node": "wa"}],
  "pipes": [%s]}`, name, counter(1, "wa"), counter(2, "wb"), counter(3, "wa"), counter(4, "wb"), sum, prod, strings.Join(pipes, ", ")))
		c.submit(doc)
	}
	for _, cd := range codecs {
		waitRows(c, outs[cd][0], 300)
		waitRows(c, outs[cd][1], 300)
		if out, errOut, code := c.marvelo("reset", "reset_"+cd); code != 0 {
			t.Fatalf("marvelo reset reset_%s: exit %d: %s%s", cd, code, out, errOut)
		}
	}
	for _, cd := range codecs {
		st := waitFinished(c, "reset_"+cd)
		if !hasEvent(st, "reset") {
			t.Errorf("%s: no reset event: %v", cd, eventKinds(st))
		}
		for _, j := range st.Jobs {
			if j.ID == 5 || j.ID == 6 {
				t.Logf("%s: %s: %d rounds, %d dummies", cd, j.Name, j.Stats.Rounds, j.Stats.Dummies)
			}
			if (j.ID == 5 || j.ID == 6) && j.Stats.Dummies < 2 {
				t.Errorf("%s: %s made %d dummies, want at least 2 (a round of them for the reset)", cd, j.Name, j.Stats.Dummies)
			}
		}
		for _, path := range outs[cd] {
			lines := readLines(t, path)
			if len(lines) < n/2 {
				t.Fatalf("%s: %d rows", path, len(lines)-1)
			}
			for i, l := range lines[1:] {
				if _, err := strconv.ParseInt(l, 10, 64); err != nil {
					t.Fatalf("%s: row %d is %q, want an integer", filepath.Base(path), i+1, l)
				}
			}
		}
	}
}

// TestExecutableHeadsSQNAndMaxQueueAcrossWorkers: more of the executable protocol with the
// programs on other workers than the jobs around them: the finished bit through a connector with
// a head and block_count 3; an "exec": {"sqn": true} filter into a join, with zero and with prev
// dummies exactly at the rounds it did not answer; max_queue on a slow program (only real
// blocks, in order, the newest last, the drops counted exactly, no dummies).
func TestExecutableHeadsSQNAndMaxQueueAcrossWorkers(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "6")
	c.startWorker("wb", "--slots", "6")
	c.addDependencies("proto", "proto.py", "decimate.py")
	exec := func(prog string, sqn bool, params ...string) string {
		b, _ := json.Marshal(params)
		return fmt.Sprintf(`{"path": "./%s", "params": %s, "dependencies": "proto", "sqn": %v}`, prog, b, sqn)
	}

	t.Run("finished_bit_with_head_and_block_count", func(t *testing.T) {
		rec := filepath.Join(c.dir, "finh.jsonl")
		doc := c.writeDoc("finh.json", fmt.Sprintf(`{"name": "finh", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 9}, "outputs": [1], "node": "wa"},
    {"id": 2, "exec": %s, "inputs": [1], "outputs": [2], "head": true, "node": "wb"},
    {"id": 3, "exec": %s, "inputs": [2], "head": true, "node": "wa"}],
  "pipes": [{"id": 1, "codec": "json", "block_count": 3}, {"id": 2, "codec": "json"}]}`,
			exec("proto.py", false, "--head", "--bc", "3"), exec("proto.py", false, "--head", "--record", rec)))
		c.submit(doc)
		waitFinished(c, "finh")
		vals, heads := protoRounds(t, rec)
		if fmt.Sprint(vals) != "[[6] [15] [24]]" || fmt.Sprint(heads) != "[[64] [0] [32]]" {
			t.Fatalf("the sink program got %v with heads %v, want [[6] [15] [24]] with [[64] [0] [32]]", vals, heads)
		}
	})

	for _, mode := range []string{"zero", "prev"} {
		t.Run("sqn_filter_into_a_join_"+mode, func(t *testing.T) {
			name := "sqn_" + mode
			out := filepath.Join(c.dir, name+".csv")
			doc := c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 22}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "counter", "args": {"count": 22}, "outputs": [2], "node": "wa"},
    {"id": 3, "exec": %s, "inputs": [1], "outputs": [3], "node": "wb"},
    {"id": 4, "type": "sum", "inputs": [3, 2], "outputs": [4], "head": true, "dummy": %q, "node": "wa"},
    {"id": 5, "type": "csv_sink", "args": {"path": %q}, "inputs": [4], "node": "wa"}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 3, "codec": "json"}]}`, name, exec("decimate.py", true, "--every", "3"), mode, out))
			c.submit(doc)
			st := waitFinished(c, name)
			var want []string
			lastReal := 0
			for n := 1; n <= 22; n++ {
				switch {
				case n%3 == 0:
					lastReal = n
					want = append(want, fmt.Sprint(2*n))
				case mode == "zero":
					want = append(want, fmt.Sprint(n))
				default:
					want = append(want, fmt.Sprint(lastReal+n))
				}
			}
			if got := readLines(t, out)[1:]; strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("rows %v, want %v", got, want)
			}
			for _, j := range st.Jobs {
				if j.ID == 4 && j.Stats.Dummies != 15 {
					t.Errorf("the join made %d dummies, want 15", j.Stats.Dummies)
				}
			}
		})
	}

	t.Run("max_queue_on_a_slow_executable", func(t *testing.T) {
		const total = 120
		rec := filepath.Join(c.dir, "maxq.jsonl")
		doc := c.writeDoc("maxq.json", fmt.Sprintf(`{"name": "maxq", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "exec": %s, "inputs": [1], "max_queue": 5, "node": "wb"}],
  "pipes": [{"id": 1, "codec": "json"}]}`, total, exec("proto.py", false, "--delay", "0.05", "--record", rec)))
		c.submit(doc)
		st := waitFinished(c, "maxq")
		vals, _ := protoRounds(t, rec)
		var seen []int64
		for _, v := range vals {
			seen = append(seen, v...)
		}
		for i, v := range seen {
			if v <= 0 || (i > 0 && v <= seen[i-1]) {
				t.Fatalf("the program was handed %v: want only real blocks, in order", seen)
			}
		}
		if len(seen) < 5 || len(seen) >= total || seen[len(seen)-1] != total {
			t.Fatalf("the program was handed %d of %d blocks, the last %v: want fewer, ending with the newest", len(seen), total, seen)
		}
		for _, j := range st.Jobs {
			if j.ID == 2 && (j.Stats.QueueDrops != uint64(total-len(seen)) || j.Stats.Dummies != 0) {
				t.Errorf("queue_drops %d dummies %d with %d of %d handed over", j.Stats.QueueDrops, j.Stats.Dummies, len(seen), total)
			}
		}
	})
}
