package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/cmd/internal/failoverkit"
)

// watchJob connects to the cluster's broker and starts a failover probe of a job writing pipe.
func (c *cluster) watchJob(pipelineName string, job, pipe int) *failoverkit.Probe {
	c.t.Helper()
	opts := []nats.Option{nats.Name("e2e failover probe")}
	if c.token != "" {
		opts = append(opts, nats.Token(c.token))
	}
	nc, err := nats.Connect(c.url, opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	p, err := failoverkit.Watch(nc, pipelineName, job, pipe)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// TestKilledWorkerMovesOnItsConnectionsCloseBeforeAnyHeartbeatDeadline: SIGKILL of the worker
// running a forward; the broker learns of it from the NATS server's disconnect event, so the sink
// advances again (the moved forward writes its output pipe) well before the heartbeat rule could
// even have noticed (1.5 s timeout, 200 ms heartbeats: not before 1.3 s after the kill), and every
// block reaches the sink exactly once.
func TestKilledWorkerMovesOnItsConnectionsCloseBeforeAnyHeartbeatDeadline(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa")
	c.startWorker("wb")
	c.startWorker("wc")
	doc, out := chainDoc(c, "disc", 5000, [3]string{"wb", "wa", "wc"}, [3]string{})
	probe := c.watchJob("disc", 2, 2)
	c.submit(doc)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := probe.WaitMessages(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	c.workers["wa"].kill()
	res, err := probe.Recovery(ctx, killed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kill → worker lost %v, → first block of the moved forward %v (%s)", res.Detected.Round(time.Millisecond),
		res.Recovered.Round(time.Millisecond), res.Why)
	if !strings.Contains(res.Why, "closed its connection") {
		t.Errorf("worker lost because %q, want its closed connection", res.Why)
	}
	if res.Recovered >= time.Second {
		t.Errorf("the sink advanced again %v after the kill, want well under the 1.3 s the heartbeats need at least", res.Recovered)
	}
	waitFinished(c, "disc")
	checkExactlyOnce(t, out, 5000)
}

// TestBenchFailoverMeasuresKillAndFreezeExactlyOnce runs `marvelo bench failover --runs 1`
// (broker and workers found beside marvelo): one SIGKILL and one SIGSTOP run, each measured,
// each exactly once, the kill noticed by the closed connection and the freeze by the heartbeats.
func TestBenchFailoverMeasuresKillAndFreezeExactlyOnce(t *testing.T) {
	out, errOut, code := runMarvelo(t, t.TempDir(), "bench", "failover", "--runs", "1", "--json")
	if code != 0 {
		t.Fatalf("bench failover: exit %d\n%s\n%s", code, out, errOut)
	}
	var rep struct {
		Results []struct {
			Signal string `json:"signal"`
			Runs   []struct {
				Recovered float64 `json:"recovered_ms"`
				Why       string  `json:"why"`
				Exact     bool    `json:"exactly_once"`
				Error     string  `json:"error"`
			} `json:"runs"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("bench failover --json: %v\n%s", err, out)
	}
	why := map[string]string{"KILL": "closed its connection", "STOP": "missed its heartbeats"}
	for _, r := range rep.Results {
		if len(r.Runs) != 1 {
			t.Fatalf("%s: %d runs, want 1", r.Signal, len(r.Runs))
		}
		run := r.Runs[0]
		t.Logf("%s: the moved forward wrote again %.0f ms after the signal (%s)", r.Signal, run.Recovered, run.Why)
		if run.Error != "" || !run.Exact || run.Recovered <= 0 {
			t.Errorf("%s: %+v", r.Signal, run)
		}
		if !strings.Contains(run.Why, why[r.Signal]) {
			t.Errorf("%s: noticed because %q, want %q", r.Signal, run.Why, why[r.Signal])
		}
		delete(why, r.Signal)
	}
	if len(why) > 0 {
		t.Errorf("no results for %v", why)
	}
}

// TestKilledWorkerOnAnotherServerOfTheClusterIsLostByItsConnectionsClose: in a cluster of three
// head nodes, the worker running a forward is connected to a server other than the leader's; its
// disconnect event crosses the cluster to the leading control plane, which declares it lost well
// before the heartbeat rule could (1.3 s after the kill at the earliest) and moves the forward,
// exactly once. (How long the moved forward then takes to write again over replicated pipes is
// printed, not asserted: it does not depend on how the death was noticed.)
// It was gated out of make test while a chain of 3 brokers stalled before any kill about 1 run
// in 4 (lost acknowledgements filling MaxAckPending; a sink checkpoint put that failed and was
// retried only with a round that could not come): both are fixed, see DESIGN §8a.
func TestKilledWorkerOnAnotherServerOfTheClusterIsLostByItsConnectionsClose(t *testing.T) {
	h := newHeadNodes(t, 3)
	lead := h.leader()
	other := h.brokers[0]
	if other == lead {
		other = h.brokers[1]
	}
	all := h.url
	h.url = other.url // wa knows only the other server
	h.startWorker("wa")
	h.url = all
	h.startWorker("wb")
	h.startWorker("wc")
	h.whole()
	doc, out := chainDoc(h.cluster, "xdisc", 8000, [3]string{"wb", "wa", "wc"}, [3]string{})
	probe := h.watchJob("xdisc", 2, 2)
	h.submit(doc)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	waitRows(h.cluster, out, 1500) // replicated pipes batch more blocks per message: count rows
	killed := time.Now()
	h.workers["wa"].kill()
	res, err := probe.Recovery(ctx, killed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("leader %s, wa on %s: kill → worker lost %v, → first block of the moved forward %v (%s)", lead.name, other.name,
		res.Detected.Round(time.Millisecond), res.Recovered.Round(time.Millisecond), res.Why)
	if !strings.Contains(res.Why, "closed its connection") {
		t.Errorf("worker lost because %q, want its closed connection", res.Why)
	}
	if res.Detected >= time.Second {
		t.Errorf("the worker was lost %v after the kill, want well under the 1.3 s the heartbeats need at least", res.Detected)
	}
	st := h.waitFinished("xdisc")
	t.Logf("moves: %v", moves(st))
	checkExactlyOnce(t, out, 8000)
}

// blipProxy is a TCP proxy between a worker and the broker whose connections the test can cut,
// as a network blip does, and refuse for a while.
type blipProxy struct {
	t      *testing.T
	l      net.Listener
	target string

	mu          sync.Mutex
	conns       []net.Conn
	refuseUntil time.Time
}

func newBlipProxy(t *testing.T, target string) *blipProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &blipProxy{t: t, l: l, target: target}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.accept()
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		p.cut(0)
	})
	return p
}

func (p *blipProxy) url() string { return "nats://" + p.l.Addr().String() }

func (p *blipProxy) accept() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return // closed at the end of the test
		}
		p.mu.Lock()
		refuse := time.Now().Before(p.refuseUntil)
		p.mu.Unlock()
		if refuse {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		// Each copy ends when either side is closed (cut, or the process ends).
		go func() { _, _ = io.Copy(out, in); out.Close(); in.Close() }()
		go func() { _, _ = io.Copy(in, out); out.Close(); in.Close() }()
	}
}

// cut closes every connection through the proxy (both sides see it closed) and refuses new ones
// for refuseFor.
func (p *blipProxy) cut(refuseFor time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseUntil = time.Now().Add(refuseFor)
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestWorkerWhoseConnectionIsCutAndBackWithinTheGraceKeepsItsJobs: the connection of the worker
// running a forward is cut (a blip) and the worker reconnects at once: the broker sees the close,
// waits the grace (3 s here, for a loaded machine), sees the worker back and moves nothing; every
// block reaches the sink exactly once.
func TestWorkerWhoseConnectionIsCutAndBackWithinTheGraceKeepsItsJobs(t *testing.T) {
	c := newCluster(t, clusterOpts{brokerArgs: []string{"--disconnect-grace", "3s"}})
	proxy := newBlipProxy(t, c.listen)
	wa := c.startWorker("wa", "--broker", proxy.url())
	c.startWorker("wb")
	c.startWorker("wc")
	doc, out := chainDoc(c, "blip", 4000, [3]string{"wb", "wa", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 1000)
	proxy.cut(0)
	c.waitFor("the broker to see wa back within the grace", func() bool {
		return strings.Contains(c.broker.out.String(), `msg="a worker reconnected within the grace; its jobs stay" worker=wa`)
	})
	if !strings.Contains(wa.out.String(), "reconnected to the broker") {
		t.Errorf("wa did not say it reconnected")
	}
	st := waitFinished(c, "blip")
	if ms := moves(st); len(ms) != 0 {
		t.Errorf("moves after a blip within the grace: %v", ms)
	}
	checkExactlyOnce(t, out, 4000)
}

// TestWorkerCutOffLongerThanTheGraceIsMovedAndItsStaleInstanceEnds: the connection of the worker
// running a forward is cut and new ones are refused for 800 ms (longer than the 100 ms grace,
// shorter than the heartbeats' 1.3 s at the least): the broker moves the forward because the
// connection closed; when the worker is back, its stale instance is stopped or fenced off, and
// every block reaches the sink exactly once.
func TestWorkerCutOffLongerThanTheGraceIsMovedAndItsStaleInstanceEnds(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	proxy := newBlipProxy(t, c.listen)
	wa := c.startWorker("wa", "--broker", proxy.url())
	c.startWorker("wb")
	c.startWorker("wc")
	doc, out := chainDoc(c, "cutoff", 4000, [3]string{"wb", "wa", "wc"}, [3]string{})
	c.submit(doc)
	waitRows(c, out, 1000)
	proxy.cut(800 * time.Millisecond)
	st := waitFinished(c, "cutoff")
	checkExactlyOnce(t, out, 4000)
	ms := moves(st)
	if len(ms) != 1 || !strings.Contains(ms[0], "from worker wa") {
		t.Fatalf("moves: %v", ms)
	}
	var lost string
	for _, e := range st.Events {
		if e.Kind == "worker lost" && e.Job == 2 {
			lost = e.Message
		}
	}
	if !strings.Contains(lost, "closed its connection") {
		t.Errorf("worker lost because %q, want its closed connection", lost)
	}
	stale := regexp.MustCompile(`msg="job ended" worker=wa pipeline=cutoff job=2 epoch=1 state=stopped|msg="job failed" worker=wa pipeline=cutoff job=2 epoch=1 error=.*another instance of this job publishes`)
	c.waitFor("wa to end its stale instance of job 2", func() bool { return stale.MatchString(wa.out.String()) })
}
