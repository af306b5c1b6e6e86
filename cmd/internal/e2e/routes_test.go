package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/deps"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
	"github.com/marvelo/marvelo/worker/objget"
)

// The routes of the accounts issue (broker/isolation.go): ways an identity that may not publish
// somewhere had the server, or the broker, do it on its behalf. Each test performs a route with a
// raw nats.go client holding a worker identity's (or a read-only operator's) credentials and
// asserts both that it is refused — the server's permissions violation, nothing arriving on the
// target subject, or the broker's refusal — and that nothing changed: the victim pipeline's sink
// rows (each value once, in order), its state as marvelo status --json reports it, its source's
// checkpoint as the operator reads it, the dependency archive's bytes, the enrolled identities,
// the victim's offers not heard.
//
// TestSteeredRepliesPushConsumersAndForgedRegistrationOfAWorkerIdentityLeaveTheVictimUnchanged
// runs in make test (routes 1a, 1e, 3 and 4 against one victim); the others (TestSecurity…, here
// and in security_test.go) are long, skipped unless MARVELO_SECURITY is set:
//
//	MARVELO_SECURITY=1 go test ./cmd/internal/e2e/ -count=1 -v -run '^TestSecurity'
//
// Route 6 (with route 1 closed, an identity injects only into the pipes of its own jobs) is
// sqngap_test.go's.

// longSecurity skips the long security suite unless MARVELO_SECURITY is set.
func longSecurity(t *testing.T) {
	if os.Getenv("MARVELO_SECURITY") == "" {
		t.Skip("long security suite: make test-security")
	}
}

// quietWait bounds the wait for a message that must not come: the attack is over (flushed), and
// the server answers a direct get or a pull within microseconds here.
const quietWait = 500 * time.Millisecond

const (
	victimFinite = 20     // values of the victim's finite branch: job 1 → job 2 (fin.csv)
	evil         = "evil" // the attacker's worker identity: it runs pipeline "own"
	ownKeyJob    = 1      // own's counter, on evil: evil's checkpoint key
	stopBody     = `{"pipeline":"victim"}`
	depsStream   = "OBJ_" + protocol.DepsBucket
	ckptStream   = "KV_" + protocol.CheckpointBucket
	forgedValue  = 999999
	forgedMarker = "forged-by-evil"
)

// routeScene is a broker, a worker wv running the victim pipeline (groups victim and gb), and
// the attacker's worker evil running its own pipeline "own" (a counter that emits once an hour →
// a forward → a discard, all placed on evil): evil may write and read its counter's checkpoint
// key, and pull its forward's input.
//
// The victim has two branches: a finite counter (job 1, victimFinite values) into fin.csv (job
// 2), finished before any attack, so its checkpoint key holds still; and an endless counter (job
// 3, every 20 ms) → forward (job 4) → live.csv (job 5), running throughout.
type routeScene struct {
	c          *cluster
	a          *attacker // raw client with evil's credentials
	op         *nats.Conn
	js         jetstream.JetStream
	ckptKV     jetstream.KeyValue
	finCSV     string
	liveCSV    string
	ownKey     string // evil's own checkpoint key
	victimKey  string // the victim's finished source's checkpoint key
	victimPipe string // the victim's live pipe into its sink
	view       victimView
	ckpt       jetstream.KeyValueEntry
	ids        []string
	consumers  map[string][]string // stream → its consumers before the attacks
}

func newRouteScene(t *testing.T) *routeScene {
	t.Helper()
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("wv", "--groups", "victim,gb", "--slots", "8")
	c.startWorker(evil, "--slots", "4")
	s := &routeScene{c: c, finCSV: filepath.Join(c.dir, "fin.csv"), liveCSV: filepath.Join(c.dir, "live.csv"),
		ownKey: protocol.CheckpointKey("own", ownKeyJob), victimKey: protocol.CheckpointKey("victim", 1),
		victimPipe: protocol.PipeSubject("victim", 3)}
	c.submit(c.writeDoc("victim.json", fmt.Sprintf(`{"name": "victim", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "groups": ["victim"]},
    {"id": 2, "type": "csv_sink", "args": {"path": %q}, "inputs": [1], "groups": ["LOCAL"]},
    {"id": 3, "type": "counter", "args": {"interval": "20ms"}, "outputs": [2], "groups": ["victim"]},
    {"id": 4, "type": "forward", "inputs": [2], "outputs": [3], "groups": ["victim"]},
    {"id": 5, "type": "csv_sink", "args": {"path": %q}, "inputs": [3], "groups": ["LOCAL"]}]}`,
		victimFinite, s.finCSV, s.liveCSV)))
	c.submit(c.writeDoc("own.json", `{"name": "own", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "1h"}, "outputs": [1], "node": "evil"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "evil"},
    {"id": 3, "type": "discard", "inputs": [2], "node": "evil"}]}`))

	var err error
	if s.op, err = nats.Connect(c.url, nats.Token(c.token), nats.Name("e2e operator")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.op.Close)
	if s.js, err = jetstream.New(s.op); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if s.ckptKV, err = s.js.KeyValue(ctx, protocol.CheckpointBucket); err != nil {
		t.Fatal(err)
	}
	c.waitFor("the victim's finite branch to finish and its live branch to run", func() bool {
		st := c.status("victim")
		want := map[int]string{1: protocol.StateFinished, 2: protocol.StateFinished,
			3: protocol.StateRunning, 4: protocol.StateRunning, 5: protocol.StateRunning}
		for id, state := range want {
			if jobState(st, id) != state {
				return false
			}
		}
		return st.State == protocol.StateRunning
	})
	checkExactlyOnce(t, s.finCSV, victimFinite)
	waitRows(c, s.liveCSV, 3)
	c.waitFor("own's jobs to run on evil and its counter to checkpoint", func() bool {
		st := c.status("own")
		for _, j := range st.Jobs {
			if j.Worker != evil || j.State != protocol.StateRunning {
				return false
			}
		}
		_, err := s.ckptKV.Get(ctx, s.ownKey)
		return err == nil
	})
	if s.ckpt, err = s.ckptKV.Get(ctx, s.victimKey); err != nil {
		t.Fatalf("the victim's checkpoint %s: %v", s.victimKey, err)
	}
	s.view = viewOf(c.status("victim"))
	s.ids = s.identities()
	s.consumers = map[string][]string{}
	for _, stream := range []string{depsStream, protocol.LogStream, ckptStream, protocol.PipeStream("victim", 3)} {
		s.consumers[stream] = s.consumerNames(stream)
	}
	s.a = c.attacker(evil)
	return s
}

