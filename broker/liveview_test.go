package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// enrol adds an identity to a running broker and returns its token.
func enrol(t *testing.T, b *Broker, name, role string) string {
	t.Helper()
	return enrolIdentity(t, b, Identity{Name: name, Role: role})
}

// enrolIdentity adds an identity (its hash made from a secret of its name) to a running broker
// and returns its token.
func enrolIdentity(t *testing.T, b *Broker, id Identity) string {
	t.Helper()
	secret := "secret-of-" + id.Name
	sum := sha256.Sum256([]byte(secret))
	id.Hash = hex.EncodeToString(sum[:])
	data, _ := json.Marshal(id)
	m, err := b.nc.Request(protocol.SubjIdentityAdd, data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r protocol.Reply
	if err := json.Unmarshal(m.Data, &r); err != nil || !r.OK {
		t.Fatalf("enrol %s: %s %v", id.Name, m.Data, err)
	}
	return protocol.IdentityToken(id.Name, secret)
}

// TestLiveAuthorizerAdmitsWhomTheAPIAdmitsToReadStatus: the live view admits the operator token
// and operator and read-only identities, as the NATS server does for the API; the worker token,
// worker identities, a wrong secret and no token are refused; a broker without a token has no
// check (loopback only).
func TestLiveAuthorizerAdmitsWhomTheAPIAdmitsToReadStatus(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, AuthToken: "op", WorkerToken: "wk",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	admit := b.LiveAuthorizer()
	if admit == nil {
		t.Fatal("no check on a broker with --auth-token")
	}
	cases := map[string]bool{
		"op": true, "wk": false, "": false, "op ": false, "wrong": false,
		enrol(t, b, "boss", RoleOperator):                      true,
		enrol(t, b, "dash", RoleReader):                        true,
		enrol(t, b, "w1", RoleWorker):                          false,
		protocol.IdentityToken("dash", "wrong"):                false,
		protocol.IdentityToken("nobody", "secret-of-nobody"):   false,
		protocol.IdentityToken("dash", "secret-of-dash") + "x": false,
	}
	for tok, want := range cases {
		if got := admit(tok); got != want {
			t.Errorf("token %q: admitted %v, want %v", tok, got, want)
		}
	}

	open, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(open.Shutdown)
	if open.LiveAuthorizer() != nil {
		t.Error("a check on a broker without --auth-token")
	}
}

// TestLiveSourceReadsTheAPIAndTheLogTail: the live view's source answers status and workers
// through the API, and the log tail of one pipeline's run: the last lines since the run began,
// then the new ones, never another pipeline's.
func TestLiveSourceReadsTheAPIAndTheLogTail(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	src, err := b.LiveSource()
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if sts, err := src.Pipelines(ctx); err != nil || len(sts) != 0 {
		t.Fatalf("pipelines of an empty broker: %v %v", sts, err)
	}
	if ws, err := src.Workers(ctx); err != nil || len(ws) != 0 {
		t.Fatalf("workers of an empty broker: %v %v", ws, err)
	}
	if _, err := src.Document(ctx, "nope"); err == nil {
		t.Error("a document of no pipeline")
	}

	js, err := jetstream.New(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	publish := func(pipeline string, count int) {
		t.Helper()
		for range count {
			n++
			data, _ := json.Marshal(protocol.LogLine{Time: time.Now(), Pipeline: pipeline, Job: 1, Name: "j", Worker: "w", Text: fmt.Sprint("line ", n)})
			if _, err := js.Publish(ctx, protocol.LogSubject(pipeline, 1), data); err != nil {
				t.Fatal(err)
			}
		}
	}
	texts := func(ls []protocol.LogLine) []string {
		var out []string
		for _, l := range ls {
			out = append(out, l.Text)
		}
		return out
	}
	before := time.Now().Add(-time.Minute)
	publish("demo", 5)  // lines 1-5
	publish("other", 2) // 6-7
	lines, err := src.Logs(ctx, "demo", before, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(texts(lines)); got != "[line 3 line 4 line 5]" {
		t.Errorf("first tail: %s", got)
	}
	publish("demo", 2) // 8-9
	publish("other", 1)
	lines, err = src.Logs(ctx, "demo", before, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(texts(lines)); got != "[line 4 line 5 line 8 line 9]" {
		t.Errorf("tail after more lines: %s", got)
	}
	if lines, err = src.Logs(ctx, "demo", before, 4); err != nil || len(lines) != 4 {
		t.Errorf("tail again with nothing new: %v %v", texts(lines), err)
	}
	// A new run: none of the lines before it.
	lines, err = src.Logs(ctx, "demo", time.Now().Add(time.Minute), 10)
	if err != nil || len(lines) != 0 {
		t.Errorf("tail of a run begun later: %v %v", texts(lines), err)
	}
	// A quiet pipeline: nothing, and no error.
	if lines, err := src.Logs(ctx, "quiet", before, 10); err != nil || len(lines) != 0 {
		t.Errorf("tail of a pipeline with no line: %v %v", texts(lines), err)
	}
}
