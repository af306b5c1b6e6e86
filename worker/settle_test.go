package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestUntilSettledAsksAgainAfterNoRespondersAndStopsAtAFinalError: a request that finds no
// responder (the moment an identity's account is re-made by a reload) is asked again until it
// succeeds; an error that is not transient is returned at once, asked once.
func TestUntilSettledAsksAgainAfterNoRespondersAndStopsAtAFinalError(t *testing.T) {
	calls := 0
	err := untilSettled(context.Background(), func(context.Context) error {
		calls++
		if calls < 3 {
			return nats.ErrNoResponders
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("after two no-responders answers: %v after %d calls, want success after 3", err, calls)
	}
	final := errors.New("stream not found")
	calls = 0
	err = untilSettled(context.Background(), func(context.Context) error { calls++; return final })
	if !errors.Is(err, final) || calls != 1 {
		t.Fatalf("a final error: %v after %d calls, want it after 1", err, calls)
	}
}
