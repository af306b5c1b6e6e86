package broker

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// syncBuffer is a log the test reads while the broker writes it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startLivenessBroker starts a broker whose heartbeat deadline is far off (a minute), so only
// the connection events can declare a worker dead within a test.
func startLivenessBroker(t *testing.T, grace time.Duration, log io.Writer) *Broker {
	t.Helper()
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, HeartbeatTimeout: time.Minute,
		DisconnectGrace: grace, Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b
}

// fakeWorker connects as worker name would (its connection name) and registers.
func fakeWorker(t *testing.T, b *Broker, name string, pid int) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL(), nats.Name(protocol.WorkerConnName(name)), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	info := protocol.WorkerInfo{Name: name, Slots: 1, Host: "test", PID: pid, Started: time.Unix(1, 0)}
	data, _ := json.Marshal(info)
	m, err := nc.Request(protocol.From(protocol.SubjRegister, name), data, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
		t.Fatalf("register %s: %s %v", name, m.Data, err)
	}
	return nc
}

// alive asks the broker whether it holds the worker for alive.
func alive(t *testing.T, b *Broker, name string) bool {
	t.Helper()
	m, err := b.nc.Request(protocol.SubjWorkers, nil, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r protocol.WorkersReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	for _, w := range r.Workers {
		if w.Name == name {
			return w.Alive
		}
	}
	t.Fatalf("worker %s is not known", name)
	return false
}

// eventually polls cond on a ticker until it holds or the deadline passes.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
	}
}

func TestClosedWorkerConnectionIsDeclaredDeadLongBeforeItsHeartbeatDeadline(t *testing.T) {
	log := &syncBuffer{}
	b := startLivenessBroker(t, 50*time.Millisecond, log)
	nc := fakeWorker(t, b, "w1", 1)
	if !alive(t, b, "w1") {
		t.Fatal("w1 not alive after registering")
	}
	closed := time.Now()
	nc.Close()
	eventually(t, 20*time.Second, "w1 to be declared dead", func() bool { return !alive(t, b, "w1") })
	t.Logf("declared dead %s after its connection closed (heartbeat deadline: 1m)", time.Since(closed).Round(time.Millisecond))
	// The line is written once the move has begun, just after the worker is marked dead.
	why := `msg="worker's connection closed; declared dead" worker=w1 reason="Client Closed"`
	eventually(t, 10*time.Second, "the log to say why w1 was declared dead", func() bool { return strings.Contains(log.String(), why) })
}

func TestWorkerThatReconnectsWithinTheGraceStaysAlive(t *testing.T) {
	log := &syncBuffer{}
	b := startLivenessBroker(t, 3*time.Second, log) // generous: a loaded machine reconnects slowly
	first := fakeWorker(t, b, "w1", 1)
	first.Close()
	eventually(t, 20*time.Second, "the broker to see the close", func() bool {
		return strings.Contains(log.String(), `msg="a worker's connection closed; moving its jobs unless it reconnects" worker=w1`)
	})
	fakeWorker(t, b, "w1", 1) // the same process (pid, host, start) on a new connection
	eventually(t, 20*time.Second, "the grace to end", func() bool {
		return strings.Contains(log.String(), `msg="a worker reconnected within the grace; its jobs stay" worker=w1`)
	})
	if !alive(t, b, "w1") {
		t.Fatal("w1 was declared dead although it reconnected within the grace")
	}
}

func TestCloseOfOneOfTwoConnectionsOfAWorkerStartsNoGrace(t *testing.T) {
	log := &syncBuffer{}
	b := startLivenessBroker(t, 50*time.Millisecond, log)
	old := fakeWorker(t, b, "w1", 1)
	fakeWorker(t, b, "w1", 1) // a new connection while the server still holds the old one
	old.Close()
	eventually(t, 20*time.Second, "the broker to see the close", func() bool {
		return strings.Contains(log.String(), `msg="a connection of a worker closed; another is open" worker=w1`)
	})
	if strings.Contains(log.String(), "moving its jobs unless it reconnects\" worker=w1") {
		t.Errorf("a grace started for w1:\n%s", log)
	}
	if !alive(t, b, "w1") {
		t.Fatal("w1 declared dead while another of its connections is open")
	}
}

