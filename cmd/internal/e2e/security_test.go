package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
)

// attacker is a raw nats.go client holding a worker's credentials: what a compromised worker can do.
type attacker struct {
	t    *testing.T
	name string
	nc   *nats.Conn
	errs chan error
	n    uint64 // refusals seen
}

func (c *cluster) attacker(name string) *attacker {
	c.t.Helper()
	_, opts, err := worker.Creds(c.enrol(name))
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
		c.t.Fatalf("attacker %s: connect: %v", name, err)
	}
	c.t.Cleanup(a.nc.Close)
	return a
}

// refused waits for the server's permissions violation naming subject.
func (a *attacker) refused(what, subject string) {
	a.t.Helper()
	if err := a.nc.Flush(); err != nil {
		a.t.Fatalf("%s: flush: %v", what, err)
	}
	want := fmt.Sprintf("%q", subject)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-a.errs:
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), want) {
				a.n++
				return
			}
		case <-deadline:
			a.t.Fatalf("%s: %s was not refused", what, subject)
		}
	}
}

func (a *attacker) publishRefused(what, subject string, data []byte) {
	a.t.Helper()
	if err := a.nc.PublishRequest(subject, a.nc.NewRespInbox(), data); err != nil {
		a.t.Fatalf("%s: publish: %v", what, err)
	}
	a.refused(what, subject)
}

func (a *attacker) subscribeRefused(what, subject string) {
	a.t.Helper()
	sub, err := a.nc.SubscribeSync(subject)
	if err != nil {
		a.t.Fatalf("%s: subscribe: %v", what, err)
	}
	a.refused(what, subject)
	// Nothing reaches a refused subscription.
	if m, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		a.t.Fatalf("%s: received %q on %s", what, m.Data, m.Subject)
	}
}

