// Package backoff is marvelo's one retry policy: the wait between two attempts of a loop starts
// at First and doubles up to Max, and every wait ends early when the loop's context ends. A
// constant spacing is First == Max. It waits on a timer it owns and stops, never with
// time.Sleep, so a loop whose context ends returns at once and leaves no timer behind.
//
// It lives under pipeline, pure of NATS like the rest of it, because the broker, the worker and
// the commands all retry, and broker and worker never import each other (DESIGN.md §2).
package backoff

import (
	"context"
	"time"
)

// Backoff spaces the attempts of one retry loop; its first wait is First. Use one Backoff per
// loop (it is not safe for concurrent use).
type Backoff struct {
	First, Max time.Duration
	last       time.Duration // the wait Next returned last; 0 before the first or after Reset
}

// Next returns the wait before the next attempt: First, then twice the last wait, at most Max.
func (b *Backoff) Next() time.Duration {
	b.last = min(max(2*b.last, b.First), b.Max)
	return b.last
}

// Reset starts the waits from First again: the attempt succeeded, or a new trouble began.
func (b *Backoff) Reset() { b.last = 0 }

// Wait waits Next() and reports true, or reports false as soon as ctx ends (at once if it has
// ended already).
func (b *Backoff) Wait(ctx context.Context) bool { return Pause(ctx, b.Next()) }

// Pause waits d and reports true, or reports false as soon as ctx ends (at once if it has ended
// already). Its timer is stopped when it returns. For a loop that says how long it will wait
// before it waits: Pause(ctx, b.Next()).
func Pause(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
