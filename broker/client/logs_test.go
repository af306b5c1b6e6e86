package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// readerRights are exactly the rights a read-only identity has (DESIGN.md §10): the read-only
// API, the log stream's info and direct gets, its own inboxes, the live logs, events and
// heartbeats. No consumer API.
func readerRights(name string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			protocol.SubjStatus, protocol.SubjWorkers, "$JS.API.INFO",
			protocol.LogStreamInfoSubject, protocol.LogDirectGetSubject, protocol.LogDirectGetSubject + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			protocol.InboxPrefix(name) + ".>", protocol.LogSubjects, "marvelo.*.event", protocol.SubjHeartbeatPrefix + "*",
		}},
	}
}

// logServer is a NATS server with JetStream and the broker's log stream, without a broker: user
// "op" may do everything, "ro" has readerRights, "w1" none of them (a worker identity with no
// job) and "nosub" the reader's rights but to subscribe to the live logs.
type logServer struct {
	t   *testing.T
	url string
	op  *nats.Conn
	js  jetstream.JetStream
}

func newLogServer(t *testing.T) *logServer {
	t.Helper()
	nosub := readerRights("nosub")
	nosub.Subscribe.Allow = []string{protocol.InboxPrefix("nosub") + ".>"}
	opts := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		Users: []*server.User{
			{Username: "op", Password: "op"},
			{Username: "ro", Password: "ro", Permissions: readerRights("ro")},
			{Username: "w1", Password: "w1", Permissions: &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.INFO"}},
				Subscribe: &server.SubjectPermission{Allow: []string{protocol.InboxPrefix("w1") + ".>"}},
			}},
			{Username: "nosub", Password: "nosub", Permissions: nosub},
		}}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("the NATS server is not ready")
	}
	t.Cleanup(s.Shutdown)
	ls := &logServer{t: t, url: s.ClientURL()}
	if ls.op, err = nats.Connect(ls.url, nats.UserInfo("op", "op")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ls.op.Close)
	if ls.js, err = jetstream.New(ls.op); err != nil {
		t.Fatal(err)
	}
	// As the broker makes it (broker/topology.go).
	if _, err := ls.js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: protocol.LogStream, Subjects: []string{protocol.LogSubjects}, Storage: jetstream.MemoryStorage,
		MaxAge: 24 * time.Hour, Discard: jetstream.DiscardOld, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	return ls
}

// client connects as user, with its own inbox prefix as an identity does.
func (ls *logServer) client(user, role string) *Client {
	ls.t.Helper()
	nc, err := nats.Connect(ls.url, nats.UserInfo(user, user), nats.CustomInboxPrefix(protocol.InboxPrefix(user)))
	if err != nil {
		ls.t.Fatal(err)
	}
	ls.t.Cleanup(nc.Close)
	c := New(nc)
	c.Identity = Identity{Name: user, Role: role}
	return c
}

func logLine(pipeline string, job, n int) []byte {
	data, _ := json.Marshal(protocol.LogLine{Time: time.Now(), Pipeline: pipeline, Job: job, Name: "j", Level: "out", Text: fmt.Sprintf("line %d", n)})
	return data
}

// store publishes lines from..to of pipeline p (jobs 1 and 2 in turn) and of another pipeline,
// each acknowledged by the stream.
func (ls *logServer) store(p string, from, to int) {
	ls.t.Helper()
	for n := from; n <= to; n++ {
		if _, err := ls.js.Publish(context.Background(), protocol.LogSubject(p, 1+n%2), logLine(p, 1+n%2, n)); err != nil {
			ls.t.Fatal(err)
		}
		if _, err := ls.js.Publish(context.Background(), protocol.LogSubject("other", 1), logLine("other", 1, n)); err != nil {
			ls.t.Fatal(err)
		}
	}
}

// publish sends lines from..to of pipeline p as a job does: plain publishes, not waiting for the
// stream.
func (ls *logServer) publish(p string, from, to int) {
	ls.t.Helper()
	for n := from; n <= to; n++ {
		if err := ls.op.Publish(protocol.LogSubject(p, 1+n%2), logLine(p, 1+n%2, n)); err != nil {
			ls.t.Fatal(err)
		}
	}
	if err := ls.op.Flush(); err != nil {
		ls.t.Fatal(err)
	}
}