// victimView is what marvelo status --json says of the victim that an attack could change.
type victimView struct {
	State, Error string
	Run          int
	Jobs         []string
	Events       []string
}

func viewOf(st protocol.PipelineStatus) victimView {
	v := victimView{State: st.State, Error: st.Error, Run: st.Run}
	for _, j := range st.Jobs {
		v.Jobs = append(v.Jobs, fmt.Sprintf("job %d on %s %s restarts %d %s", j.ID, j.Worker, j.State, j.Restarts, j.Error))
	}
	for _, e := range st.Events {
		v.Events = append(v.Events, fmt.Sprintf("job %d %s: %s", e.Job, e.Kind, e.Message))
	}
	return v
}

// listen subscribes with the operator's token on subject, before an attack.
func (s *routeScene) listen(subject string) *nats.Subscription {
	s.c.t.Helper()
	sub, err := s.op.SubscribeSync(subject)
	if err != nil {
		s.c.t.Fatal(err)
	}
	if err := s.op.Flush(); err != nil {
		s.c.t.Fatal(err)
	}
	s.c.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// heard is one listener after an attack: what it listened for, and which of its messages would
// be the attack's (nil: any message).
type heard struct {
	what   string
	sub    *nats.Subscription
	forged func(*nats.Msg) bool
}

// fromAttack tells the attack's messages on a subject that also carries honest ones: a direct
// get's or a pull's answer (it names the stream it came from), or the forged bytes.
func fromAttack(m *nats.Msg) bool {
	return m.Header.Get(jetstream.StreamHeader) != "" || m.Header.Get("Status") != "" ||
		bytes.Contains(m.Data, []byte(forgedMarker)) || bytes.Contains(m.Data, []byte(stopBody))
}

// nothingArrives waits quietWait, once for all the listeners, and fails for each that received a
// message of the attack. The attacker's connections are flushed first.
func nothingArrives(t *testing.T, attackers []*attacker, listeners ...heard) {
	t.Helper()
	for _, a := range attackers {
		if err := a.nc.Flush(); err != nil {
			t.Fatalf("flush %s: %v", a.name, err)
		}
	}
	deadline := time.Now().Add(quietWait)
	for _, l := range listeners {
		for {
			m, err := l.sub.NextMsg(max(time.Until(deadline), time.Millisecond))
			if err != nil {
				break
			}
			if l.forged == nil || l.forged(m) {
				t.Errorf("%s: %s arrived on %s (headers %v): %q", l.what, "a message", m.Subject, m.Header, m.Data)
				break
			}
		}
	}
}

// putOwn writes payload into the attacker's own checkpoint key (which it may write) and checks the
// bucket stored it.
func (a *attacker) putOwn(key string, payload []byte) {
	a.t.Helper()
	m, err := a.nc.Request("$KV."+protocol.CheckpointBucket+"."+key, payload, 5*time.Second)
	if err != nil {
		a.t.Fatalf("%s writes its own checkpoint %s: %v", a.name, key, err)
	}
	var ack struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
		Error  any    `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &ack); err != nil || ack.Error != nil || ack.Seq == 0 {
		a.t.Fatalf("%s writes its own checkpoint %s: %s (%v)", a.name, key, m.Data, err)
	}
}

// ownGetSubject is the direct get of a checkpoint key by its subject (last message), which a
// worker may publish for the checkpoint of a job placed on it.
func ownGetSubject(key string) string {
	return "$JS.API.DIRECT.GET." + ckptStream + ".$KV." + protocol.CheckpointBucket + "." + key
}

// steer is route 1: the attacker stores payload in its own checkpoint key, then asks for that key
// by direct get naming reply as the subject to answer on. Then it reads the key again, answered on
// its own inbox: the server did answer, the value got was payload (so the steered answer carried
// it), and, in order behind it, the steered get has been served.
func (a *attacker) steer(key string, payload []byte, reply string) {
	a.t.Helper()
	a.putOwn(key, payload)
	if err := a.nc.PublishRequest(ownGetSubject(key), reply, nil); err != nil {
		a.t.Fatalf("direct get answered on %s: %v", reply, err)
	}
	m, err := a.nc.Request(ownGetSubject(key), nil, 5*time.Second)
	if err != nil {
		a.t.Fatalf("%s reads its own checkpoint %s: %v", a.name, key, err)
	}
	if !bytes.Equal(m.Data, payload) {
		a.t.Fatalf("%s reads its own checkpoint %s: %q, want the %q it wrote", a.name, key, m.Data, payload)
	}
	select {
	case err := <-a.errs:
		a.t.Fatalf("%s: steering onto %s: the server refused something of the attack itself: %v", a.name, reply, err)
	default:
	}
}

// steerRefused is steer onto a JetStream subject ($JS.…, its API included): the server refuses a
// client's publish naming such a reply ("Permissions Violation for Publish with Reply of").
func (a *attacker) steerRefused(key string, payload []byte, reply string) {
	a.t.Helper()
	a.putOwn(key, payload)
	if err := a.nc.PublishRequest(ownGetSubject(key), reply, nil); err != nil {
		a.t.Fatalf("direct get answered on %s: %v", reply, err)
	}
	a.refused("direct get answered on "+reply, reply)
}

// pullSteered is route 1 by a pull: the attacker asks for the next message of its own input's
// consumer (a pull it may make), naming reply as the subject of the answer (a message, or the
// 404 status "no messages": either is published on reply). A control pull answered on its own
// inbox shows the server answers it.
func (a *attacker) pullSteered(stream, consumer, reply string) {
	a.t.Helper()
	subj := "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + consumer
	if err := a.nc.PublishRequest(subj, reply, []byte(`{"batch":1,"no_wait":true}`)); err != nil {
		a.t.Fatalf("pull answered on %s: %v", reply, err)
	}
	m, err := a.nc.Request(subj, []byte(`{"batch":1,"no_wait":true}`), 5*time.Second)
	if err != nil {
		a.t.Fatalf("%s pulls its own input %s: %v", a.name, consumer, err)
	}
	if m.Header.Get("Status") == "" && len(m.Data) == 0 {
		a.t.Fatalf("%s pulls its own input %s: an empty answer", a.name, consumer)
	}
}

// refusedWithin is refused with a bound, reporting instead of failing: whether the server's
// permissions violation naming subject came within d.
func (a *attacker) refusedWithin(subject string, d time.Duration) bool {
	a.t.Helper()
	if err := a.nc.Flush(); err != nil {
		a.t.Fatalf("flush: %v", err)
	}
	want := fmt.Sprintf("%q", subject)
	deadline := time.After(d)
	for {
		select {
		case err := <-a.errs:
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), want) {
				a.n++
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// rawClient connects like attacker, with the credentials of any identity (a read-only operator).
func (c *cluster) rawClient(name, creds string) *attacker {
	c.t.Helper()
	_, opts, err := worker.Creds(creds)
	if err != nil {
		c.t.Fatal(err)
	}
	a := &attacker{t: c.t, name: name, errs: make(chan error, 256)}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case a.errs <- err:
		default:
		}
	}))
	if a.nc, err = nats.Connect(c.url, opts...); err != nil {
		c.t.Fatalf("%s: connect: %v", name, err)
	}
	c.t.Cleanup(a.nc.Close)
	return a
}

// identities are the names enrolled, as the operator reads the identity bucket.
func (s *routeScene) identities() []string {
	s.c.t.Helper()
	ctx, cancel := context.WithTimeout(s.c.t.Context(), 10*time.Second)
	defer cancel()
	kv, err := s.js.KeyValue(ctx, "marvelo_identities")
	if err != nil {
		s.c.t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		s.c.t.Fatal(err)
	}
	var out []string
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, "groups.") && !strings.HasPrefix(k, "grant.") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// identityValue is a key of the identity bucket as the operator reads it (nil: none).
func (s *routeScene) identityValue(key string) []byte {
	s.c.t.Helper()
	ctx, cancel := context.WithTimeout(s.c.t.Context(), 10*time.Second)
	defer cancel()
	kv, err := s.js.KeyValue(ctx, "marvelo_identities")
	if err != nil {
		s.c.t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		s.c.t.Fatal(err)
	}
	return e.Value()
}

// consumerNames are a stream's consumers as the operator lists them.
func (s *routeScene) consumerNames(stream string) []string {
	s.c.t.Helper()
	m, err := s.op.Request("$JS.API.CONSUMER.NAMES."+stream, nil, 5*time.Second)
	if err != nil {
		s.c.t.Fatalf("consumers of %s: %v", stream, err)
	}
	var r struct {
		Consumers []string `json:"consumers"`
		Error     any      `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil || r.Error != nil {
		s.c.t.Fatalf("consumers of %s: %s (%v)", stream, m.Data, err)
	}
	slices.Sort(r.Consumers)
	return r.Consumers
}

// streamState is a stream's message count and last sequence, as the operator reads them.
func (s *routeScene) streamState(stream string) string {
	s.c.t.Helper()
	ctx, cancel := context.WithTimeout(s.c.t.Context(), 10*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		s.c.t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		s.c.t.Fatalf("stream %s: %v", stream, err)
	}
	return fmt.Sprintf("%d messages, last sequence %d", info.State.Msgs, info.State.LastSeq)
}

// rowsOnce asserts a CSV sink's rows are 1..k, each once, in order, and returns k.
func rowsOnce(t *testing.T, path string) int {
	t.Helper()
	lines := readLines(t, path)
	for i, l := range lines[1:] {
		if l != fmt.Sprint(i+1) {
			t.Fatalf("%s: row %d = %q, want %d (rows %s)", filepath.Base(path), i+1, l, i+1, head(lines[1:]))
		}
	}
	return len(lines) - 1
}

// unchanged asserts the victim after the attacks: marvelo status --json says what it said before
// (running, the same jobs on the same workers in the same states, no new event), its finished
// source's checkpoint has the value and revision it had, its sinks hold each value once in
// order, the live one goes on growing (it was not stopped), no identity was enrolled, and no
// consumer was made on the streams a push consumer could deliver from.
func (s *routeScene) unchanged(t *testing.T) {
	t.Helper()
	got := viewOf(s.c.status("victim"))
	if !reflect.DeepEqual(got, s.view) {
		t.Errorf("marvelo status --json of the victim changed:\nbefore %+v\nafter  %+v", s.view, got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	e, err := s.ckptKV.Get(ctx, s.victimKey)
	if err != nil {
		t.Fatalf("the victim's checkpoint %s: %v", s.victimKey, err)
	}
	if e.Revision() != s.ckpt.Revision() || !bytes.Equal(e.Value(), s.ckpt.Value()) {
		t.Errorf("the victim's checkpoint %s changed: revision %d %q, was revision %d %q",
			s.victimKey, e.Revision(), e.Value(), s.ckpt.Revision(), s.ckpt.Value())
	}
	checkExactlyOnce(t, s.finCSV, victimFinite)
	k := rowsOnce(t, s.liveCSV)
	if got.State == protocol.StateRunning {
		waitRows(s.c, s.liveCSV, k+3) // still running: not stopped, not failed by a forged block
		rowsOnce(t, s.liveCSV)
	}
	if got := s.identities(); !slices.Equal(got, s.ids) {
		t.Errorf("enrolled identities: %v, were %v", got, s.ids)
	}
	for stream, before := range s.consumers {
		if got := s.consumerNames(stream); !slices.Equal(got, before) {
			t.Errorf("consumers of %s: %v, were %v", stream, got, before)
		}
	}
}

// forgedBlock is a block the victim's sink would write as a row: the next SQN after its rows.
func (s *routeScene) forgedBlock(t *testing.T) []byte {
	t.Helper()
	next := uint64(rowsOnce(t, s.liveCSV) + 1)
	cbor, err := codec.New(codec.CBOR, 0)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := cbor.Append(nil, int64(forgedValue))
	if err != nil {
		t.Fatal(err)
	}
	return append(codec.AppendBlock(nil, codec.Block{SQN: next, Payload: payload}, 1), []byte(forgedMarker)...)
}

// offerProbe submits a pipeline whose source is offered to group gb (worker wv takes it) and
// returns once it is placed there: every offer of it has been sent.
func (s *routeScene) offerProbe(name string) {
	s.c.t.Helper()
	doc := s.c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1], "groups": ["gb"]},
    {"id": 2, "type": "discard", "inputs": [1], "groups": ["gb"]}]}`, name))
	s.c.submit(doc)
	s.c.waitFor(name+" to be placed on wv", func() bool {
		st := s.c.status(name)
		return jobWorker(st, 1) == "wv" && jobWorker(st, 2) == "wv"
	})
}

// forgedRegistration is route 4: a raw client with a live worker's credentials registers on the
// worker's own subject as another instance, claiming groups and the head node's flags. It returns
// the broker's reply.
func (a *attacker) forgedRegistration(info protocol.WorkerInfo) protocol.Reply {
	a.t.Helper()
	info.Name, info.Host, info.PID, info.Started, info.Slots = a.name, "forger", 1, time.Now(), protocol.LocalSlots
	return a.request(protocol.From(protocol.SubjRegister, a.name), info)
}

// checkNoGroupHeard subscribes the attacker to the subjects of groups it does not belong to and
// asserts each subscription is refused, and that no offer of the probe pipeline submitted then
// reaches any of them.
func (s *routeScene) checkNoGroupHeard(t *testing.T, a *attacker, probe string, subjects ...string) {
	t.Helper()
	var subs []*nats.Subscription
	for _, subj := range subjects {
		sub, err := a.nc.SubscribeSync(subj)
		if err != nil {
			t.Fatalf("subscribe %s: %v", subj, err)
		}
		subs = append(subs, sub)
		if !a.refusedWithin(subj, 2*time.Second) {
			t.Errorf("%s's subscription to %s was not refused", a.name, subj)
		}
	}
	s.offerProbe(probe)
	for i, sub := range subs {
		if m, err := sub.NextMsg(quietWait); err == nil {
			t.Errorf("%s heard %s on its subscription to %s: %q", a.name, m.Subject, subjects[i], m.Data)
		}
		_ = sub.Unsubscribe()
	}
}

// ---- make test: the fast subset ----

// TestSteeredRepliesPushConsumersAndForgedRegistrationOfAWorkerIdentityLeaveTheVictimUnchanged:
// with the credentials of worker evil, which runs a pipeline of its own, a raw client
//   - (route 1a) stores a stop request of the victim in its own checkpoint key and direct-gets it
//     with marvelo.api.stop as reply: the operator, subscribed there, receives nothing;
//   - (route 1e) stores a block of the victim's live pipe (the next SQN, a forged value) and
//     direct-gets it with that pipe as reply: nothing from the attack arrives on the pipe;
//   - (route 3) creates push consumers on the dependency and log streams delivering to
//     marvelo.api.stop: refused by the server, no consumer made, nothing delivered;
//   - (route 4) registers as another instance of live evil claiming groups LOCAL and gb, local
//     and any: the broker refuses it, evil's groups in the identity bucket are unchanged, and
//     evil's subscriptions to the subjects of gb, LOCAL and every group are refused and hear no
//     offer of a pipeline placed on group gb;
//
// and the victim is unchanged: status, checkpoint, rows each once in order and growing.
func TestSteeredRepliesPushConsumersAndForgedRegistrationOfAWorkerIdentityLeaveTheVictimUnchanged(t *testing.T) {
	s := newRouteScene(t)
	a := s.a
	stop := s.listen(protocol.SubjStop)
	pipe := s.listen(s.victimPipe)

	// Route 1a and 1e.
	a.steer(s.ownKey, []byte(stopBody), protocol.SubjStop)
	a.steer(s.ownKey, s.forgedBlock(t), s.victimPipe)
	// Route 3.
	for _, stream := range []string{depsStream, protocol.LogStream} {
		cfg := fmt.Sprintf(`{"stream_name":%q,"config":{"name":"spy","deliver_subject":%q,"deliver_policy":"all","ack_policy":"none"}}`, stream, protocol.SubjStop)
		a.publishRefused("push consumer on "+stream, "$JS.API.CONSUMER.CREATE."+stream, []byte(cfg))
		a.publishRefused("push consumer on "+stream, "$JS.API.CONSUMER.CREATE."+stream+".spy", []byte(cfg))
		a.publishRefused("durable push consumer on "+stream, "$JS.API.CONSUMER.DURABLE.CREATE."+stream+".spy", []byte(cfg))
	}
	nothingArrives(t, []*attacker{a},
		heard{"route 1a: a stop steered by direct get", stop, nil},
		heard{"route 1e: a block steered by direct get", pipe, fromAttack})

	// Route 4, last: on a broker that grants before it refuses, evil keeps what it was granted.
	groupsBefore := s.identityValue("groups." + evil)
	r := a.forgedRegistration(protocol.WorkerInfo{Groups: []string{"LOCAL", "gb"}, Local: true, Any: true})
	if r.OK {
		t.Errorf("a second registration of live worker %s claiming LOCAL, gb, local and any was accepted", evil)
	}
	t.Logf("the broker's answer to the forged registration: %q", r.Error)
	if got := s.identityValue("groups." + evil); !bytes.Equal(got, groupsBefore) {
		t.Errorf("the forged registration changed %s's groups in the identity bucket: %s, were %s", evil, got, groupsBefore)
	}
	s.checkNoGroupHeard(t, a, "probe", protocol.GroupSubject("gb", ">"), protocol.GroupSubject("LOCAL", ">"), protocol.GroupSubject("*", ">"))
	nothingArrives(t, []*attacker{a}, heard{"route 3: a push consumer's delivery", stop, nil})
	if !workerStatus(s.c, evil).Alive {
		t.Errorf("the live worker %s was declared dead by the forged registration", evil)
	}
	s.unchanged(t)
}

// ---- the long suite: make test-security ----

// freezeWorker starts worker name, stops its process (SIGSTOP) and waits until the broker has
// declared it dead: from then on nothing of it is heard, but what an attack sends in its name.
func (s *routeScene) freezeWorker(name string) {
	s.c.t.Helper()
	p := s.c.startWorker(name)
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		s.c.t.Fatal(err)
	}
	s.c.waitFor("frozen worker "+name+" to be declared dead", func() bool { return !workerStatus(s.c, name).Alive })
}

// TestSecurityRoute1RepliesOfDirectGetsOfItsOwnCheckpointSteeredByAWorkerIdentityReachNoSubjectAndChangeNothing:
// worker evil stores bytes of its choosing in its own checkpoint key and direct-gets the key with
// a reply subject that is (a) marvelo.api.stop with a stop of the victim, (b) marvelo.api.submit
// with a pipeline that runs /bin/sh, (c) marvelo.api.identity.add with an operator identity, (d)
// the heartbeat subject of a frozen worker, (e) the victim's live pipe with a block of the next
// SQN, (f) the checkpoint key of the victim's source with a far checkpoint. The operator,
// subscribed on each subject, receives nothing of it; the victim is unchanged (status, rows,
// checkpoint value and revision); no pipeline pwned exists and /bin/sh ran nothing; no identity
// was enrolled and mallory's secret opens no connection; the frozen worker stays dead.
func TestSecurityRoute1RepliesOfDirectGetsOfItsOwnCheckpointSteeredByAWorkerIdentityReachNoSubjectAndChangeNothing(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	s.freezeWorker("wb")
	s.ids = s.identities() // wb's, enrolled by the test
	a := s.a
	marker := filepath.Join(s.c.dir, "pwned")
	pwned := fmt.Sprintf(`{"name": "pwned", "jobs": [
    {"id": 1, "exec": {"path": "/bin/sh", "params": ["-c", "touch %s"]}, "outputs": [1]},
    {"id": 2, "type": "discard", "inputs": [1]}]}`, marker)
	if _, err := pipeline.Parse([]byte(pwned)); err != nil {
		t.Fatalf("the forged submission is not even a valid document: %v", err)
	}
	submit, _ := json.Marshal(protocol.SubmitRequest{Document: []byte(pwned)})
	secret := "mallory-secret"
	sum := sha256.Sum256([]byte(secret))
	enrol, _ := json.Marshal(map[string]string{"name": "mallory", "role": "operator", "hash": hex.EncodeToString(sum[:])})
	hb, _ := json.Marshal(protocol.Heartbeat{Worker: "wb", Time: time.Now()})
	far, _ := json.Marshal(protocol.Checkpoint{SQN: forgedValue, State: binary.AppendVarint(nil, forgedValue)})
	routes := []struct {
		what, subject string
		payload       []byte
		forged        func(*nats.Msg) bool
	}{
		{"1a: stop", protocol.SubjStop, []byte(stopBody), nil},
		{"1b: submit of /bin/sh", protocol.SubjSubmit, submit, nil},
		{"1c: identity add", protocol.SubjIdentityAdd, enrol, nil},
		{"1d: heartbeat of a frozen worker", protocol.SubjHeartbeatPrefix + "wb", hb, nil},
		{"1e: a block into the victim's pipe", s.victimPipe, s.forgedBlock(t), fromAttack},
		{"1f: the victim's checkpoint", "$KV." + protocol.CheckpointBucket + "." + s.victimKey, far, nil},
	}
	var listeners []heard
	for _, r := range routes {
		listeners = append(listeners, heard{"route " + r.what, s.listen(r.subject), r.forged})
	}
	for _, r := range routes {
		a.steer(s.ownKey, r.payload, r.subject)
	}
	nothingArrives(t, []*attacker{a}, listeners...)

	s.unchanged(t)
	out, errOut, code := s.c.marvelo("status", "--json")
	if code != 0 {
		t.Fatalf("marvelo status --json: exit %d: %s", code, errOut)
	}
	var sts []protocol.PipelineStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		if st.Name == "pwned" {
			t.Errorf("route 1b: pipeline pwned was submitted: %s", st.State)
		}
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("route 1b: /bin/sh ran: %s exists (%v)", marker, err)
	}
	if nc, err := nats.Connect(s.c.url, nats.Token(protocol.IdentityToken("mallory", secret))); err == nil {
		nc.Close()
		t.Errorf("route 1c: mallory's secret opens a connection")
	}
	if workerStatus(s.c, "wb").Alive {
		t.Errorf("route 1d: the frozen worker wb is alive again")
	}
}

// TestSecurityRoute1RepliesOfPullsOfItsOwnInputSteeredByAWorkerIdentityReachNeitherTheStopAPINorTheVictimsPipe:
// worker evil pulls from its own input's consumer (a forward of its own pipeline), naming as the
// reply marvelo.api.stop, then the victim's live pipe: the pulls are answered (a control pull on
// evil's inbox gets the answer), the operator subscribed on both subjects receives nothing of
// them, and the victim is unchanged.
func TestSecurityRoute1RepliesOfPullsOfItsOwnInputSteeredByAWorkerIdentityReachNeitherTheStopAPINorTheVictimsPipe(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	a := s.a
	stream := protocol.PipeStream("own", 1)
	consumer := s.c.pipeConsumer(stream)
	stop := s.listen(protocol.SubjStop)
	pipe := s.listen(s.victimPipe)
	a.pullSteered(stream, consumer, protocol.SubjStop)
	a.pullSteered(stream, consumer, s.victimPipe)
	nothingArrives(t, []*attacker{a},
		heard{"a stop steered by a pull", stop, nil},
		heard{"a block steered by a pull", pipe, fromAttack})
	s.unchanged(t)
}

// TestSecurityRoute1RepliesOfDirectGetsOfTheLogStreamSteeredByAReadOnlyIdentityDoNotReachTheStopAPI:
// worker evil writes a stop of the victim as a line of its own log; a read-only operator identity
// direct-gets that line from the log stream (both forms: the request body and the subject's last
// message), naming marvelo.api.stop as the reply. The read-only identity gets the line on its own
// inbox, the operator subscribed on marvelo.api.stop receives nothing, and the victim is unchanged.
func TestSecurityRoute1RepliesOfDirectGetsOfTheLogStreamSteeredByAReadOnlyIdentityDoNotReachTheStopAPI(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	ro := s.c.rawClient("dash", s.c.enrolAs("operator", "dash", "--read-only"))
	s.ids = s.identities() // dash's, enrolled by the test
	logSubj := protocol.LogSubject("own", ownKeyJob)
	if _, err := s.a.nc.Request(logSubj, []byte(stopBody), 5*time.Second); err != nil {
		t.Fatalf("evil writes its own log line: %v", err)
	}
	stop := s.listen(protocol.SubjStop)
	body, _ := json.Marshal(map[string]string{"last_by_subj": logSubj})
	gets := []struct {
		subject string
		body    []byte
	}{
		{"$JS.API.DIRECT.GET." + protocol.LogStream, body},
		{"$JS.API.DIRECT.GET." + protocol.LogStream + "." + logSubj, nil},
	}
	for _, g := range gets {
		if err := ro.nc.PublishRequest(g.subject, protocol.SubjStop, g.body); err != nil {
			t.Fatal(err)
		}
		m, err := ro.nc.Request(g.subject, g.body, 5*time.Second)
		if err != nil || string(m.Data) != stopBody {
			t.Fatalf("the read-only identity's own direct get %s: %v %q, want %q", g.subject, err, m.Data, stopBody)
		}
	}
	select {
	case err := <-ro.errs:
		t.Fatalf("the read-only identity's direct gets were refused: %v", err)
	default:
	}
	nothingArrives(t, []*attacker{ro}, heard{"a stop steered by a read-only identity's direct get", stop, nil})
	s.unchanged(t)
}

// sumPipelineDoc is counter → the executable sum.sh shipped as the dependencies folder sum →
// csv_sink (LOCAL), with the first two jobs placed on node; json pipes.
func sumPipelineDoc(c *cluster, name, node string) (doc, out string) {
	c.addDependencies("sum", "sum.sh")
	out = filepath.Join(c.dir, name+".csv")
	doc = c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 5}, "outputs": [1], "node": %q},
    {"id": 2, "exec": {"path": "./sum.sh", "params": ["--add", "0"], "dependencies": "sum"}, "inputs": [1], "outputs": [2], "node": %q},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2], "groups": ["LOCAL"]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`, name, node, node, out))
	return doc, out
}