// request sends a request the server lets through and returns the broker's reply.
func (a *attacker) request(subject string, v any) protocol.Reply {
	a.t.Helper()
	data, _ := json.Marshal(v)
	m, err := a.nc.Request(subject, data, 10*time.Second)
	if err != nil {
		a.t.Fatalf("request %s: %v", subject, err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		a.t.Fatalf("request %s: reply %q: %v", subject, m.Data, err)
	}
	return r
}

// victimConsumer returns the durable consumer of the victim's pipe (the operator may look).
func (c *cluster) pipeConsumer(stream string) string {
	c.t.Helper()
	nc, err := nats.Connect(c.url, nats.Token(c.token))
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	m, err := nc.Request("$JS.API.CONSUMER.NAMES."+stream, nil, 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	var r struct {
		Consumers []string `json:"consumers"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil || len(r.Consumers) != 1 {
		c.t.Fatalf("consumers of %s: %s (%v)", stream, m.Data, err)
	}
	return r.Consumers[0]
}

func (c *cluster) refusedCount(name string) uint64 {
	out, _, code := c.marvelo("workers", "--json")
	if code != 0 {
		return 0
	}
	var ws []protocol.WorkerStatus
	if json.Unmarshal([]byte(out), &ws) != nil {
		return 0
	}
	for _, w := range ws {
		if w.Name == name {
			return w.Refused
		}
	}
	return 0
}

// TestWorkerIdentityAttacksAreRefused: a worker identity that runs no job of the victim pipeline
// tries, with a raw nats.go client, every attack of issue 12 while the victim runs; each one is
// refused by the server or the broker, is logged and counted for that worker, and the victim
// finishes with every block exactly once.
func TestWorkerIdentityAttacksAreRefused(t *testing.T) {
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("wv", "--groups", "victim", "--slots", "3")
	c.startWorker("evil")
	const n = 3000
	doc, out := chainDoc(c, "victim", n, [3]string{}, [3]string{"victim", "victim", "victim"})
	c.submit(doc)
	waitRows(c, out, 5)
	a := c.attacker("evil")

	pipe1 := protocol.PipeSubject("victim", 1)
	stream1 := protocol.PipeStream("victim", 1)
	consumer := c.pipeConsumer(stream1)
	block := []byte(`{"sqn": 2, "data": [999999]}`)

	// Forged blocks into the victim's pipes, in any form.
	a.publishRefused("forged block", pipe1, block)
	a.publishRefused("forged block, next pipe", protocol.PipeSubject("victim", 2), block)
	// Its consumers, streams and state.
	a.publishRefused("consumer delete", "$JS.API.CONSUMER.DELETE."+stream1+"."+consumer, nil)
	a.publishRefused("consumer create", "$JS.API.CONSUMER.CREATE."+stream1+".spy", []byte(`{"stream_name":"`+stream1+`","config":{"name":"spy"}}`))
	a.publishRefused("durable consumer create", "$JS.API.CONSUMER.DURABLE.CREATE."+stream1+".spy", nil)
	a.publishRefused("consumer update", "$JS.API.CONSUMER.CREATE."+stream1+"."+consumer, nil)
	a.publishRefused("consumer pull", "$JS.API.CONSUMER.MSG.NEXT."+stream1+"."+consumer, []byte(`{"batch":10}`))
	a.publishRefused("stream list", "$JS.API.STREAM.LIST", nil)
	a.publishRefused("stream names", "$JS.API.STREAM.NAMES", nil)
	a.publishRefused("stream create", "$JS.API.STREAM.CREATE.EVIL", []byte(`{"name":"EVIL","subjects":["marvelo.victim.>"]}`))
	a.publishRefused("stream update", "$JS.API.STREAM.UPDATE."+stream1, nil)
	a.publishRefused("stream purge", "$JS.API.STREAM.PURGE."+stream1, nil)
	a.publishRefused("stream delete", "$JS.API.STREAM.DELETE."+stream1, nil)
	a.publishRefused("message delete", "$JS.API.STREAM.MSG.DELETE."+stream1, nil)
	a.publishRefused("stream info", "$JS.API.STREAM.INFO."+stream1, nil)
	// Checkpoints: overwrite, read.
	ckpt := "$KV." + protocol.CheckpointBucket + "." + protocol.CheckpointKey("victim", 1)
	a.publishRefused("checkpoint overwrite", ckpt, []byte(`{"sqn": 999999}`))
	a.publishRefused("checkpoint read", "$JS.API.DIRECT.GET.KV_"+protocol.CheckpointBucket+"."+ckpt, nil)
	a.subscribeRefused("checkpoint watch", "$KV."+protocol.CheckpointBucket+".>")
	// Reading the victim's pipes and logs, directly or through the replies to others.
	a.publishRefused("pipe read", "$JS.API.DIRECT.GET."+stream1, []byte(`{"seq":1}`))
	a.subscribeRefused("pipe read", pipe1)
	a.subscribeRefused("pipe read, every pipeline", "marvelo.>")
	a.subscribeRefused("others' replies", "_INBOX.>")
	a.subscribeRefused("log read", protocol.LogFilter("victim"))
	a.publishRefused("log stream read", "$JS.API.CONSUMER.CREATE."+protocol.LogStream, nil)
	// The operator API.
	a.publishRefused("stop", protocol.SubjStop, []byte(`{"pipeline":"victim"}`))
	// Speaking for another worker: its heartbeat, registration, job states.
	a.publishRefused("heartbeat replay", protocol.SubjHeartbeatPrefix+"wv", []byte(`{"worker":"wv"}`))
	a.publishRefused("registration as another", protocol.From(protocol.SubjRegister, "wv"), []byte(`{"name":"wv"}`))
	a.publishRefused("deregistration of another", protocol.From(protocol.SubjDeregister, "wv"), []byte(`{"name":"wv"}`))
	a.publishRefused("job state of another", protocol.From(protocol.SubjJobState, "wv"), nil)
	// On its own subjects, the broker refuses a message that speaks for another worker.
	for _, subj := range []string{protocol.SubjRegister, protocol.SubjDeregister} {
		if r := a.request(protocol.From(subj, "evil"), protocol.WorkerInfo{Name: "wv", Slots: 1}); r.OK || !strings.Contains(r.Error, "refused") {
			t.Fatalf("%s on behalf of wv: %+v, want a refusal", subj, r)
		}
	}
	forged := protocol.JobState{Pipeline: "victim", Job: 2, Worker: "wv", State: protocol.StateFailed, Error: "forged"}
	if r := a.request(protocol.From(protocol.SubjJobState, "evil"), forged); r.OK || !strings.Contains(r.Error, "refused") {
		t.Fatalf("job state on behalf of wv: %+v, want a refusal", r)
	}
	forged.Worker = "evil" // for a job it does not run: ignored
	a.request(protocol.From(protocol.SubjJobState, "evil"), forged)

	st := waitFinished(c, "victim")
	checkExactlyOnce(t, out, n)
	for _, j := range st.Jobs {
		if j.Worker == "evil" {
			t.Errorf("job %d ran on the attacker", j.ID)
		}
	}
	if got := c.refusedCount("evil"); got != a.n {
		t.Errorf("marvelo workers counts %d refusals for evil, want the %d it tried", got, a.n)
	}
	if got := c.refusedCount("wv"); got != 0 {
		t.Errorf("marvelo workers counts %d refusals for the honest worker wv, want 0", got)
	}
	if log := c.broker.out.String(); !strings.Contains(log, `identity=evil kind=Publish subject=`+pipe1) {
		t.Errorf("the broker did not log the forged block with the worker's name and subject")
	}
}

// TestMovedJobsOldWorkerCannotPublishToItsPipe: a frozen worker is declared dead and its job moves,
// though another worker's identity replays its heartbeats;
// from then on the old worker's identity can no longer publish to the job's output pipe, and the
// pipeline finishes with every block exactly once after the old worker wakes up again.
func TestMovedJobsOldWorkerCannotPublishToItsPipe(t *testing.T) {
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("ws")
	c.startWorker("wa", "--groups", "mover")
	c.startWorker("wb", "--groups", "mover")
	const n = 4000
	doc, out := chainDoc(c, "moved", n, [3]string{"ws", "", ""}, [3]string{"", "mover", "mover"})
	c.submit(doc)
	waitRows(c, out, 10)
	old := jobWorker(c.status("moved"), 2)
	if old != "wa" && old != "wb" {
		t.Fatalf("job 2 runs on %q, want wa or wb", old)
	}
	a := c.attacker(old)
	outPipe := protocol.PipeSubject("moved", 2)
	if err := syscall.Kill(-c.workers[old].cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Meanwhile another worker's identity replays the frozen worker's heartbeat, on the frozen
	// worker's subject (refused by the server) and on its own (refused by the broker): the frozen
	// worker is declared dead all the same.
	replayer := c.attacker("ws")
	hb, _ := json.Marshal(protocol.Heartbeat{Worker: old, Time: time.Now()})
	replayer.publishRefused("heartbeat replay", protocol.SubjHeartbeatPrefix+old, hb)
	stopReplay := make(chan struct{})
	replayDone := make(chan struct{})
	go func() {
		defer close(replayDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopReplay:
				return
			case <-tick.C:
				_ = replayer.nc.Publish(protocol.SubjHeartbeatPrefix+"ws", hb)
			}
		}
	}()
	c.waitFor("job 2 to move off "+old, func() bool {
		w := jobWorker(c.status("moved"), 2)
		return w != "" && w != old
	})
	close(stopReplay)
	<-replayDone
	a.publishRefused("publish to a moved job's pipe", outPipe, []byte(`{"sqn": 1}`))
	if err := syscall.Kill(-c.workers[old].cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFinished(c, "moved")
	checkExactlyOnce(t, out, n)
	if got := c.refusedCount(old); got == 0 {
		t.Errorf("marvelo workers counts no refusal for %s", old)
	}
}

// TestOperatorAndReadOnlyIdentities: an operator identity may do everything (submit, stop); a
// read-only identity runs status, workers, logs and top, and is refused submit and stop at once.
func TestOperatorAndReadOnlyIdentities(t *testing.T) {
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("w1", "--slots", "3")
	alice := c.enrolAs("operator", "alice")
	ro := c.enrolAs("operator", "dashboard", "--read-only")
	as := func(creds string, args ...string) (string, string, int) {
		return runMarvelo(t, c.dir, append(args, "--broker", c.url, "--creds", creds)...)
	}
	doc, out := chainDoc(c, "ops", 20, [3]string{}, [3]string{})
	if _, errOut, code := as(alice, "submit", doc, "--wait"); code != 0 {
		t.Fatalf("submit as operator alice: exit %d: %s", code, errOut)
	}
	checkExactlyOnce(t, out, 20)
	for _, args := range [][]string{{"status", "ops"}, {"status"}, {"workers"}, {"logs", "ops"}, {"top", "ops", "--once"}} {
		if _, errOut, code := as(ro, args...); code != 0 {
			t.Errorf("marvelo %s as read-only: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
	}
	for _, args := range [][]string{{"stop", "ops"}, {"submit", doc}, {"reset", "ops"}} {
		start := time.Now()
		_, errOut, code := as(ro, args...)
		if code == 0 || !strings.Contains(errOut, "permission") {
			t.Errorf("marvelo %s as read-only: exit %d, %q; want a permissions error", strings.Join(args, " "), code, errOut)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("marvelo %s as read-only: the refusal took %v", strings.Join(args, " "), d)
		}
	}
	if _, errOut, code := as(alice, "stop", "ops"); code != 0 && !strings.Contains(errOut, "not running") && !strings.Contains(errOut, "finished") {
		t.Errorf("stop as operator alice: exit %d: %s", code, errOut)
	}
}

// TestSecurityReadOnlyIdentityDirectAttacksAreRefused: a read-only operator identity, with a raw
// nats.go client while the victim runs, publishes to every operator API subject, the victim's
// pipe, its checkpoint, the dependency bucket, the identity bucket, a worker's heartbeat and the
// JetStream API that reads pipes and checkpoints or changes the log stream, and subscribes to
// the victim's pipe, every marvelo subject, others' inboxes and the buckets: each is refused by
// the server, and the victim is unchanged (routes_test.go's scene). Long: make test-security.
func TestSecurityReadOnlyIdentityDirectAttacksAreRefused(t *testing.T) {
	longSecurity(t)
	s := newRouteScene(t)
	ro := s.c.rawClient("dash", s.c.enrolAs("operator", "dash", "--read-only"))
	s.ids = s.identities() // dash's, enrolled by the test
	stream := protocol.PipeStream("victim", 3)
	ckpt := "$KV." + protocol.CheckpointBucket + "." + s.victimKey
	for _, subj := range []string{protocol.SubjStop, protocol.SubjSubmit, protocol.SubjReset, protocol.SubjDrain,
		protocol.SubjUncordon, protocol.SubjRemove, protocol.SubjIdentityAdd, protocol.SubjIdentityRemove} {
		ro.publishRefused("operator API", subj, []byte(stopBody))
	}
	for _, p := range []struct{ what, subject string }{
		{"forged block", s.victimPipe},
		{"checkpoint overwrite", ckpt},
		{"checkpoint read", ownGetSubject(s.victimKey)},
		{"pipe read", "$JS.API.DIRECT.GET." + stream},
		{"pipe pull", "$JS.API.CONSUMER.MSG.NEXT." + stream + "." + s.c.pipeConsumer(stream)},
		{"dependency read", "$JS.API.DIRECT.GET." + depsStream},
		{"dependency write", "$O." + protocol.DepsBucket + ".C.evil"},
		{"identity write", "$KV.marvelo_identities.mallory"},
		{"heartbeat of a worker", protocol.SubjHeartbeatPrefix + "wv"},
		{"registration as a worker", protocol.From(protocol.SubjRegister, "dash")},
		{"log stream purge", "$JS.API.STREAM.PURGE." + protocol.LogStream},
		{"log stream delete", "$JS.API.STREAM.DELETE." + protocol.LogStream},
		{"log message delete", "$JS.API.STREAM.MSG.DELETE." + protocol.LogStream},
		{"log consumer", "$JS.API.CONSUMER.CREATE." + protocol.LogStream},
		{"stream list", "$JS.API.STREAM.LIST"},
	} {
		ro.publishRefused(p.what, p.subject, []byte(`{"seq":1}`))
	}
	for _, p := range []struct{ what, subject string }{
		{"pipe read", s.victimPipe},
		{"every marvelo subject", "marvelo.>"},
		{"others' replies", "_INBOX.>"},
		{"checkpoint watch", "$KV." + protocol.CheckpointBucket + ".>"},
		{"dependency watch", "$O." + protocol.DepsBucket + ".>"},
		{"offers", protocol.GroupSubject("*", ">")},
	} {
		ro.subscribeRefused(p.what, p.subject)
	}
	s.unchanged(t)
}
