package broker

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func connectAs(t *testing.T, b *Broker, name, token string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(b.ClientURL(), nats.Token(token), nats.CustomInboxPrefix(protocol.InboxPrefix(name)))
	if err != nil {
		t.Fatalf("connect as %s: %v", name, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// nothingArrives fails the test if a message reaches sub within a bounded wait.
func nothingArrives(t *testing.T, sub *nats.Subscription, what string) {
	t.Helper()
	if m, err := sub.NextMsg(500 * time.Millisecond); err == nil {
		t.Fatalf("%s: %q reached %s", what, m.Data, m.Subject)
	}
}

// TestJetStreamAnswersAWorkerIdentityOnlyInItsOwnAccount: a worker identity that owns a checkpoint
// key reads it by direct get naming the broker's stop subject, another pipe's subject and
// another worker's subject as the reply: none of them receives the bytes (each identity is an
// account of its own), while the same get answered on its own inbox returns them.
func TestJetStreamAnswersAWorkerIdentityOnlyInItsOwnAccount(t *testing.T) {
	b, token := enrolled(t, "w1")
	enrol(t, b, "w2", RoleWorker)
	as := protocol.Assignment{Pipeline: "mine", Job: pipeline.Job{ID: 1, Type: "counter"}}
	if err := b.access.Grant("w1", as); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: protocol.CheckpointBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	victim := "marvelo.victim.pipe.1"
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "VICTIM", Subjects: []string{victim}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	stop, _ := b.nc.SubscribeSync(protocol.SubjStop)
	other, _ := b.nc.SubscribeSync(protocol.WorkerSubject("w2", "x"))
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nc := connectAs(t, b, "w1", token)
	key := "$KV." + protocol.CheckpointBucket + "." + protocol.CheckpointKey("mine", 1)
	forged := []byte(`{"pipeline":"victim","force":true}`)
	if _, err := nc.Request(key, forged, 5*time.Second); err != nil {
		t.Fatalf("put own checkpoint: %v", err)
	}
	get := "$JS.API.DIRECT.GET.KV_" + protocol.CheckpointBucket + "." + key
	for _, reply := range []string{protocol.SubjStop, victim, protocol.WorkerSubject("w2", "x")} {
		if err := nc.PublishRequest(get, reply, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	nothingArrives(t, stop, "a direct get answered on the stop subject")
	nothingArrives(t, other, "a direct get answered on another worker's subject")
	st, err := js.Stream(ctx, "VICTIM")
	if err != nil {
		t.Fatal(err)
	}
	if n := st.CachedInfo().State.Msgs; n != 0 {
		t.Fatalf("the victim pipe holds %d messages after a direct get answered on its subject", n)
	}
	m, err := nc.Request(get, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("its own direct get: %v", err)
	}
	if string(m.Data) != string(forged) {
		t.Fatalf("its own direct get: %q, want %q", m.Data, forged)
	}
}

// TestARegistrationClaimingWhatItsIdentityMayNotIsRefusedAndGrantsNothing: a worker identity
// enrolled for group ga registers claiming local, any, or group gb: each is refused naming the
// claim, and it is granted no group subject; registering with ga is accepted and grants ga's.
// A second registration under the name of a live worker (another process) is refused as taken
// and leaves the live worker's groups as they were.
func TestARegistrationClaimingWhatItsIdentityMayNotIsRefusedAndGrantsNothing(t *testing.T) {
	b, _ := enrolled(t, "w0")
	token := enrolIdentity(t, b, Identity{Name: "wg", Role: RoleWorker, Groups: []string{"ga"}})
	nc := connectAs(t, b, "wg", token)
	register := func(info protocol.WorkerInfo) protocol.Reply {
		t.Helper()
		data, _ := json.Marshal(info)
		m, err := nc.Request(protocol.From(protocol.SubjRegister, "wg"), data, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r protocol.Reply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	groups := func() []string {
		b.access.mu.RLock()
		defer b.access.mu.RUnlock()
		return b.access.tab.Groups("wg")
	}
	base := protocol.WorkerInfo{Name: "wg", Slots: 1, Host: "h", PID: os.Getpid(), Started: time.Now(), Version: protocol.Version}
	for _, tc := range []struct {
		claim func(*protocol.WorkerInfo)
		want  string
	}{
		{func(w *protocol.WorkerInfo) { w.Local = true }, "may not register as the head node's worker (local)"},
		{func(w *protocol.WorkerInfo) { w.Any = true }, "may not register as a worker of every group (any)"},
		{func(w *protocol.WorkerInfo) { w.Groups = []string{"ga", "gb"} }, "is enrolled for groups ga, not gb"},
	} {
		info := base
		tc.claim(&info)
		r := register(info)
		if r.OK || !strings.Contains(r.Error, tc.want) {
			t.Fatalf("registration %+v: %+v, want refused with %q", info, r, tc.want)
		}
		if g := groups(); len(g) != 0 {
			t.Fatalf("a refused registration granted %v", g)
		}
	}
	live := base
	live.Groups = []string{"ga"}
	if r := register(live); !r.OK {
		t.Fatalf("registration with its enrolled group: %+v", r)
	}
	want := []string{protocol.GroupSubject("ALL", ">"), protocol.GroupSubject("ga", ">")}
	if g := groups(); strings.Join(g, " ") != strings.Join(want, " ") {
		t.Fatalf("groups granted %v, want %v", g, want)
	}
	impostor := live
	impostor.PID++
	impostor.Groups = nil
	if r := register(impostor); r.OK || !strings.Contains(r.Error, "is taken by a live worker") {
		t.Fatalf("registration under a live worker's name: %+v", r)
	}
	if g := groups(); strings.Join(g, " ") != strings.Join(want, " ") {
		t.Fatalf("a refused registration changed the live worker's groups to %v", g)
	}
}
