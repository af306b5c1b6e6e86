package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// headNodes are the brokers of a cluster of head nodes on loopback (random ports), with the
// workers and the marvelo command pointed at all of them.
type headNodes struct {
	*cluster
	brokers []*headNode
}

type headNode struct {
	name string
	args []string
	url  string
	proc *proc
}

// newHeadNodes starts n brokers forming one NATS cluster; extra[i] are more flags of broker i.
func newHeadNodes(t *testing.T, n int, extra ...[]string) *headNodes {
	t.Helper()
	h := &headNodes{cluster: &cluster{t: t, workers: map[string]*proc{}, dir: t.TempDir()}}
	var routes, urls []string
	ports := make([][2]int, n)
	for i := range ports {
		ports[i] = [2]int{freePort(t), freePort(t)}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[i][1]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i][0]))
	}
	h.url = strings.Join(urls, ",")
	for i := range ports {
		b := &headNode{name: fmt.Sprintf("b%d", i+1), url: urls[i]}
		b.args = []string{"--server-name", b.name, "--listen", fmt.Sprintf("127.0.0.1:%d", ports[i][0]),
			"--cluster", fmt.Sprintf("127.0.0.1:%d", ports[i][1]), "--routes", strings.Join(routes, ","),
			"--store", filepath.Join(h.dir, "store-"+b.name), "--workdir", h.dir, "--heartbeat-timeout", "1500ms"}
		if i < len(extra) {
			b.args = append(b.args, extra[i]...)
		}
		h.brokers = append(h.brokers, b)
	}
	for _, b := range h.brokers {
		b.start(t)
	}
	h.waitFor("the cluster to elect a leader", func() bool { _, _, code := h.marvelo("workers"); return code == 0 })
	return h
}

func (b *headNode) start(t *testing.T) {
	b.proc = start(t, "marvelo-broker "+b.name, "marvelo-broker", b.args...)
}

// view is `marvelo cluster --json`.
type clusterView struct {
	Leader  string `json:"leader"`
	Brokers []struct {
		Server string `json:"server"`
	} `json:"brokers"`
	Peers []struct {
		Server  string `json:"server"`
		Current bool   `json:"current"`
	} `json:"peers"`
}

func (h *headNodes) view() (clusterView, bool) {
	out, _, code := h.marvelo("cluster", "--json")
	var v clusterView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		return v, false
	}
	return v, true
}

// leader waits until the brokers agree on a leader that answers, and returns it.
func (h *headNodes) leader() *headNode {
	var lead *headNode
	h.waitFor("a leader", func() bool {
		v, ok := h.view()
		if !ok {
			return false
		}
		for _, b := range h.brokers {
			if b.name == v.Leader {
				lead = b
				return true
			}
		}
		return false
	})
	return lead
}

// whole waits until every broker is announced and every server holds a current copy of the state.
func (h *headNodes) whole() clusterView {
	var v clusterView
	h.waitFor("the cluster to be whole", func() bool {
		var ok bool
		if v, ok = h.view(); !ok || v.Leader == "" || len(v.Brokers) != len(h.brokers) || len(v.Peers) != len(h.brokers) {
			return false
		}
		for _, p := range v.Peers {
			if !p.Current {
				return false
			}
		}
		return true
	})
	return v
}

// waitFinished waits until a pipeline has finished, through a takeover: while no control plane
// answers, `marvelo status` fails and is asked again.
func (h *headNodes) waitFinished(name string) protocol.PipelineStatus {
	var st protocol.PipelineStatus
	waitFor(h.t, 90*time.Second, name+" to finish", func() bool {
		out, _, code := h.marvelo("status", name, "--json")
		var sts []protocol.PipelineStatus
		if code != 0 || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 1 {
			return false
		}
		st = sts[0]
		if st.State == protocol.StateFailed {
			h.t.Fatalf("pipeline %s failed: %s", name, st.Error)
		}
		return st.State == protocol.StateFinished
	})
	return st
}

// sinkAdvance returns how long after now the CSV at path grows past n rows.
func sinkAdvance(c *cluster, path string, since time.Time) time.Duration {
	n := len(readLinesIfAny(path))
	var at time.Time
	waitFor(c.t, 60*time.Second, "the sink to advance", func() bool {
		if len(readLinesIfAny(path)) > n+1 {
			at = time.Now()
			return true
		}
		return false
	})
	return at.Sub(since)
}

// localFirst starts three brokers of which b1 runs the LOCAL worker (and so leaves the lead to
// the others) and the others none: the leader can be killed without killing the sink.
func localFirst(t *testing.T) *headNodes {
	h := newHeadNodes(t, 3, []string{"--local"}, []string{"--no-local"}, []string{"--no-local"})
	if lead := h.leader(); lead == h.brokers[0] {
		t.Fatalf("the broker with --local leads, though the others could")
	}
	h.startWorker("wa", "--slots", "4")
	h.startWorker("wb", "--slots", "4")
	h.whole()
	return h
}