// checkLines fails unless texts are "line 1" to "line n", in order, each once.
func checkLines(t *testing.T, texts []string, n int) {
	t.Helper()
	if len(texts) != n {
		t.Errorf("%d lines, want %d: %q", len(texts), n, texts)
	}
	for i, s := range texts {
		if want := fmt.Sprintf("line %d", i+1); s != want {
			t.Fatalf("line %d is %q, want %q (lines: %q)", i+1, s, want, texts)
		}
	}
}

// TestReadLogsFollowingReadsEveryLineOnceAcrossTheGapBetweenHistoryAndLive: a read-only
// identity (no consumer API) follows a pipeline's logs by direct gets: the lines stored before
// (history), those stored while it reads the history (the gap) and those published once it
// reads live, each exactly once and in order, none of another pipeline's; it ends once told the
// lines have ended.
func TestReadLogsFollowingReadsEveryLineOnceAcrossTheGapBetweenHistoryAndLive(t *testing.T) {
	ls := newLogServer(t)
	ls.store("p", 1, 40)
	cl := ls.client("ro", "reader")
	ended := make(chan struct{})
	got := make(chan string, 200)
	var texts []string
	var seqs []uint64
	q := LogQuery{Filter: protocol.LogFilter("p"), Ended: func(context.Context) (bool, error) {
		select {
		case <-ended:
			return true, nil
		default:
			return false, nil
		}
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- cl.ReadLogs(ctx, q, func(e LogEntry) error {
			l, err := e.Line()
			if err != nil {
				return err
			}
			texts, seqs = append(texts, l.Text), append(seqs, e.Seq)
			if l.Text == "line 20" { // the gap: stored while the history is being read
				ls.store("p", 41, 60)
			}
			got <- l.Text
			return nil
		})
	}()
	waitLine := func(want string) {
		t.Helper()
		for {
			select {
			case s := <-got:
				if s == want {
					return
				}
			case err := <-done:
				t.Fatalf("ReadLogs ended before %q: %v", want, err)
			case <-ctx.Done():
				t.Fatalf("no %q", want)
			}
		}
	}
	waitLine("line 60")
	ls.publish("p", 61, 100) // live
	waitLine("line 100")
	close(ended)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ReadLogs: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("ReadLogs did not end once the lines had ended")
	}
	checkLines(t, texts, 100)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Fatalf("stream sequences out of order: %v", seqs)
		}
	}
}

