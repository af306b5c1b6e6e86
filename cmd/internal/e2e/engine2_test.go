package e2e

import (
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
