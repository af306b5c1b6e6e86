package broker

import (
	"context"
	"errors"
	"time"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/pipeline/backoff"
)

// JetStream requests of the control plane that must not fail on a passing stall: while a
// cluster elects a new meta or stream leader (a broker killed), requests time out or find no
// responder for a second or two. jsRetry is the one retry rule for them: each attempt has
// jsAttempt, the next comes jsRetryEvery after one failed, and the last error is returned once
// it is not transient (jserr.IsTransient) or bound has passed.
const (
	jsAttempt    = 2 * time.Second
	jsRetryEvery = 250 * time.Millisecond
)

func jsRetry(ctx context.Context, bound time.Duration, op func(context.Context) error) error {
	return jsRetryWhile(ctx, bound, jserr.IsTransient, op)
}

// jsRetryWhile is jsRetry for a request that may also be tried again after other errors
// (retryable): a fence waits for room in a full stream (fence.go).
func jsRetryWhile(ctx context.Context, bound time.Duration, retryable func(error) bool, op func(context.Context) error) error {
	deadline := time.Now().Add(bound)
	wait := backoff.Backoff{First: jsRetryEvery, Max: jsRetryEvery}
	for {
		actx, cancel := context.WithTimeout(ctx, jsAttempt)
		err := op(actx)
		cancel()
		if err == nil || !retryable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		if !wait.Wait(ctx) {
			return errors.Join(err, ctx.Err())
		}
	}
}
