// Package failoverkit measures a failover as a pipeline's user sees it: the time from the moment
// a worker is killed (or frozen) to the first block the moved job publishes again on its output
// pipe. `marvelo bench failover` and the end-to-end tests measure with it.
//
// The probe subscribes to everything of the pipeline ("marvelo.<name>.>") with one subscription,
// so it sees the pipe's blocks and the broker's events in the order the server handled them. A
// block the dead instance published reaches the server before the server sees its connection
// close, hence before the broker learns of the death and publishes the "worker lost" event; a
// block of the new instance comes after that event (the move starts after it). So the first block
// on the pipe after the job's "worker lost" event is the new instance's: no heuristic about gaps.
package failoverkit

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Probe watches one job of a pipeline and the pipe it writes.
type Probe struct {
	sub   *nats.Subscription
	pipe  string
	event string
	job   int

	mu        sync.Mutex
	messages  int       // messages seen on the pipe
	lost      time.Time // the job's "worker lost" event arrived
	lostWhy   string
	first     time.Time     // the first message on the pipe after lost
	recovered chan struct{} // closed at first
	progress  chan struct{} // signalled at every message on the pipe
}

// Result is one failover as measured.
type Result struct {
	// Detected is from the kill to the broker's "worker lost" event for the job.
	Detected time.Duration
	// Recovered is from the kill to the first block of the moved job on its output pipe.
	Recovered time.Duration
	// Why is the "worker lost" event's message (how the broker noticed).
	Why string
}

// Watch starts a probe of job, which writes pipe outPipe of the pipeline, on nc.
func Watch(nc *nats.Conn, pipelineName string, job, outPipe int) (*Probe, error) {
	p := &Probe{pipe: protocol.PipeSubject(pipelineName, outPipe), event: protocol.EventSubject(pipelineName), job: job,
		recovered: make(chan struct{}), progress: make(chan struct{}, 1)}
	sub, err := nc.Subscribe("marvelo."+pipelineName+".>", p.handle)
	if err != nil {
		return nil, fmt.Errorf("failover probe of %s: %w", pipelineName, err)
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("failover probe of %s: %w", pipelineName, err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("failover probe of %s: %w", pipelineName, err)
	}
	p.sub = sub
	return p, nil
}

func (p *Probe) handle(m *nats.Msg) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	switch m.Subject {
	case p.pipe:
		p.messages++
		if !p.lost.IsZero() && p.first.IsZero() {
			p.first = now
			close(p.recovered)
		}
		select {
		case p.progress <- struct{}{}:
		default:
		}
	case p.event:
		var ev protocol.Event
		if json.Unmarshal(m.Data, &ev) == nil && ev.Kind == "worker lost" && ev.Job == p.job && p.lost.IsZero() {
			p.lost, p.lostWhy = now, ev.Message
		}
	}
}

// WaitMessages waits until the probe has seen at least n messages on the pipe.
func (p *Probe) WaitMessages(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		seen := p.messages
		p.mu.Unlock()
		if seen >= n {
			return nil
		}
		select {
		case <-p.progress:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d messages on %s (%d seen): %w", n, p.pipe, seen, ctx.Err())
		}
	}
}

// Recovery waits for the moved job's first block and returns the times from killed.
func (p *Probe) Recovery(ctx context.Context, killed time.Time) (Result, error) {
	select {
	case <-p.recovered:
	case <-ctx.Done():
		p.mu.Lock()
		lost := !p.lost.IsZero()
		p.mu.Unlock()
		if !lost {
			return Result{}, fmt.Errorf("no \"worker lost\" event for job %d: %w", p.job, ctx.Err())
		}
		return Result{}, fmt.Errorf("job %d was lost but wrote no block on %s since: %w", p.job, p.pipe, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return Result{Detected: p.lost.Sub(killed), Recovered: p.first.Sub(killed), Why: p.lostWhy}, nil
}

// Close ends the probe's subscription.
func (p *Probe) Close() error { return p.sub.Unsubscribe() }
