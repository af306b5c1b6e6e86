package broker

import (
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

// enrolled starts a broker with an operator token and enrols one worker identity.
func enrolled(t *testing.T, name string) (*Broker, string) {
	t.Helper()
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, AuthToken: "op",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	return b, enrol(t, b, name, RoleWorker)
}

// publishAllowed publishes on subject and reports whether the server let it through.
func publishAllowed(t *testing.T, nc *nats.Conn, errs chan error, subject string) bool {
	t.Helper()
	if err := nc.Publish(subject, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The server answers a refused publish before the flush's PONG; its handler may run later.
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), subject) {
			t.Fatalf("unexpected error %v", err)
		}
		return false
	case <-time.After(500 * time.Millisecond):
		return true
	}
}

// TestGrantAndRevokeApplyToAConnectedWorker: a worker identity's connection may publish to a
// job's output pipe from the Grant on and not after the Revoke, without reconnecting; a wrong
// secret is refused at the door.
func TestGrantAndRevokeApplyToAConnectedWorker(t *testing.T) {
	b, token := enrolled(t, "w1")
	if _, err := nats.Connect(b.ClientURL(), nats.Token(protocol.IdentityToken("w1", "wrong"))); err == nil {
		t.Fatal("a wrong secret was let in")
	}
	errs := make(chan error, 16)
	nc, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.CustomInboxPrefix(protocol.InboxPrefix("w1")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	reconnected := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} })
	pipe := protocol.PipeSubject("p", 1)
	as := protocol.Assignment{Pipeline: "p", Epoch: 1, Job: pipeline.Job{ID: 1},
		Outputs: []protocol.PipeBinding{{ID: 1, Subject: pipe, Stream: protocol.PipeStream("p", 1)}}}
	if publishAllowed(t, nc, errs, pipe) {
		t.Fatal("published to a pipe of a job not placed on the worker")
	}
	if err := b.access.Grant("w1", as); err != nil {
		t.Fatal(err)
	}
	if !publishAllowed(t, nc, errs, pipe) {
		t.Fatal("refused the output pipe of a job placed on the worker")
	}
	if publishAllowed(t, nc, errs, protocol.PipeSubject("p", 2)) {
		t.Fatal("published to another pipe")
	}
	if err := b.access.Revoke("w1", "p", 1); err != nil {
		t.Fatal(err)
	}
	if publishAllowed(t, nc, errs, pipe) {
		t.Fatal("published to the pipe of a job taken back")
	}
	select {
	case <-reconnected:
		t.Fatal("the worker was disconnected by the permission change")
	default:
	}
	if got := b.access.Violations()["w1"]; got != 3 {
		t.Errorf("%d violations counted for w1, want 3", got)
	}
}

// TestJobsPlacedTogetherAreGrantedWithOneReload: placement grants all its jobs at once (grantAll)
// with one reload of the server, after which the worker may publish to every job's output pipe
// without reconnecting; the prepares that follow grant nothing again; revoking the pipeline takes
// them all back.
func TestJobsPlacedTogetherAreGrantedWithOneReload(t *testing.T) {
	b, token := enrolled(t, "w1")
	errs := make(chan error, 16)
	nc, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.CustomInboxPrefix(protocol.InboxPrefix("w1")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const n = 100
	var assigns []placedAssignment
	for id := 1; id <= n; id++ {
		assigns = append(assigns, placedAssignment{worker: "w1", a: protocol.Assignment{Pipeline: "p", Epoch: 1, Job: pipeline.Job{ID: id},
			Outputs: []protocol.PipeBinding{{ID: id, Subject: protocol.PipeSubject("p", id), Stream: protocol.PipeStream("p", id)}}}})
	}
	before := b.access.reloads.Load()
	if err := b.access.grantPlaced(assigns); err != nil {
		t.Fatal(err)
	}
	if got := b.access.reloads.Load() - before; got != 1 {
		t.Fatalf("%d reloads for %d jobs placed together, want 1", got, n)
	}
	for _, id := range []int{1, n / 2, n} {
		if !publishAllowed(t, nc, errs, protocol.PipeSubject("p", id)) {
			t.Fatalf("refused the output pipe of job %d, granted", id)
		}
	}
	before = b.access.reloads.Load()
	for _, a := range assigns { // what each prepare asks for (requestWorker)
		if err := b.access.beforeRequest(a.worker, protocol.VerbPrepare, a.a); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.access.reloads.Load() - before; got != 0 {
		t.Fatalf("%d reloads for prepares of jobs granted already, want 0", got)
	}
	b.access.revokePipeline("p")
	if publishAllowed(t, nc, errs, protocol.PipeSubject("p", n)) {
		t.Fatal("published to a pipe of a pipeline taken back")
	}
}

// TestGrantsAndRevokesAtOnceEndAsTheLastOfEach: grants and revocations made at once share
// reloads (commit), and each returns once what it changed is applied: in the end the worker may
// publish to the pipes of the jobs still granted, and of those only.
func TestGrantsAndRevokesAtOnceEndAsTheLastOfEach(t *testing.T) {
	b, token := enrolled(t, "w1")
	errs := make(chan error, 64)
	nc, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.CustomInboxPrefix(protocol.InboxPrefix("w1")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const n = 16
	var wg sync.WaitGroup
	for id := 1; id <= n; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			as := protocol.Assignment{Pipeline: "p", Epoch: 1, Job: pipeline.Job{ID: id},
				Outputs: []protocol.PipeBinding{{ID: id, Subject: protocol.PipeSubject("p", id), Stream: protocol.PipeStream("p", id)}}}
			if err := b.access.Grant("w1", as); err != nil {
				t.Error(err)
				return
			}
			if id%2 == 1 {
				if err := b.access.Revoke("w1", "p", id); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if reloads := b.access.reloads.Load(); reloads > 2*n {
		t.Errorf("%d reloads for %d changes", reloads, 2*n)
	}
	for _, id := range []int{1, 2, n - 1, n} {
		if got, want := publishAllowed(t, nc, errs, protocol.PipeSubject("p", id)), id%2 == 0; got != want {
			t.Errorf("job %d's pipe: published %v, want %v", id, got, want)
		}
	}
}