func TestClusterKilledLeaderLosesNothing(t *testing.T) {
	h := localFirst(t)
	doc, out := chainDoc(h.cluster, "lead", 6000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	waitRows(h.cluster, out, 1500)
	lead := h.leader()
	lead.proc.kill()
	killed := time.Now()
	advanced := make(chan time.Duration, 1)
	go func() { advanced <- sinkAdvance(h.cluster, out, killed) }()
	var next string
	h.waitFor("another leader", func() bool {
		v, ok := h.view()
		next = v.Leader
		return ok && next != "" && next != lead.name
	})
	t.Logf("killed leader %s; broker %s leads %v after the kill", lead.name, next, time.Since(killed))
	t.Logf("the sink advanced again %v after the kill", <-advanced)
	st := h.waitFinished("lead")
	checkExactlyOnce(t, out, 6000)
	var took bool
	for _, e := range st.Events {
		if e.Kind == "takeover" {
			took = true
			t.Logf("event: %s", e.Message)
		}
	}
	if !took {
		t.Errorf("no takeover event in the status of the pipeline")
	}
	// The killed broker comes back with its store and the cluster is whole again.
	lead.start(t)
	v := h.whole()
	t.Logf("cluster after the restart: leader %s, %d brokers, %d servers with the state", v.Leader, len(v.Brokers), len(v.Peers))
	if out, _, code := h.marvelo("cluster"); code != 0 || !strings.Contains(out, lead.name) {
		t.Errorf("marvelo cluster does not list the restarted broker %s:\n%s", lead.name, out)
	}
}

func TestClusterKilledStandbyLosesNothing(t *testing.T) {
	h := localFirst(t)
	doc, out := chainDoc(h.cluster, "standby", 6000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	waitRows(h.cluster, out, 1500)
	lead := h.leader()
	var victim *headNode
	for _, b := range h.brokers[1:] {
		if b != lead {
			victim = b
		}
	}
	victim.proc.kill()
	t.Logf("killed standby %s; the sink advanced again %v after the kill", victim.name, sinkAdvance(h.cluster, out, time.Now()))
	h.waitFinished("standby")
	checkExactlyOnce(t, out, 6000)
	// The lease lives in a replicated bucket: when the dead standby led that bucket's Raft group,
	// renewals wait for its re-election and the lead may change hands. That costs a takeover,
	// never a block (checked above), so it is reported, not failed.
	if v, _ := h.view(); v.Leader != lead.name {
		t.Logf("the lead moved from %s to %s when the standby died", lead.name, v.Leader)
	}
	victim.start(t)
	h.whole()
	if out, _, code := h.marvelo("workers"); code != 0 || !strings.Contains(out, "head") || !strings.Contains(out, "wa") {
		t.Errorf("marvelo workers after the restart:\n%s", out)
	}
}

// TestBrokerOnExternalNATS runs marvelo-broker --nats against a plain NATS server with
// JetStream started from the nats-server module, and the demo pipeline through it.
func TestBrokerOnExternalNATS(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "natsserver")
	build := exec.Command("go", "build", "-o", bin, "./cmd/internal/e2e/testdata/natsserver")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the NATS server: %v\n%s", err, out)
	}
	port := freePort(t)
	c := &cluster{t: t, workers: map[string]*proc{}, dir: t.TempDir(), url: fmt.Sprintf("nats://127.0.0.1:%d", port)}
	start(t, "nats-server", bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", filepath.Join(c.dir, "js"))
	c.waitFor("the NATS server", func() bool {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	c.broker = start(t, "marvelo-broker", "marvelo-broker", "--nats", c.url, "--workdir", c.dir)
	c.waitFor("the broker to answer", func() bool { _, _, code := c.marvelo("workers"); return code == 0 })
	c.startWorker("w1", "--slots", "8")
	demo, err := os.ReadFile("../../../testdata/pipelines/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := c.marvelo("submit", c.writeDoc("demo.json", string(demo)), "--wait"); code != 0 {
		t.Fatalf("submit demo --wait: exit %d: %s", code, errOut)
	}
	got := strings.Join(readLines(t, filepath.Join(c.dir, "demo.csv")), " ")
	if want := "pipe_5 225 2800 11375 29700 61525 110600"; got != want {
		t.Errorf("demo.csv = %s, want %s", got, want)
	}
	if !strings.Contains(c.broker.out.String(), "leading the control plane") {
		t.Errorf("the broker on NATS did not lead its control plane:\n%s", c.broker.out.String())
	}
}
