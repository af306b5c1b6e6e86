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

	"github.com/marvelo/marvelo/cmd/internal/testkit"
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
	free := testkit.FreePorts(t, 2*n) // each broker needs two of its own
	for i := range ports {
		ports[i] = [2]int{free[2*i], free[2*i+1]}
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
			for k, a := range extra[i] {
				if a == "--auth-token" && k+1 < len(extra[i]) {
					h.token = extra[i][k+1] // the marvelo command presents it too
				}
			}
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
	Leader   string `json:"leader"`
	Replicas int    `json:"replicas"`
	Brokers  []struct {
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
	testkit.WaitFor(h.t, 90*time.Second, name+" to finish", func() bool {
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
	testkit.WaitFor(c.t, 60*time.Second, "the sink to advance", func() bool {
		if len(readLinesIfAny(path)) > n+1 {
			at = time.Now()
			return true
		}
		return false
	})
	return at.Sub(since)
}

// The goal for the time from a leader's kill to the sink advancing again, and what the tests
// assert: the goal with a margin for a loaded 2-core machine shared by other test runs (twice
// the goal: 4.99 s was seen once under make test at load 7; still short of the 7 s a delivery
// lost in transit used to cost, which it is there to catch). The figure is printed every run.
const (
	sinkResumeGoal  = 3 * time.Second
	sinkResumeLimit = sinkResumeGoal * 2
)

// localFirst starts three brokers of which b1 runs the LOCAL worker (and so leaves the lead to
// the others) and the others none: the leader can be killed without killing the sink. The
// workers connect to the broker through (its server only: the servers tell them the others'),
// so its death also cuts their connections and the deliveries in flight on them.
func localFirst(t *testing.T, through func(h *headNodes, lead *headNode) *headNode) (*headNodes, *headNode) {
	h := newHeadNodes(t, 3, []string{"--local"}, []string{"--no-local"}, []string{"--no-local"})
	lead := h.leader()
	if lead == h.brokers[0] {
		t.Fatalf("the broker with --local leads, though the others could")
	}
	on := through(h, lead)
	h.startWorkersOn(on, "wa", "wb")
	h.whole()
	return h, on
}

// startWorkersOn starts workers given only b's URL.
func (h *headNodes) startWorkersOn(b *headNode, names ...string) {
	all := h.url
	h.url = b.url
	defer func() { h.url = all }()
	for _, name := range names {
		h.startWorker(name, "--slots", "4")
	}
}

// wonAt returns when broker b logged that it won the leader election after since (its log's
// own clock), or the zero time.
func (b *headNode) wonAt(since time.Time) time.Time {
	for _, line := range strings.Split(b.proc.out.String(), "\n") {
		if !strings.Contains(line, `msg="won the leader election"`) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && at.After(since) {
			return at
		}
	}
	return time.Time{}
}

func TestClusterKilledLeaderLosesNothing(t *testing.T) {
	h, _ := localFirst(t, func(_ *headNodes, lead *headNode) *headNode { return lead })
	doc, out := chainDoc(h.cluster, "lead", 6000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	waitRows(h.cluster, out, 1500)
	lead := h.leader()
	lead.proc.kill()
	killed := time.Now()
	advanced := make(chan time.Duration, 1)
	go func() { advanced <- sinkAdvance(h.cluster, out, killed) }()
	var next *headNode
	h.waitFor("another leader", func() bool {
		next = h.leader()
		return next != lead
	})
	t.Logf("killed leader %s; broker %s won the lead %v after the kill", lead.name, next.name, next.wonAt(killed).Sub(killed))
	resumed := <-advanced
	t.Logf("the sink advanced again %v after the kill", resumed)
	if resumed > sinkResumeLimit {
		t.Errorf("the sink advanced again %v after the leader's kill; the goal is %v (asserted with a margin for a loaded machine: %v)", resumed, sinkResumeGoal, sinkResumeLimit)
	}
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
	if out, errOut, code := h.marvelo("cluster"); code != 0 || !strings.Contains(out, lead.name) {
		t.Errorf("marvelo cluster (exit %d) does not list the restarted broker %s:\n%s%s", code, lead.name, out, errOut)
	}
}

// TestClusterKilledStandbyLosesNothing: kill -9 the standby the workers connect through (it runs
// no LOCAL worker) mid-stream: the sink holds every block exactly once, in order, and the
// restarted standby rejoins. It was gated once for a stall before the kill (about 1 run in 4 of
// make test) and one run with 52 rows twice; neither came back in the runs since deliveries a
// worker's client drops after a reconnect ("slow consumer" on a pull inbox, seen in most runs)
// or loses with the server are read from the stream at once (worker/input.go) instead of holding
// the later blocks until the consumer's redelivery. The time from the kill to the sink advancing
// is printed: the leader gathers every Raft leader on the broker with --local (broker/leader.go),
// so once a pipe's groups are there this standby's death costs them no election.
func TestClusterKilledStandbyLosesNothing(t *testing.T) {
	// The standby that runs no LOCAL worker.
	standby := func(h *headNodes, lead *headNode) *headNode {
		for _, b := range h.brokers[1:] {
			if b != lead {
				return b
			}
		}
		return nil
	}
	h, victim := localFirst(t, standby)
	doc, out := chainDoc(h.cluster, "standby", 6000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	waitRows(h.cluster, out, 1500)
	lead := h.leader()
	if victim == lead {
		t.Fatalf("the standby %s the workers connect through leads", victim.name)
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
	port := testkit.FreePort(t)
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

// headPID returns the pid of the live head worker (the LOCAL worker inside a broker), or 0.
func (h *headNodes) headPID() int {
	out, _, code := h.marvelo("workers", "--json")
	var ws []protocol.WorkerStatus
	if code != 0 || json.Unmarshal([]byte(out), &ws) != nil {
		return 0
	}
	for _, w := range ws {
		if w.Name == "head" && w.Alive {
			return w.PID
		}
	}
	return 0
}

// TestClusterLocalSinkFollowsTheLeader: without --local, the LOCAL worker runs in the leading
// broker. Killing the leader kills the csv_sink with it: the sink moves to the new leader's head
// worker and resumes from its checkpoint, and the file holds every row exactly once, in order.
//
// The move once failed about 1 run in 3: the registration of the new leader's head worker
// waited for the sink's move onto it (now beside the reply), and the move gave up on a consumer
// request that timed out while the cluster elected leaders (now retried, broker/jsretry.go).
func TestClusterLocalSinkFollowsTheLeader(t *testing.T) {
	h := newHeadNodes(t, 3)
	h.startWorker("wa", "--slots", "4")
	h.startWorker("wb", "--slots", "4")
	h.whole()
	doc, out := chainDoc(h.cluster, "follow", 6000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	waitRows(h.cluster, out, 1500)
	lead := h.leader()
	if st := h.status("follow"); jobWorker(st, 4) != "head" {
		t.Fatalf("csv_sink 4 runs on worker %q, want head", jobWorker(st, 4))
	}
	if pid := h.headPID(); pid != lead.proc.cmd.Process.Pid {
		t.Fatalf("the head worker is process %d, want the leader %s's (%d)", pid, lead.name, lead.proc.cmd.Process.Pid)
	}
	lead.proc.kill()
	killed := time.Now()
	resumed := sinkAdvance(h.cluster, out, killed)
	t.Logf("killed leader %s with the sink in it; the sink advanced again %v after the kill", lead.name, resumed)
	st := h.waitFinished("follow")
	checkExactlyOnce(t, out, 6000)
	next := h.leader()
	if next == lead {
		t.Fatalf("the killed broker %s still leads", lead.name)
	}
	var moved bool
	for _, m := range moves(st) {
		t.Logf("%s", m)
		moved = moved || strings.HasPrefix(m, "job 4:")
	}
	if !moved {
		t.Errorf("no move of csv_sink 4 in the status: %v", moves(st))
	}
	// The pipeline has ended; the head worker it ended on is the new leader's.
	if pid := h.headPID(); pid != next.proc.cmd.Process.Pid {
		t.Errorf("after the takeover the head worker is process %d, want the new leader %s's (%d)", pid, next.name, next.proc.cmd.Process.Pid)
	}
}

// TestClusterReplicasChangedOnRestartAreApplied: brokers restarted on their stores with another
// --replicas give the existing state buckets and pipes that many copies.
func TestClusterReplicasChangedOnRestartAreApplied(t *testing.T) {
	one := []string{"--replicas", "1"}
	h := newHeadNodes(t, 3, one, one, one)
	h.startWorker("wa", "--slots", "4")
	var v clusterView
	h.waitFor("every broker announced", func() bool {
		var ok bool
		v, ok = h.view()
		return ok && v.Leader != "" && len(v.Brokers) == len(h.brokers)
	})
	if v.Replicas != 1 || len(v.Peers) != 1 {
		t.Fatalf("started with --replicas 1: the state has %d replicas on %d servers", v.Replicas, len(v.Peers))
	}
	for _, b := range h.brokers {
		b.proc.stop()
		b.args[len(b.args)-1] = "3"
	}
	for _, b := range h.brokers {
		b.start(t)
	}
	v = h.whole()
	if v.Replicas != 3 || len(v.Peers) != 3 {
		t.Fatalf("restarted with --replicas 3: the state has %d replicas on %d servers, want 3 on 3", v.Replicas, len(v.Peers))
	}
	for _, b := range h.brokers {
		if strings.Contains(b.proc.out.String(), "level=ERROR") {
			t.Errorf("broker %s logged an error:\n%s", b.name, b.proc.out.String())
		}
	}
}

// TestClusterWorkerIdentitiesWorkOnEveryBroker: workers enrolled with identities of their own
// connect to the two brokers that do not lead; the leader grants their jobs' subjects, and the
// servers they are connected to apply the grants (every broker follows the replicated identity
// bucket): the pipeline runs to its end, every row once, in order.
func TestClusterWorkerIdentitiesWorkOnEveryBroker(t *testing.T) {
	const token = "e2e-cluster-operator-token"
	auth := []string{"--auth-token", token}
	h := newHeadNodes(t, 3, auth, auth, auth)
	h.identities = true
	h.waitFor("every broker to load the identities", func() bool {
		for _, b := range h.brokers {
			if !strings.Contains(b.proc.out.String(), `msg="identities loaded"`) {
				return false
			}
		}
		return true
	})
	lead := h.leader()
	var others []*headNode
	for _, b := range h.brokers {
		if b != lead {
			others = append(others, b)
		}
	}
	h.enrol("wa")
	h.enrol("wb")
	h.startWorkersOn(others[0], "wa")
	h.startWorkersOn(others[1], "wb")
	doc, out := chainDoc(h.cluster, "ids", 2000, [3]string{"wa", "wb", "wa"}, [3]string{})
	h.submit(doc)
	st := h.waitFinished("ids")
	checkExactlyOnce(t, out, 2000)
	if lead := h.leader(); lead == others[0] || lead == others[1] {
		t.Logf("the lead moved to %s during the run (the workers' servers)", lead.name)
	}
	for _, id := range []int{1, 2, 3} {
		if w := jobWorker(st, id); w != "wa" && w != "wb" {
			t.Errorf("job %d ran on %q", id, w)
		}
	}
	for _, b := range h.brokers {
		if strings.Contains(b.proc.out.String(), "permission violation refused") {
			t.Errorf("broker %s refused a worker's publish or subscription:\n%s", b.name, b.proc.out.String())
		}
	}
}