// readArchive reads an object of the dependency bucket as a worker does (direct gets, checked
// against its metadata), with the operator's connection.
func readArchive(t *testing.T, nc *nats.Conn, digest string) ([]byte, *jetstream.ObjectInfo, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return objget.GetBytes(ctx, nc, protocol.DepsBucket, digest)
}

// TestSecurityRoute2AWorkerIdentityWritesNoChunkNorMetadataOfTheDependencyArchiveDirectlyNorBySteeredReplies:
// after a run uploaded the dependencies folder sum, worker evil publishes a chunk of the archive's
// object, a new chunk and the object's metadata on the bucket's subjects (refused by the server,
// as are a purge and a message delete of its stream), then has its own checkpoint's direct get
// answered on those subjects (route 1). The operator, subscribed on the bucket's subjects,
// receives nothing of it; the stream holds the messages it held; the archive the operator reads
// is the folder's, byte for byte; and the victim is unchanged.
func TestSecurityRoute2AWorkerIdentityWritesNoChunkNorMetadataOfTheDependencyArchiveDirectlyNorBySteeredReplies(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	doc, out := sumPipelineDoc(s.c, "withdeps", "wv")
	s.c.submit(doc)
	waitFinished(s.c, "withdeps")
	checkExactlyOnce(t, out, 5)
	archive, digest, err := deps.Pack(filepath.Join(s.c.dir, "sum"))
	if err != nil {
		t.Fatal(err)
	}
	got, info, err := readArchive(t, s.op, digest)
	if err != nil || !bytes.Equal(got, archive) {
		t.Fatalf("the archive %s as uploaded: %v (%d bytes, want %d)", digest, err, len(got), len(archive))
	}
	before := s.streamState(depsStream)

	a := s.a
	evilBytes := []byte("#!/bin/sh\ntouch pwned # " + forgedMarker + "\n")
	evilSum := sha256.Sum256(evilBytes)
	meta, _ := json.Marshal(jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: digest}, Bucket: protocol.DepsBucket,
		NUID: "evilnuid", Size: uint64(len(evilBytes)), Chunks: 1, ModTime: time.Now(),
		Digest: "SHA-256=" + base64.URLEncoding.EncodeToString(evilSum[:])})
	bucket := s.listen("$O." + protocol.DepsBucket + ".>")
	metaSubj := objget.MetaSubject(protocol.DepsBucket, digest)
	for _, w := range []struct{ what, subject string }{
		{"the archive's chunk", objget.ChunkSubject(protocol.DepsBucket, info.NUID)},
		{"a new chunk", objget.ChunkSubject(protocol.DepsBucket, "evilnuid")},
	} {
		a.publishRefused(w.what, w.subject, evilBytes)
		a.steer(s.ownKey, evilBytes, w.subject)
	}
	a.publishRefused("the archive's metadata", metaSubj, meta)
	a.steer(s.ownKey, meta, metaSubj)
	a.publishRefused("purge of the dependency stream", "$JS.API.STREAM.PURGE."+depsStream, nil)
	a.publishRefused("message delete in the dependency stream", "$JS.API.STREAM.MSG.DELETE."+depsStream, []byte(`{"seq":1}`))
	nothingArrives(t, []*attacker{a}, heard{"a write into the dependency bucket", bucket, nil})

	if after := s.streamState(depsStream); after != before {
		t.Errorf("stream %s: %s, was %s", depsStream, after, before)
	}
	if got, _, err := readArchive(t, s.op, digest); err != nil || !bytes.Equal(got, archive) {
		t.Errorf("the archive %s after the attacks: %v (%d bytes, want the folder's %d)", digest, err, len(got), len(archive))
	}
	s.unchanged(t)
}