// TestReadLogsWithoutFollowingReadsEveryStoredLineInBatchesAndReturns: more lines than a batch
// holds, of two jobs, read in order, and the reading returns once it has caught up; a filter of
// one job reads that job's only.
func TestReadLogsWithoutFollowingReadsEveryStoredLineInBatchesAndReturns(t *testing.T) {
	ls := newLogServer(t)
	ls.store("p", 1, 3*logBatch+7)
	cl := ls.client("ro", "reader")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var texts []string
	if err := cl.ReadLogs(ctx, LogQuery{Filter: protocol.LogFilter("p")}, func(e LogEntry) error {
		l, err := e.Line()
		texts = append(texts, l.Text)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	checkLines(t, texts, 3*logBatch+7)
	jobs := map[int]int{}
	if err := cl.ReadLogs(ctx, LogQuery{Filter: protocol.LogSubject("p", 2)}, func(e LogEntry) error {
		l, err := e.Line()
		jobs[l.Job]++
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[2] != (3*logBatch+7+1)/2 { // the odd lines
		t.Errorf("the lines of job 2 only: %v", jobs)
	}
}

// TestFollowerHandsTheLinesStoredAfterFollowOnceUpToTheEnd: a follower created before a run
// hands every line of the run once and in order, none of an earlier run of the same name, and
// when the end's event comes right after the last lines were published, it still hands them
// all before returning the final status.
func TestFollowerHandsTheLinesStoredAfterFollowOnceUpToTheEnd(t *testing.T) {
	ls := newLogServer(t)
	ls.store("p", 1000, 1010) // an earlier run's
	// The broker's status answer: finished.
	sub, err := ls.op.Subscribe(protocol.SubjStatus, func(m *nats.Msg) {
		data, _ := json.Marshal(protocol.StatusReply{Reply: protocol.Reply{OK: true},
			Pipelines: []protocol.PipelineStatus{{Name: "p", Run: 1, State: protocol.StateFinished}}})
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cl := ls.client("ro", "reader")
	f, err := cl.Follow("p")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ls.publish("p", 1, 300)
	end, _ := json.Marshal(protocol.Event{Time: time.Now(), Pipeline: "p", Kind: "pipeline finished", State: protocol.StateFinished})
	if err := ls.op.Publish(protocol.EventSubject("p"), end); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var texts []string
	var events int
	st, err := f.Wait(ctx, func(l protocol.LogLine) { texts = append(texts, l.Text) }, func(protocol.Event) { events++ })
	if err != nil {
		t.Fatal(err)
	}
	if st.State != protocol.StateFinished || events != 1 {
		t.Errorf("final status %s after %d events, want finished after 1", st.State, events)
	}
	checkLines(t, texts, 300)
}

// TestRefusalsFailAtOnceNamingTheIdentityAndTheRight: a request, a direct get of the logs and
// a live subscription to them that the server refuses each fail at once (well within the
// client's 30 s timeout) with a *PermissionError that names the identity, what it may not do
// and whose right that is.
func TestRefusalsFailAtOnceNamingTheIdentityAndTheRight(t *testing.T) {
	ls := newLogServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(what string, err error, start time.Time, want string) {
		t.Helper()
		var pe *PermissionError
		if !errors.As(err, &pe) || !errors.Is(err, nats.ErrPermissionViolation) {
			t.Errorf("%s: %v, want a *PermissionError", what, err)
		} else if err.Error() != want && pe.Error() != want {
			t.Errorf("%s: %q, want %q", what, err, want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refused after %v, want at once", what, d)
		}
	}
	w1 := ls.client("w1", "worker")
	start := time.Now()
	var r protocol.Reply
	check("stop as a worker", w1.Call(ctx, protocol.SubjStop, protocol.StopRequest{Pipeline: "p"}, &r), start,
		`permission denied: identity "w1" (a worker) may not publish to marvelo.api.stop: stopping pipelines is an operator's right`)
	start = time.Now()
	check("logs as a worker", w1.ReadLogs(ctx, LogQuery{Filter: protocol.LogFilter("p")}, func(LogEntry) error { return nil }), start,
		`permission denied: identity "w1" (a worker) may not publish to $JS.API.DIRECT.GET.MARVELO_LOGS: reading the logs is an operator's or a read-only operator's right`)
	ro := ls.client("ro", "reader")
	start = time.Now()
	check("stop as a read-only operator", ro.Call(ctx, protocol.SubjStop, protocol.StopRequest{Pipeline: "p"}, &r), start,
		`permission denied: identity "ro" (a read-only operator) may not publish to marvelo.api.stop: stopping pipelines is an operator's right`)
	nosub := ls.client("nosub", "")
	start = time.Now()
	check("logs -f without the right to the live logs", nosub.ReadLogs(ctx, LogQuery{Filter: protocol.LogFilter("p"),
		Ended: func(context.Context) (bool, error) { return false, nil }}, func(LogEntry) error { return nil }), start,
		`permission denied: identity "nosub" may not subscribe to marvelo.p.log.>: following the logs is an operator's or a read-only operator's right`)
	// The same client asks again, allowed this time: a refusal ends only what it names.
	if err := ro.ReadLogs(ctx, LogQuery{Filter: protocol.LogFilter("p")}, func(LogEntry) error { return nil }); err != nil {
		t.Errorf("logs as a read-only operator after a refusal: %v", err)
	}
}

// TestConcurrentRequestsOneRefusedTheOtherAnswered: a refusal ends the request it names, not
// another one under way on the same client.
func TestConcurrentRequestsOneRefusedTheOtherAnswered(t *testing.T) {
	ls := newLogServer(t)
	received, release := make(chan struct{}, 1), make(chan struct{})
	sub, err := ls.op.Subscribe(protocol.SubjStatus, func(m *nats.Msg) {
		received <- struct{}{}
		<-release // answered once the other request was refused
		data, _ := json.Marshal(protocol.StatusReply{Reply: protocol.Reply{OK: true}})
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := ls.op.Flush(); err != nil {
		t.Fatal(err)
	}
	ro := ls.client("ro", "reader")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	var statusErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, statusErr = ro.Status(ctx, "")
	}()
	<-received
	var r protocol.Reply
	err = ro.Call(ctx, protocol.SubjStop, protocol.StopRequest{Pipeline: "p"}, &r)
	close(release)
	wg.Wait()
	var pe *PermissionError
	if !errors.As(err, &pe) || pe.Subject != protocol.SubjStop {
		t.Errorf("stop: %v, want refused", err)
	}
	if statusErr != nil {
		t.Errorf("status, under way meanwhile: %v", statusErr)
	}
}
