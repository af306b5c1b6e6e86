package leader

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startJetStream runs a NATS server with JetStream for one test and connects to it.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{ServerName: "leader-test", Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// candidate is one Campaign on its own goroutine, stopped at the end of the test.
type candidate struct {
	cancel context.CancelFunc
	done   chan struct{}
	terms  chan *Term // each term won, as Lead starts
}

// campaign starts a candidate. Without cfg.Lead, each term is sent on terms and lasts until its
// context ends.
func campaign(t *testing.T, js jetstream.JetStream, cfg Config) *candidate {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{cancel: cancel, done: make(chan struct{}), terms: make(chan *Term, 8)}
	if cfg.Lead == nil {
		cfg.Lead = func(term *Term) {
			c.terms <- term
			<-term.Context().Done()
		}
	}
	go func() {
		defer close(c.done)
		Campaign(ctx, js, cfg)
	}()
	t.Cleanup(c.stop)
	return c
}

// stop ends the campaign and waits until it has returned.
func (c *candidate) stop() {
	c.cancel()
	<-c.done
}

func (c *candidate) term(t *testing.T, within time.Duration) *Term {
	t.Helper()
	select {
	case term := <-c.terms:
		return term
	case <-time.After(within):
		t.Fatalf("no term won within %s", within)
		return nil
	}
}

func observe(t *testing.T, js jetstream.JetStream) *Observer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, err := Observe(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func leaderOf(t *testing.T, o *Observer) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := o.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Server
}

// betweenRenewals is a wait that ends between two renewals of a term begun when it began: a
// candidate stopped while a renewal is in flight abandons it (its context is the term's) though
// the server may apply it, and then fails to release the key it no longer knows the revision of
// (the standby takes over when the key expires) — a race of the election, kept as it was.
const betweenRenewals = 2*leaseTTL + leaseRenew/2

func TestALeaseThatRanOutNoLongerHolds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &lease{until: time.Now().Add(time.Hour)}
	term := &Term{ctx: ctx, lease: l}
	if !term.Held() {
		t.Fatal("a live lease does not hold")
	}
	l.extend(2, time.Now().Add(-time.Millisecond))
	if term.Held() {
		t.Fatal("a lease that ran out still holds")
	}
	l.extend(3, time.Now().Add(time.Hour))
	cancel()
	if term.Held() {
		t.Fatal("a term whose context ended still holds")
	}
}

func TestObserveFindsNoElectionWhereNoneCampaigned(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Observe(ctx, js); err == nil {
		t.Fatal("Observe found an election nobody campaigned in")
	}
}

// TestALoneCandidateLeadsAndGivesTheKeyUpWhenItStops: it wins, is seen leading and announced,
// holds its term while it renews, and on stopping deletes both keys.
func TestALoneCandidateLeadsAndGivesTheKeyUpWhenItStops(t *testing.T) {
	js := startJetStream(t)
	a := campaign(t, js, Config{Name: "a", Member: []byte(`"a's card"`)})
	term := a.term(t, 10*time.Second)
	if !term.Held() {
		t.Fatal("a term just won does not hold")
	}
	o := observe(t, js)
	if got := leaderOf(t, o); got != "a" {
		t.Fatalf("leader %q, want a", got)
	}
	members, err := term.Members(context.Background())
	if err != nil || string(members["a"]) != `"a's card"` {
		t.Fatalf("members %q (%v), want a's announcement", members, err)
	}
	// Renewals keep the term past a lease.
	select {
	case <-term.Context().Done():
		t.Fatal("the term ended while the candidate renewed it")
	case <-time.After(betweenRenewals):
	}
	if !term.Held() {
		t.Fatal("a renewed term no longer holds")
	}
	a.stop()
	if term.Held() || term.Context().Err() == nil {
		t.Fatal("the term outlived its campaign")
	}
	if got := leaderOf(t, o); got != "" {
		t.Fatalf("leader %q after the candidate stopped, want none (the key released)", got)
	}
	members, err = o.Members(context.Background())
	if err != nil || len(members) != 0 {
		t.Fatalf("members %q (%v) after the candidate stopped, want none", members, err)
	}
}

