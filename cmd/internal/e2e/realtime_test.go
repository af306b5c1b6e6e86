package e2e

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestRealtimePipesBetweenWorkerIdentitiesDeliverEveryBlockOnceInOrder: each worker identity is a
// NATS account of its own (DESIGN.md §10), so a realtime pipe between two of them goes through
// the relay import (protocol.RealtimeRelaySubject). A counter on wa feeds a forward on wa (one
// account), which feeds a forward on wb (another account), which feeds a csv_sink on wc, all
// three pipes realtime, at a rate nothing falls behind: the sink holds 1..200 once each, in
// order, and the pipeline finishes.
func TestRealtimePipesBetweenWorkerIdentitiesDeliverEveryBlockOnceInOrder(t *testing.T) {
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("wa")
	c.startWorker("wb")
	c.startWorker("wc", "--groups", "sinks")
	const n = 200
	doc := c.writeDoc("rt.json", fmt.Sprintf(`{"name": "rt", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "5ms"}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "wa"},
    {"id": 3, "type": "forward", "inputs": [2], "outputs": [3], "node": "wb"},
    {"id": 4, "type": "csv_sink", "args": {"path": "rt.csv"}, "inputs": [3], "groups": ["sinks"]}],
  "pipes": [{"id": 1, "qos": "realtime"}, {"id": 2, "qos": "realtime"}, {"id": 3, "qos": "realtime"}]}`, n))
	c.submit(doc)
	st := waitFinished(c, "rt")
	if st.State != protocol.StateFinished {
		t.Fatalf("state %s, want finished", st.State)
	}
	for job, want := range map[int]string{1: "wa", 2: "wa", 3: "wb", 4: "wc"} {
		if got := jobWorker(st, job); got != want {
			t.Fatalf("job %d ran on %q, want %s", job, got, want)
		}
	}
	lines := readLines(t, filepath.Join(c.dir, "wc", "rt", "4", "rt.csv"))
	if len(lines) != n+1 || lines[0] != "pipe_3" {
		t.Fatalf("the sink holds %d lines (header %q), want a header and %d rows", len(lines), head(lines), n)
	}
	for i, l := range lines[1:] {
		if l != strconv.Itoa(i+1) {
			t.Fatalf("row %d is %q, want %d", i+1, l, i+1)
		}
	}
}
