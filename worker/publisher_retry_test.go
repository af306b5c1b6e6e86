package worker

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/jserr"
)

// TestAPublishIsTriedAgainWhileTheStreamIsFullOrNoAnswerCame: a publish is repeated (its expected
// sequence makes that safe) while the stream is full or the answer did not come, and fails on
// any other answer, a stale instance's wrong last sequence above all.
func TestAPublishIsTriedAgainWhileTheStreamIsFullOrNoAnswerCame(t *testing.T) {
	api := func(code jetstream.ErrorCode) error {
		return fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: code, Description: "refused"})
	}
	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"stream full", api(jserr.CodeStreamStoreFailed), true},
		{"attempt timed out", context.DeadlineExceeded, true},
		{"no response from the stream", jetstream.ErrNoStreamResponse, true},
		{"no responders", nats.ErrNoResponders, true},
		{"cluster without a leader", api(jserr.CodeClusterNotAvailable), true},
		{"stale instance", api(jserr.CodeWrongLastSequence), false},
		{"stale instance, replicated stream", api(jserr.CodeWrongLastSequenceConstant), false},
		{"stream gone", jetstream.ErrStreamNotFound, false},
		{"message too large", jetstream.ErrStreamMessageExceedsMaximum, false},
	} {
		if got := retryable(tc.err); got != tc.retry {
			t.Errorf("%s: retryable(%v) = %v, want %v", tc.name, tc.err, got, tc.retry)
		}
	}
}