// TestAStandbyTakesOverAtOnceWhenTheLeaderStops: while one leads the other waits; the leader's
// shutdown releases the key and the standby takes it well before a lease would have run out.
func TestAStandbyTakesOverAtOnceWhenTheLeaderStops(t *testing.T) {
	js := startJetStream(t)
	a := campaign(t, js, Config{Name: "a"})
	ta := a.term(t, 10*time.Second)
	b := campaign(t, js, Config{Name: "b"})
	select {
	case <-b.terms:
		t.Fatal("the standby won while the leader held the key")
	case <-ta.Context().Done():
		t.Fatal("the leader's term ended while it renewed")
	case <-time.After(betweenRenewals):
	}
	a.stop()
	b.term(t, leaseValid) // a dead leader's key is taken only after leaseTTL
	if got := leaderOf(t, observe(t, js)); got != "b" {
		t.Fatalf("leader %q, want b", got)
	}
}

// TestResignGivesTheLeadToAnother: a term resigned ends at once, and the key goes to the standby.
func TestResignGivesTheLeadToAnother(t *testing.T) {
	js := startJetStream(t)
	resign := make(chan struct{})
	won := make(chan *Term, 8)
	a := campaign(t, js, Config{Name: "a", Lead: func(term *Term) {
		won <- term
		select {
		case <-resign:
			term.Resign()
			if term.Held() || term.Context().Err() == nil {
				t.Error("a resigned term still holds")
			}
		case <-term.Context().Done():
		}
	}})
	select {
	case <-won:
	case <-time.After(10 * time.Second):
		t.Fatal("a did not win")
	}
	b := campaign(t, js, Config{Name: "b"})
	close(resign)
	b.term(t, leaseValid)
	a.stop()
}

// TestALeaderThatLosesTheKeyEndsItsTerm: another writer took the key; the leader's next renewal
// fails and its term ends.
func TestALeaderThatLosesTheKeyEndsItsTerm(t *testing.T) {
	js := startJetStream(t)
	a := campaign(t, js, Config{Name: "a"})
	term := a.term(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(Record{Server: "usurper", Since: time.Now()})
	if _, err := kv.Put(ctx, leaderKey, rec); err != nil {
		t.Fatal(err)
	}
	select {
	case <-term.Context().Done():
	case <-time.After(leaseValid):
		t.Fatal("the term went on after the key was taken")
	}
	if term.Held() {
		t.Fatal("a term whose key was taken still holds")
	}
	if got := leaderOf(t, observe(t, js)); got != "usurper" {
		t.Fatalf("leader %q, want the usurper's key kept", got)
	}
}

// TestADeadLeadersKeyIsTakenOnlyAfterALease: a key nobody renews is taken over, never sooner
// than leaseTTL after it was written (its leader stopped acting leaseValid after it).
func TestADeadLeadersKeyIsTakenOnlyAfterALease(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kv := open(ctx, js, Config{Replicas: 1})
	rec, _ := json.Marshal(Record{Server: "dead", Since: time.Now()})
	if _, err := kv.Create(ctx, leaderKey, rec); err != nil {
		t.Fatal(err)
	}
	written := time.Now() // no earlier than the write
	a := campaign(t, js, Config{Name: "a"})
	a.term(t, 10*time.Second)
	if d := time.Since(written); d < leaseTTL {
		t.Fatalf("the dead leader's key was taken %s after it was written, before a lease (%s)", d, leaseTTL)
	}
}

// TestACandidateThatDefersLeavesTheLeadToAnother: of two candidates seeing no leader, the one
// that defers does not campaign while the other does.
func TestACandidateThatDefersLeavesTheLeadToAnother(t *testing.T) {
	js := startJetStream(t)
	a := campaign(t, js, Config{Name: "a", Deferral: func() time.Duration { return time.Hour }})
	b := campaign(t, js, Config{Name: "b"})
	b.term(t, 10*time.Second)
	b.stop() // the key released: vacant again, and a still defers
	select {
	case <-a.terms:
		t.Fatal("the candidate that defers took the lead")
	case <-time.After(2 * leaseTTL):
	}
}
