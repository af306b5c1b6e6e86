package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestAJobConnectionIsTheWorkersOwnAndItsCloseLeavesTheWorkerConnected: a job's data connection
// is a second connection under the worker's client name (so the broker counts it as the
// worker's), its JetStream works, and releasing it closes it without touching the worker's
// connection or running the worker connection's closed handler.
func TestAJobConnectionIsTheWorkersOwnAndItsCloseLeavesTheWorkerConnected(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	name := protocol.WorkerConnName("w1")
	closed := make(chan struct{}, 4)
	nc, err := nats.Connect(ns.ClientURL(), nats.Name(name), nats.ClosedHandler(func(*nats.Conn) { closed <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w, err := New(nc, Options{Name: "w1", Registry: job.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	js, release := w.openJobConn("job 1")
	if js == w.js {
		t.Fatal("the job runs on the worker's connection")
	}
	if got := clientsNamed(t, ns, name, 2); got != 2 {
		t.Fatalf("connections named %q: %d, want 2 (the worker's and the job's)", name, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream on the job's connection: %v", err)
	}
	release()
	if got := clientsNamed(t, ns, name, 1); got != 1 {
		t.Fatalf("connections named %q after release: %d, want 1", name, got)
	}
	if !nc.IsConnected() {
		t.Fatal("the worker's connection closed with the job's")
	}
	select {
	case <-closed:
		t.Fatal("the worker connection's closed handler ran for the job's connection")
	default:
	}
}

// clientsNamed counts the server's open client connections with the given name, polling up to
// 3 s for want (a close reaches the server's list when its read loop ends); it returns the last
// count.
func clientsNamed(t *testing.T, ns *server.Server, name string, want int) int {
	t.Helper()
	count := func() int {
		cz, err := ns.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range cz.Conns {
			if c.Name == name {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(3 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	n := count()
	for n != want && time.Now().Before(deadline) {
		<-tick.C
		n = count()
	}
	return n
}
