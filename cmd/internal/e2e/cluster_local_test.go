package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Cluster start-up that cannot hurt itself (issue 23). docs/deployment.md ("Three head nodes")
// starts h1 with --local and the others with --no-local: that is localFirst, which
// TestClusterKilledLeaderLosesNothing and TestClusterKilledStandbyLosesNothing run. This test
// runs the start-up the docs once showed, without --no-local.

// liveWorkers is `marvelo workers --json`: the live workers by name.
func (h *headNodes) liveWorkers() map[string]protocol.WorkerStatus {
	out, _, code := h.marvelo("workers", "--json")
	var ws []protocol.WorkerStatus
	if code != 0 || json.Unmarshal([]byte(out), &ws) != nil {
		return nil
	}
	live := map[string]protocol.WorkerStatus{}
	for _, w := range ws {
		if w.Alive {
			live[w.Name] = w
		}
	}
	return live
}

// TestClusterWithOneLocalBrokerAndNoNoLocalSurvivesTheLeadersKill: three brokers, b1 with
// --local and b2, b3 with neither --local nor --no-local. b1's LOCAL worker is head-b1, the
// leader's is head: they cannot collide. kill -9 of the leader: no other broker exits (b1 once
// did, its worker refused as "name head is taken by a live worker", taking the cluster below
// quorum), the new leader's head worker registers, and a pipeline with a LOCAL csv_sink ends
// with every row once.
func TestClusterWithOneLocalBrokerAndNoNoLocalSurvivesTheLeadersKill(t *testing.T) {
	h := newHeadNodes(t, 3, []string{"--local"})
	h.startWorker("wa", "--slots", "4")
	h.startWorker("wb", "--slots", "4")
	h.whole()
	lead := h.leader()
	if lead == h.brokers[0] {
		t.Fatalf("the broker with --local leads, though the others could")
	}
	h.waitFor("head-b1 and the leader's head to be live", func() bool {
		live := h.liveWorkers()
		_, pinned := live["head-b1"]
		return pinned && live["head"].PID == lead.proc.cmd.Process.Pid
	})
	doc, out := chainDoc(h.cluster, "onelocal", 6000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	waitRows(h.cluster, out, 1500)
	lead.proc.kill()
	var next *headNode
	h.waitFor("another leader", func() bool {
		next = h.leader()
		return next != lead
	})
	h.waitFor("head-b1 and the new leader's head to be live", func() bool {
		live := h.liveWorkers()
		_, pinned := live["head-b1"]
		return pinned && live["head"].PID == next.proc.cmd.Process.Pid
	})
	h.waitFinished("onelocal")
	checkExactlyOnce(t, out, 6000)
	for _, b := range h.brokers {
		if b == lead {
			continue
		}
		select {
		case <-b.proc.done:
			t.Errorf("broker %s exited after the leader's kill:\n%s", b.name, b.proc.out.String())
		default:
		}
		if log := b.proc.out.String(); strings.Contains(log, "is taken by a live worker") {
			t.Logf("broker %s: its LOCAL worker was refused once and started again", b.name)
		}
	}
}
