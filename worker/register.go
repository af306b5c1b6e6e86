package worker

// The worker's link to the broker: registration, heartbeats, requests, leaving.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// register announces the worker, retrying until the broker answers or ctx ends.
func (w *Worker) register(ctx context.Context) error {
	wait := backoff.Backoff{First: 100 * time.Millisecond, Max: 5 * time.Second}
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := w.request(rctx, protocol.From(protocol.SubjRegister, w.opts.Name), w.info, nil)
		cancel()
		if err == nil {
			return nil
		}
		var refused *protocol.Refusal
		if errors.As(err, &refused) {
			return fmt.Errorf("worker %s: broker refused registration: %w", w.opts.Name, err)
		}
		d := wait.Next()
		w.log.Warn("broker not answering; retrying", "error", err, "in", d)
		if !backoff.Pause(ctx, d) {
			return ctx.Err()
		}
	}
}

// request sends a JSON request and decodes a Reply (or into out when not nil). A reply that is not
// OK is a *protocol.Refusal (protocol.Call).
func (w *Worker) request(ctx context.Context, subject string, req, out any) error {
	raw, err := protocol.Call[json.RawMessage](ctx, w.send, subject, req)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(raw, out)
}

// send is the worker's NATS request: the transport of protocol.Call.
func (w *Worker) send(ctx context.Context, subject string, data []byte) ([]byte, error) {
	m, err := w.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}

// heartbeat publishes the worker's metrics and jobs until ctx ends.
func (w *Worker) heartbeat(ctx context.Context) {
	mr := &metricsReader{dir: w.opts.WorkDir}
	t := time.NewTicker(w.opts.Heartbeat)
	defer t.Stop()
	reconnects := w.nc.Stats().Reconnects
	first := true
	for {
		// A reconnect may mean a restarted broker: register again so it knows this worker's
		// groups, slots and types even if it lost them.
		if r := w.nc.Stats().Reconnects; r != reconnects {
			reconnects = r
			if err := w.register(ctx); err != nil {
				w.log.Warn("re-registration failed", "error", err)
			} else {
				w.log.Info("registered again after reconnecting")
			}
		}
		hb := protocol.Heartbeat{Worker: w.opts.Name, Time: time.Now(), Metrics: mr.sample(), Stats: w.jobStats()}
		w.lastMetrics.Store(&hb.Metrics)
		if data, err := json.Marshal(hb); err == nil {
			if err := w.nc.Publish(protocol.SubjHeartbeatPrefix+w.opts.Name, data); err != nil {
				w.log.Warn("heartbeat not sent", "error", err)
			}
		}
		if first {
			first = false
			if err := w.nc.Flush(); err != nil {
				w.log.Warn("first heartbeat not confirmed", "error", err)
			}
			close(w.ready)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *Worker) jobStats() []protocol.JobState {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]protocol.JobState, 0, len(w.tasks))
	for k, t := range w.tasks {
		out = append(out, protocol.JobState{Pipeline: k.pipeline, Job: k.job, Epoch: t.assign.Epoch, Worker: w.opts.Name, State: protocol.StateRunning, Stats: t.stats.snapshot()})
	}
	return out
}

// leave asks the broker to drain this worker before it stops: the broker cordons it, has it end
// its jobs (handleLeave) and moves them, then answers. Bounded: a broker that does not answer
// finds the worker gone by its missing heartbeats and moves the jobs then. It reports false when
// the connection dropped while it asked: the broker went away just then.
func (w *Worker) leave() bool {
	ctx, cancel := context.WithTimeout(context.Background(), protocol.LeaveGrace+10*time.Second)
	defer cancel()
	ctx, stop := w.whileConnected(ctx) // a broker that goes away meanwhile drains nothing
	defer stop()
	var r protocol.DrainReply
	if err := w.request(ctx, protocol.From(protocol.SubjLeave, w.opts.Name), protocol.WorkerRequest{Worker: w.opts.Name}, &r); err != nil {
		w.log.Warn("broker did not drain this worker; its jobs move once it is found gone", "error", err)
		return w.nc.IsConnected()
	}
	w.log.Info("drained: jobs moved to other workers", "jobs", len(r.Moved))
	return true
}