func TestServerConnectionEventsCannotBeForgedNorReadByAWorker(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, AuthToken: "op", WorkerToken: "wk",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	errs := make(chan error, 4)
	nc, err := nats.Connect(b.ClientURL(), nats.Token("wk"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if publishAllowed(t, nc, errs, subjDisconnect) {
		t.Fatal("a worker published a disconnect event")
	}
	if _, err := nc.SubscribeSync(subjDisconnect); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), "Permissions Violation for Subscription") {
			t.Fatalf("unexpected error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a worker subscribed to the connection events of every client")
	}
}

func TestIdentityMayNotNameAnotherWorkersConnection(t *testing.T) {
	b, token := enrolled(t, "w1")
	if _, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.Name(protocol.WorkerConnName("w2"))); err == nil {
		t.Fatal("worker w1 connected under the connection name of w2")
	}
	nc, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.Name(protocol.WorkerConnName("w1")))
	if err != nil {
		t.Fatalf("worker w1 refused under its own connection name: %v", err)
	}
	nc.Close()
}

func TestSecondCloseDuringTheGraceStartsNoOtherGrace(t *testing.T) {
	cw := newConnWatch(time.Hour)
	defer cw.stop()
	cw.opened("w", connKey{"s", 1})
	cw.opened("w", connKey{"s", 2})
	if got := cw.closed("w", connKey{"s", 1}, nil, nil); got != otherOpen {
		t.Fatalf("close of one of two connections: %v, want otherOpen", got)
	}
	if got := cw.closed("w", connKey{"s", 2}, func() {}, func() {}); got != graceStarted {
		t.Fatalf("close of the last connection: %v, want graceStarted", got)
	}
	// A cluster's servers may deliver the same event twice.
	if got := cw.closed("w", connKey{"s", 2}, func() {}, func() {}); got != graceRunning {
		t.Fatalf("the same close again: %v, want graceRunning", got)
	}
}

func TestStoppedConnWatchRunsNoLostWorker(t *testing.T) {
	cw := newConnWatch(time.Hour)
	k := connKey{"s", 1}
	cw.opened("w", k)
	if got := cw.closed("w", k, func() { t.Error("lost ran after stop") }, func() { t.Error("back ran after stop") }); got != graceStarted {
		t.Fatalf("close of the only connection: %v, want the grace started", got)
	}
	cw.stop()
	if got := cw.closed("w", connKey{"s", 2}, func() {}, func() {}); got != watchStopped {
		t.Fatalf("close after stop: %v, want none started", got)
	}
}

// TestClosedIdentityConnectionIsDeclaredDeadAfterAReload: with identities, permission changes
// are server reloads; the connection events still reach the control plane after one.
func TestClosedIdentityConnectionIsDeclaredDeadAfterAReload(t *testing.T) {
	b, token := enrolled(t, "w1")
	nc, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.Name(protocol.WorkerConnName("w1")),
		nats.CustomInboxPrefix(protocol.InboxPrefix("w1")), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	info := protocol.WorkerInfo{Name: "w1", Slots: 1, Host: "test", PID: 1, Started: time.Unix(1, 0)}
	data, _ := json.Marshal(info)
	if m, err := nc.Request(protocol.From(protocol.SubjRegister, "w1"), data, 10*time.Second); err != nil || !strings.Contains(string(m.Data), `"ok":true`) {
		t.Fatalf("register: %v %v", m, err)
	}
	as := protocol.Assignment{Pipeline: "p", Epoch: 1, Job: pipeline.Job{ID: 1}}
	if err := b.access.Grant("w1", as); err != nil { // a reload of the server's configuration
		t.Fatal(err)
	}
	if !alive(t, b, "w1") {
		t.Fatal("w1 not alive after registering")
	}
	nc.Close()
	eventually(t, 20*time.Second, "w1 to be declared dead", func() bool { return !alive(t, b, "w1") })
}
