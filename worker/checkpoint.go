package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// checkpoints saves a source's state in JetStream KV so that, moved to another worker, it
// continues where its stored blocks end instead of starting over. One save is in flight at a
// time; a save starts once every block emitted before it is stored, so a restored source never
// skips a block that was lost, and re-emits at most what was stored after the last save — blocks
// whose SQNs the receivers have seen and drop.
type checkpoints struct {
	kv       jetstream.KeyValue
	key      string
	job      job.Checkpointer
	label    string
	log      func(msg string, args ...any)
	inFlight atomic.Bool
}

// openCheckpoints returns nil when the job cannot checkpoint.
func (t *task) openCheckpoints(ctx context.Context, js jetstream.JetStream) (*checkpoints, error) {
	cj := t.runner.Checkpointer()
	if cj == nil {
		return nil, nil
	}
	kv, err := js.KeyValue(ctx, protocol.CheckpointBucket)
	if err != nil {
		return nil, fmt.Errorf("%s: checkpoint bucket: %w", t.label, err)
	}
	return &checkpoints{kv: kv, key: protocol.CheckpointKey(t.assign.Pipeline, t.assign.Job.ID), job: cj,
		label: t.label, log: t.log.Warn}, nil
}

// restore hands a saved state back to the job and returns the SQN it had reached (0: none).
func (c *checkpoints) restore(ctx context.Context) (uint64, error) {
	e, err := c.kv.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s: read checkpoint: %w", c.label, err)
	}
	var cp protocol.Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return 0, fmt.Errorf("%s: checkpoint: %w", c.label, err)
	}
	if err := c.job.Restore(cp.State); err != nil {
		return 0, fmt.Errorf("%s: restore checkpoint: %w", c.label, err)
	}
	c.log("resuming from checkpoint", "sqn", cp.SQN)
	return cp.SQN, nil
}

func (c *checkpoints) put(sqn uint64, data []byte) {
	defer c.inFlight.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.kv.Put(ctx, c.key, data); err != nil {
		c.log("checkpoint not saved", "sqn", sqn, "error", err)
	}
}

// save takes the job's state now (after the block sqn) and stores it once the blocks written to
// outs so far are stored, unless a save is already under way.
func (c *checkpoints) save(sqn uint64, outs []*outPort) {
	if len(outs) == 0 || !c.inFlight.CompareAndSwap(false, true) {
		return
	}
	state, err := c.job.Checkpoint()
	if err != nil {
		c.inFlight.Store(false)
		c.log("checkpoint not taken", "error", err)
		return
	}
	data, err := json.Marshal(protocol.Checkpoint{SQN: sqn, State: state})
	if err != nil {
		c.inFlight.Store(false)
		return
	}
	var pending atomic.Int32
	pending.Store(int32(len(outs)))
	for _, o := range outs {
		o.pub.AfterStored(func() {
			if pending.Add(-1) != 0 {
				return
			}
			// The put runs beside the publisher, which goes on sending meanwhile; inFlight keeps
			// it to one at a time, and its timeout bounds it.
			go c.put(sqn, data)
		})
	}
}
