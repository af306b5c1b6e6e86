package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// brokerAwayGrace bounds how long a stopping worker waits for its broker to come back before it
// leaves without being drained: its broker gone, nobody can drain it, take its jobs' reports or
// its deregistration, and each of those waited for its own timeout (17 s in all).
var brokerAwayGrace = 2 * time.Second

// brokerReachable reports whether the worker's connection is up, waiting at most grace for it
// to come back.
func (w *Worker) brokerReachable(grace time.Duration) bool {
	ch := w.nc.StatusChanged(nats.CONNECTED)
	defer w.nc.RemoveStatusListener(ch)
	if w.nc.IsConnected() {
		return true
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-ch:
		return w.nc.IsConnected()
	case <-t.C:
		return w.nc.IsConnected()
	}
}

// whileConnected returns a context that ends with parent or as soon as the connection drops:
// a request made on it does not wait out its timeout for a broker that went away meanwhile.
func (w *Worker) whileConnected(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	ch := w.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	if !w.nc.IsConnected() {
		cancel()
	}
	go func() { // ends with ctx: the caller's cancel, or the drop
		defer w.nc.RemoveStatusListener(ch)
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