// TestSecurityRoute2AWorkerRefusesAnArchiveWhoseBytesAreNotItsDigestAndOnlyAReplacedObjectIsHealedBySubmit
// simulates tampering with the dependency bucket by someone with full rights (the operator):
//   - the archive's chunk replaced by other bytes of the same size, its metadata kept: the next
//     marvelo submit does not upload again (the metadata still names the digest and size), and
//     the worker refuses the archive at prepare (its read does not match the metadata): marvelo
//     submit fails naming the digest, no pipeline is kept, no row written, nothing cached;
//   - the whole object replaced by another archive (sum.sh that would touch a marker file), its
//     metadata consistent with it: a submission naming the digest without uploading (a raw
//     SubmitRequest) is refused with the worker's "dependencies DIGEST: archive digest is
//     OTHER, not the name it was fetched by: refused", no pipeline kept, the marker not made,
//     nothing cached;
//   - then marvelo submit uploads the folder again, the operator reads the folder's archive
//     byte for byte, and the pipeline runs with every row once.
func TestSecurityRoute2AWorkerRefusesAnArchiveWhoseBytesAreNotItsDigestAndOnlyAReplacedObjectIsHealedBySubmit(t *testing.T) {
	longSecurity(t)
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("wd", "--slots", "4")
	op, err := nats.Connect(c.url, nats.Token(c.token))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	js, err := jetstream.New(op)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := js.ObjectStore(ctx, protocol.DepsBucket)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := sumPipelineDoc(c, "first", "wd")
	archive, digest, err := deps.Pack(filepath.Join(c.dir, "sum"))
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(c.dir, "wd", ".marvelo-cache", "deps", digest+".tar.gz")
	if _, err := store.PutBytes(ctx, digest, archive); err != nil {
		t.Fatal(err)
	}
	info, err := store.GetInfo(ctx, digest)
	if err != nil {
		t.Fatal(err)
	}

	// The chunk replaced, the metadata kept.
	chunkSubj := objget.ChunkSubject(protocol.DepsBucket, info.NUID)
	stream, err := js.Stream(ctx, depsStream)
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := stream.GetLastMsgForSubject(ctx, chunkSubj)
	if err != nil || info.Chunks != 1 {
		t.Fatalf("the archive's chunk: %v (%d chunks)", err, info.Chunks)
	}
	if err := stream.DeleteMsg(ctx, chunk.Sequence); err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(chunk.Data)
	for i := range tampered {
		tampered[i] ^= 0xff
	}
	if _, err := js.Publish(ctx, chunkSubj, tampered); err != nil {
		t.Fatal(err)
	}
	_, why, code := c.marvelo("submit", c.writeDoc("chunk.json", strings.Replace(mustRead(t, doc), `"first"`, `"chunk"`, 1)))
	t.Logf("chunk replaced: marvelo submit: exit %d: %s", code, why)
	if code == 0 || !strings.Contains(why, "fetch dependencies "+digest) || !strings.Contains(why, "digests do not match") {
		t.Errorf("chunk replaced: marvelo submit exit %d, %q; want it refused, naming the digest %s and the mismatch", code, why, digest)
	}
	if !noPipeline(c, "chunk") {
		t.Errorf("chunk replaced: the refused pipeline chunk exists")
	}
	if rows := readLinesIfAny(filepath.Join(c.dir, "first.csv")); len(rows) > 1 {
		t.Errorf("chunk replaced: rows written: %v", rows)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("chunk replaced: the worker cached the archive (%v)", err)
	}

	// The whole object replaced by another archive, consistent with its metadata.
	evilDir := filepath.Join(c.dir, "evil-sum")
	marker := filepath.Join(c.dir, "pwned")
	if err := os.MkdirAll(evilDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(evilDir, "sum.sh"), []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	evilArchive, evilDigest, err := deps.Pack(evilDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(ctx, digest, evilArchive); err != nil {
		t.Fatal(err)
	}
	raw := []byte(strings.Replace(mustRead(t, doc), `"first"`, `"replaced"`, 1))
	req, _ := json.Marshal(protocol.SubmitRequest{Document: raw, Dependencies: map[int]string{2: digest}})
	m, err := op.Request(protocol.SubjSubmit, req, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r protocol.SubmitReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatalf("raw submission naming the archive: %s (%v)", m.Data, err)
	}
	t.Logf("object replaced: the broker's answer to a submission naming it: %s", m.Data)
	want := fmt.Sprintf("dependencies %s: archive digest is %s, not the name it was fetched by: refused", digest, evilDigest)
	if r.OK || !strings.Contains(r.Error, want) {
		t.Errorf("object replaced: the submission was answered %s; want it refused with %q", m.Data, want)
	}
	if !noPipeline(c, "replaced") {
		t.Errorf("object replaced: the refused pipeline replaced exists")
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("object replaced: the other archive's sum.sh ran (%v)", err)
	}
	if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("object replaced: the worker cached the archive (%v)", err)
	}

	// marvelo submit heals it.
	healedDoc, out := sumPipelineDoc(c, "healed", "wd")
	c.submit(healedDoc)
	waitFinished(c, "healed")
	checkExactlyOnce(t, out, 5)
	if got, _, err := readArchive(t, op, digest); err != nil || !bytes.Equal(got, archive) {
		t.Errorf("the archive %s after marvelo submit: %v (%d bytes, want the folder's %d)", digest, err, len(got), len(archive))
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the other archive's sum.sh ran (%v)", err)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// noPipeline reports whether marvelo status knows no pipeline name.
func noPipeline(c *cluster, name string) bool {
	c.t.Helper()
	_, errOut, code := c.marvelo("status", name, "--json")
	return code != 0 && strings.Contains(errOut, fmt.Sprintf("no pipeline named %q", name))
}

// pushConsumerRequests are the requests that create a push consumer on stream delivering to
// deliver, in every form of the JetStream API.
func pushConsumerRequests(stream, deliver string) map[string][]byte {
	cfg := []byte(fmt.Sprintf(`{"stream_name":%q,"config":{"name":"spy","durable_name":"spy","deliver_subject":%q,"deliver_policy":"all","ack_policy":"none"}}`, stream, deliver))
	eph := []byte(fmt.Sprintf(`{"stream_name":%q,"config":{"deliver_subject":%q,"deliver_policy":"all","ack_policy":"none"}}`, stream, deliver))
	return map[string][]byte{
		"$JS.API.CONSUMER.CREATE." + stream:                  eph,
		"$JS.API.CONSUMER.CREATE." + stream + ".spy":         cfg,
		"$JS.API.CONSUMER.CREATE." + stream + ".spy.>":       cfg,
		"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".spy": cfg,
	}
}

// TestSecurityRoute3PushConsumersOnTheDependencyAndLogStreamsAreRefusedToWorkerAndReadOnlyIdentities:
// with an archive in the dependency bucket and lines in the log stream, worker evil and a
// read-only operator identity ask for push consumers on both streams delivering to
// marvelo.api.stop, in every form of the API (refused by the server), and evil asks for its own
// checkpoint's direct get to be answered on those API subjects (route 1) with the same requests
// (refused by the server: a reply subject of JetStream's, "Publish with Reply of"). No
// consumer is made on either stream (the operator lists them), nothing is delivered on
// marvelo.api.stop, and the victim is unchanged.
func TestSecurityRoute3PushConsumersOnTheDependencyAndLogStreamsAreRefusedToWorkerAndReadOnlyIdentities(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	ro := s.c.rawClient("dash", s.c.enrolAs("operator", "dash", "--read-only"))
	s.ids = s.identities() // dash's, enrolled by the test
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	store, err := s.js.ObjectStore(ctx, protocol.DepsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutBytes(ctx, "something-to-deliver", []byte(stopBody)); err != nil {
		t.Fatal(err)
	}
	stop := s.listen(protocol.SubjStop)
	for _, stream := range []string{depsStream, protocol.LogStream} {
		for subj, req := range pushConsumerRequests(stream, protocol.SubjStop) {
			s.a.publishRefused("push consumer", subj, req)
			ro.publishRefused("push consumer", subj, req)
			if !strings.HasSuffix(subj, ".>") {
				s.a.steerRefused(s.ownKey, req, subj)
			}
		}
	}
	nothingArrives(t, []*attacker{s.a, ro}, heard{"a push consumer's delivery", stop, nil})
	s.unchanged(t) // the consumers of both streams among what it checks
}

// TestSecurityRoute4ForgedRegistrationsOfALiveWorkerIdentityAreRefusedAndGrantItNoGroup: while
// worker evil runs its own pipeline, a raw client with its credentials registers as another
// instance of evil, claiming in turn groups LOCAL and gb with the local and any flags, the local
// flag alone, the any flag alone, and group gb alone. The broker refuses each; evil's groups in
// the identity bucket stay what evil registered; evil's subscriptions to the subjects of gb,
// LOCAL and every group are refused, and hear no offer of a pipeline placed on group gb; evil
// stays alive with its pipeline's jobs running on it; and the victim is unchanged.
func TestSecurityRoute4ForgedRegistrationsOfALiveWorkerIdentityAreRefusedAndGrantItNoGroup(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	groups := s.identityValue("groups." + evil)
	own := viewOf(s.c.status("own"))
	for i, claim := range []protocol.WorkerInfo{
		{Groups: []string{"LOCAL", "gb"}, Local: true, Any: true},
		{Local: true},
		{Any: true},
		{Groups: []string{"gb"}},
	} {
		what := fmt.Sprintf("groups %v local %v any %v", claim.Groups, claim.Local, claim.Any)
		if r := s.a.forgedRegistration(claim); r.OK {
			t.Errorf("a second registration of live worker %s claiming %s was accepted", evil, what)
		} else {
			t.Logf("claiming %s: %s", what, r.Error)
		}
		if got := s.identityValue("groups." + evil); !bytes.Equal(got, groups) {
			t.Errorf("claiming %s changed %s's groups in the identity bucket: %s, were %s", what, evil, got, groups)
		}
		s.checkNoGroupHeard(t, s.a, fmt.Sprintf("probe%d", i), protocol.GroupSubject("gb", ">"),
			protocol.GroupSubject("LOCAL", ">"), protocol.GroupSubject("*", ">"))
	}
	if !workerStatus(s.c, evil).Alive {
		t.Errorf("the live worker %s was declared dead by the forged registrations", evil)
	}
	if got := viewOf(s.c.status("own")); !reflect.DeepEqual(got, own) {
		t.Errorf("evil's own pipeline changed:\nbefore %+v\nafter  %+v", own, got)
	}
	s.unchanged(t)
}

// TestSecurityRoute5IdentityCommandsWithWorkerOrReadOnlyCredentialsFailWithin2sNamingTheIdentityAndTheRight:
// marvelo-broker worker add, operator add and worker remove, run with worker evil's credentials
// and with a read-only operator's, exit 1 within 2 s, with an error naming the identity, its role
// and the right it lacks; no credentials file is left and the enrolled identities are unchanged.
func TestSecurityRoute5IdentityCommandsWithWorkerOrReadOnlyCredentialsFailWithin2sNamingTheIdentityAndTheRight(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	ro := s.c.enrolAs("operator", "dash", "--read-only")
	s.ids = s.identities() // dash's, enrolled by the test
	for _, who := range []struct{ creds, says string }{
		{s.c.enrol(evil), `identity "evil" (a worker)`},
		{ro, `identity "dash" (a read-only operator)`},
	} {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"worker", "add", "x"}, "enrol worker x: permission denied: " + who.says +
				" may not publish to marvelo.api.identity.add: enrolling identities is an operator's right"},
			{[]string{"operator", "add", "y"}, "enrol operator y: permission denied: " + who.says +
				" may not publish to marvelo.api.identity.add: enrolling identities is an operator's right"},
			{[]string{"worker", "remove", "wv"}, "remove identity wv: permission denied: " + who.says +
				" may not publish to marvelo.api.identity.remove: removing identities is an operator's right"},
		} {
			args := append(tc.args, "--broker", s.c.url, "--creds", who.creds)
			cmd := exec.Command(filepath.Join(binDir, "marvelo-broker"), args...)
			cmd.Dir = s.c.dir
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			began := time.Now()
			err := cmd.Run()
			took := time.Since(began)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("marvelo-broker %s: %v, %q; want exit 1 and %q", strings.Join(args, " "), err, stderr.String(), tc.want)
			}
			if took > 2*time.Second {
				t.Errorf("marvelo-broker %s: failed after %v, want within 2s", strings.Join(args, " "), took)
			}
		}
	}
	for _, f := range []string{"x.creds", "y.creds"} {
		if _, err := os.Stat(filepath.Join(s.c.dir, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind (%v)", f, err)
		}
	}
	if !workerStatus(s.c, "wv").Alive {
		t.Errorf("worker wv, whose removal was refused, is not alive")
	}
	s.unchanged(t)
}

// TestSecurityWorkerTokenCannotSteerADirectGetReplyOntoTheStopAPI: the shared --worker-token
// "may not use the operator API" (DESIGN.md §10). A client with that token stores a stop of the
// victim in a checkpoint key (it may write every checkpoint) and direct-gets it with
// marvelo.api.stop as reply: the operator, subscribed there, receives nothing, and the victim
// keeps running.
func TestSecurityWorkerTokenCannotSteerADirectGetReplyOntoTheStopAPI(t *testing.T) {
	longSecurity(t)
	c := newCluster(t, clusterOpts{token: "e2e-operator-token", workerToken: "e2e-worker-token"})
	c.startWorker("wv", "--groups", "victim", "--slots", "4")
	doc, out := chainDoc(c, "victim", 1000000, [3]string{}, [3]string{"victim", "victim", "victim"})
	c.submit(doc)
	waitRows(c, out, 3)
	op, err := nats.Connect(c.url, nats.Token(c.token))
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	stop, err := op.SubscribeSync(protocol.SubjStop)
	if err != nil {
		t.Fatal(err)
	}
	if err := op.Flush(); err != nil {
		t.Fatal(err)
	}
	a := &attacker{t: t, name: "worker token", errs: make(chan error, 256)}
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		select {
		case a.errs <- err:
		default:
		}
	})
	if a.nc, err = nats.Connect(c.url, nats.Token(c.workerToken), onErr); err != nil {
		t.Fatal(err)
	}
	defer a.nc.Close()
	a.publishRefused("stop", protocol.SubjStop, []byte(stopBody))
	a.steer("anything.1", []byte(stopBody), protocol.SubjStop)
	nothingArrives(t, []*attacker{a}, heard{"a stop steered by a worker token's direct get", stop, nil})
	if st := c.status("victim"); st.State != protocol.StateRunning {
		t.Fatalf("the victim is %s, want running", st.State)
	}
	k := rowsOnce(t, out)
	waitRows(c, out, k+3)
	rowsOnce(t, out)
}
