package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// A job's publishes are fenced by the stream sequence they expect to follow (worker/publisher.go):
// an instance whose stream moved on refuses to go on. That fenced off a stale instance only once
// the new one had published: a worker frozen with a batch pending (SIGSTOP, a cut cable), declared
// dead and thawed right after its job moved, stored that batch first, and the new instance was
// the one refused — its pipeline failed (TestFrozenWorkerIsReplacedAndStopsItsStaleJobs: 2 runs of
// 110). So a move now fences the job's output streams itself, before the new instance
// starts: it appends a batch of no blocks (the documented wire form with `Marvelo-Blocks: 0`,
// which every reader passes over) to each, and the old instance's next publish expects a sequence
// that is gone.

// fenceBound is how long a move waits to append a fence to a stream that is full (its reader is
// behind) or has no leader for the moment. A stream that stays full is not fenced: the move goes
// on, as it did before fences, rather than waiting on a reader that may be the moving job's own
// consumer.
const fenceBound = 2 * time.Second

// fenceOutputs fences the output streams of job j, moved to a new instance.
func (c *control) fenceOutputs(ctx context.Context, doc *pipeline.Pipeline, j *pipeline.Job) {
	ends := doc.Endpoints()
	for _, id := range j.Outputs {
		if pp := doc.PipeByID(id); pp.IsRealtime() {
			continue // core NATS: nothing stored, nothing to fence
		}
		subject := protocol.PipeSubject(doc.Name, id)
		if dst := doc.JobByID(ends[id][1]); dst != nil && dst.MaxQueue > 0 {
			// Outside the queue's count of blocks, where an end marker goes: a fence on the
			// blocks' subject would push the oldest block out.
			subject = protocol.PipeEndSubject(subject)
		}
		if err := c.fence(ctx, subject); err != nil {
			c.log.Warn("output not fenced; the job's previous instance is stopped when its worker is heard from",
				"pipeline", doc.Name, "job", j.ID, "pipe", id, "error", err)
		}
	}
}

// fence appends an empty batch to the stream of subject, retrying while the stream is full or
// briefly without a leader, up to fenceBound.
func (c *control) fence(ctx context.Context, subject string) error {
	msg := &nats.Msg{Subject: subject, Header: nats.Header{codec.BatchHeader: []string{codec.EmptyBatch}}}
	full := func(err error) bool { return jserr.IsStreamFull(err) || jserr.IsTransient(err) }
	err := jsRetryWhile(ctx, fenceBound, full, func(ctx context.Context) error {
		_, err := c.js.PublishMsg(ctx, msg)
		return err
	})
	if err != nil {
		return fmt.Errorf("fence %s: %w", subject, err)
	}
	return nil
}
