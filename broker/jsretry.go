package broker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream requests of the control plane that must not fail on a passing stall: while a
// cluster elects a new meta or stream leader (a broker killed), requests time out or find no
// responder for a second or two. jsRetry is the one retry rule for them: each attempt has
// jsAttempt, attempts come every jsRetryEvery, and the last error is returned once it is not
// transient or bound has passed.
const (
	jsAttempt    = 2 * time.Second
	jsRetryEvery = 250 * time.Millisecond
)

func jsRetry(ctx context.Context, bound time.Duration, op func(context.Context) error) error {
	deadline := time.Now().Add(bound)
	t := time.NewTicker(jsRetryEvery)
	defer t.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, jsAttempt)
		err := op(actx)
		cancel()
		if err == nil || !jsTransient(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// jsTransient reports whether err is a stall that passes: a timeout, no responder, or a
// cluster that is not available right now.
func jsTransient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// 10008: JetStream system temporarily unavailable; 10009: no suitable peers (yet).
		return apiErr.ErrorCode == 10008 || apiErr.ErrorCode == 10009
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoHeartbeat)
}
