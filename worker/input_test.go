package worker

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestOnlyAGoneConsumerEndsAnInput: missed heartbeats, reconnects, leader changes and timeouts
// are retried; a deleted consumer or stream ends the input.
func TestOnlyAGoneConsumerEndsAnInput(t *testing.T) {
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{jetstream.ErrNoHeartbeat, false},
		{fmt.Errorf("input pipe 3: %w", jetstream.ErrNoHeartbeat), false},
		{jetstream.ErrConsumerLeadershipChanged, false},
		{nats.ErrTimeout, false},
		{nats.ErrConnectionReconnecting, false},
		{nats.ErrNoResponders, false},
		{jetstream.ErrConsumerDeleted, true},
		{fmt.Errorf("input pipe 3: %w", jetstream.ErrConsumerNotFound), true},
		{jetstream.ErrStreamNotFound, true},
	} {
		if got := inputGone(tc.err); got != tc.gone {
			t.Errorf("inputGone(%v) = %v, want %v", tc.err, got, tc.gone)
		}
	}
}
