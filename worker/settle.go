package worker

import (
	"context"
	"time"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/pipeline/backoff"
)

// settleWait bounds how long a job's start asks JetStream again after a transient answer.
const settleWait = 5 * time.Second

// untilSettled calls ask until it succeeds, fails for good (an error jserr does not call
// transient), settleWait has passed or ctx ends, and returns its last error. A worker with an
// identity is a NATS account of its own (DESIGN.md §10): while the broker applies new
// permissions, its way to JetStream is re-made, and a request in those microseconds finds no
// responder. So the requests that start a job (its pipes' streams and consumers, its checkpoint,
// its dependencies) are asked again, as the publisher asks again a publish.
func untilSettled(ctx context.Context, ask func(context.Context) error) error {
	b := backoff.Backoff{First: 10 * time.Millisecond, Max: 250 * time.Millisecond}
	deadline := time.Now().Add(settleWait)
	for {
		err := ask(ctx)
		if err == nil || !jserr.IsTransient(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		if !b.Wait(ctx) {
			return err
		}
	}
}
