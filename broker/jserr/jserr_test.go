package jserr

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// apiErr is a JetStream API error as nats.go returns a publish's refusal: wrapped.
func apiErr(code jetstream.ErrorCode, desc string) error {
	return fmt.Errorf("nats: %w", &jetstream.APIError{Code: 503, ErrorCode: code, Description: desc})
}

func TestTransientAreLeaderlessClustersAndMissingAnswersOnly(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"cluster not available", apiErr(CodeClusterNotAvailable, "JetStream system temporarily unavailable"), true},
		{"not the leader", apiErr(CodeClusterNotLeader, "JetStream cluster can not handle request"), true},
		{"attempt deadline", fmt.Errorf("stream info: %w", context.DeadlineExceeded), true},
		{"timeout", nats.ErrTimeout, true},
		{"no responders", nats.ErrNoResponders, true},
		{"no response from stream", jetstream.ErrNoStreamResponse, true},
		{"missed heartbeats", jetstream.ErrNoHeartbeat, true},
		{"stream full is an answer", apiErr(CodeStreamStoreFailed, "maximum messages exceeded"), false},
		{"wrong last sequence is an answer", apiErr(CodeWrongLastSequence, "wrong last sequence: 4"), false},
		{"stream not found", jetstream.ErrStreamNotFound, false},
		{"consumer not found", jetstream.ErrConsumerNotFound, false},
		{"canceled", context.Canceled, false},
		{"anything else", errors.New("boom"), false},
	} {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestStreamFullIsTheStoreFailedCodeOnly(t *testing.T) {
	if !IsStreamFull(apiErr(CodeStreamStoreFailed, "maximum bytes exceeded")) {
		t.Error("code 10077 is not a full stream")
	}
	// The text alone is no full stream: nats.ErrMaxMessages ("nats: maximum messages
	// delivered") is a subscription's limit.
	for _, err := range []error{nats.ErrMaxMessages, errors.New("maximum messages exceeded"), nats.ErrTimeout,
		apiErr(CodeClusterNotAvailable, "")} {
		if IsStreamFull(err) {
			t.Errorf("IsStreamFull(%v) = true", err)
		}
	}
}

func TestWrongLastSequenceIsEitherCodeOfACompareAndSetConflict(t *testing.T) {
	for _, code := range []jetstream.ErrorCode{CodeWrongLastSequence, CodeWrongLastSequenceConstant} {
		if !IsWrongLastSequence(apiErr(code, "wrong last sequence")) {
			t.Errorf("code %d is not a wrong last sequence", code)
		}
	}
	if IsWrongLastSequence(apiErr(CodeStreamStoreFailed, "")) || IsWrongLastSequence(nats.ErrTimeout) {
		t.Error("another error is a wrong last sequence")
	}
}

func TestGoneIsADeletedOrMissingConsumerOrStream(t *testing.T) {
	for _, err := range []error{jetstream.ErrConsumerDeleted, jetstream.ErrConsumerNotFound,
		fmt.Errorf("input pipe 3: %w", jetstream.ErrStreamNotFound), jetstream.ErrBadRequest} {
		if !IsGone(err) {
			t.Errorf("IsGone(%v) = false", err)
		}
	}
	for _, err := range []error{nats.ErrTimeout, jetstream.ErrNoHeartbeat, apiErr(CodeClusterNotAvailable, "")} {
		if IsGone(err) {
			t.Errorf("IsGone(%v) = true", err)
		}
	}
}

func TestCodeIsAbsentFromErrorsThatAreNoAPIAnswer(t *testing.T) {
	if code, ok := Code(apiErr(CodeStreamStoreFailed, "")); !ok || code != CodeStreamStoreFailed {
		t.Errorf("Code = %d, %v", code, ok)
	}
	if _, ok := Code(nats.ErrTimeout); ok {
		t.Error("a timeout carries a code")
	}
}

// TestAServerReportsTheConditionsAsClassified: a real server's refusals are classified as named:
// a full discard-new stream, a publish naming a stale sequence, a consumer and a stream that do
// not exist.
func TestAServerReportsTheConditionsAsClassified(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}, MaxMsgs: 1,
		Discard: jetstream.DiscardNew, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s", []byte("1")); err != nil {
		t.Fatal(err)
	}
	_, err = js.Publish(ctx, "s", []byte("2"))
	if !IsStreamFull(err) || IsTransient(err) || IsWrongLastSequence(err) {
		t.Errorf("a full stream's refusal %v: full %v, transient %v, wrong sequence %v", err, IsStreamFull(err), IsTransient(err), IsWrongLastSequence(err))
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = js.Publish(ctx, "s", []byte("3"), jetstream.WithExpectLastSequence(7))
	if !IsWrongLastSequence(err) || IsStreamFull(err) || IsTransient(err) {
		t.Errorf("a stale sequence's refusal %v: wrong sequence %v, full %v, transient %v", err, IsWrongLastSequence(err), IsStreamFull(err), IsTransient(err))
	}
	if _, err = js.Consumer(ctx, "S", "nobody"); !IsGone(err) || IsTransient(err) {
		t.Errorf("a missing consumer %v: gone %v, transient %v", err, IsGone(err), IsTransient(err))
	}
	if _, err = js.Stream(ctx, "NONE"); !IsGone(err) || IsTransient(err) {
		t.Errorf("a missing stream %v: gone %v, transient %v", err, IsGone(err), IsTransient(err))
	}
}
