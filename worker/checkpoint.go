package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/backoff"
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
	puts     sync.WaitGroup // puts under way; the task waits for them before it reports its end
}

// wait returns once the puts under way are done: a job reports its end only after its last
// checkpoint is stored, while its worker still may write the key (issue 12).
func (c *checkpoints) wait() { c.puts.Wait() }

// openCheckpoints returns nil when the job cannot checkpoint.
func (t *task) openCheckpoints(ctx context.Context, js jetstream.JetStream) (*checkpoints, error) {
	cj := t.runner.Checkpointer()
	if cj == nil {
		return nil, nil
	}
	var kv jetstream.KeyValue
	err := untilSettled(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.KeyValue(ctx, protocol.CheckpointBucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: checkpoint bucket: %w", t.label, err)
	}
	return &checkpoints{kv: kv, key: protocol.CheckpointKey(t.assign.Pipeline, t.assign.Job.ID), job: cj,
		label: t.label, log: t.log.Warn}, nil
}

// restore hands a saved state back to the job and returns the checkpoint without it: the SQN the
// job had reached (0: none) and, a sink's, the restart that SQN counts from ("" if unnamed) and
// the sequences its inputs had left.
func (c *checkpoints) restore(ctx context.Context) (protocol.Checkpoint, error) {
	var e jetstream.KeyValueEntry
	err := untilSettled(ctx, func(ctx context.Context) error {
		var err error
		e, err = c.kv.Get(ctx, c.key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return protocol.Checkpoint{}, nil
	}
	if err != nil {
		return protocol.Checkpoint{}, fmt.Errorf("%s: read checkpoint: %w", c.label, err)
	}
	var cp protocol.Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return protocol.Checkpoint{}, fmt.Errorf("%s: checkpoint: %w", c.label, err)
	}
	if err := c.job.Restore(cp.State); err != nil {
		return protocol.Checkpoint{}, fmt.Errorf("%s: restore checkpoint: %w", c.label, err)
	}
	c.log("resuming from checkpoint", "sqn", cp.SQN)
	cp.State = nil
	return cp, nil
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
			c.puts.Add(1)
			go func() { defer c.puts.Done(); c.put(sqn, data) }()
		})
	}
}

// sinkCheckpoints saves a sink's checkpoint (a file sink: the file's length and the SQN of its
// last row) with every round it writes. The rounds' messages are acknowledged once the
// checkpoint covering them is stored: a sink that restarts cuts its file back to the checkpoint
// and gets every later row again, and drops the rounds the checkpoint already covers, so each
// row is written once. One put is in flight at a time, carrying the newest state and every
// acknowledgement gathered since the last.
type sinkCheckpoints struct {
	c   *checkpoints
	log *slog.Logger

	mu      sync.Mutex
	state   []byte // the newest state not yet stored, nil when stored
	sqn     uint64
	restart string     // the restart sqn counts from (protocol.Checkpoint.Restart)
	left    [][]string // the sequences the inputs had left (protocol.Checkpoint.Left); not written to
	acks    []*roundAcks

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newSinkCheckpoints(c *checkpoints, log *slog.Logger) *sinkCheckpoints {
	return &sinkCheckpoints{c: c, log: log, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// record takes the job's state after round sqn, of the sequence restart began, with its inputs
// having left the sequences left, and queues it with the round's messages.
func (s *sinkCheckpoints) record(sqn uint64, restart string, left [][]string, acks *roundAcks) {
	state, err := s.c.job.Checkpoint()
	if err != nil {
		s.log.Warn("checkpoint not taken", "sqn", sqn, "error", err)
	}
	s.mu.Lock()
	if err == nil {
		s.state, s.sqn, s.restart, s.left = state, sqn, restart, left
	}
	if acks != nil {
		s.acks = append(s.acks, acks)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// A sink's checkpoint put that failed (the KV stream elects a leader, the broker restarts) is
// tried again after saveRetryFirst, then at doubling spaces up to saveRetryMax, until one is
// stored. It cannot wait for the next round: the rounds it covers stay unacknowledged until it
// is stored, and once they fill the input consumer's MaxAckPending no next round comes. (Retried
// only with the next round, a put failed while the Raft leaders are gathered at a pipeline's
// start stalls the sink for good: the likely cause of a LOCAL sink of a 3-broker chain that
// stopped at 35 rows of 6,000, its producers finished.)
const (
	saveRetryFirst = 100 * time.Millisecond
	saveRetryMax   = 2 * time.Second
)

// run stores checkpoints as they come, and tries a failed one again, until close or ctx.
func (s *sinkCheckpoints) run(ctx context.Context) {
	defer close(s.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	wait := backoff.Backoff{First: saveRetryFirst, Max: saveRetryMax} // from First again after a save
	for {
		select {
		case <-s.wake:
		case <-retry.C:
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		}
		if err := s.save(ctx); err != nil {
			retry.Reset(wait.Next())
			continue
		}
		wait.Reset()
		retry.Stop()
	}
}

// save stores the newest state and then acknowledges what it covers; a failed put keeps the
// acknowledgements for the next.
func (s *sinkCheckpoints) save(ctx context.Context) error {
	s.mu.Lock()
	state, sqn, restart, left, acks := s.state, s.sqn, s.restart, s.left, s.acks
	s.state, s.acks = nil, nil
	s.mu.Unlock()
	if state == nil && len(acks) == 0 {
		return nil
	}
	if state != nil {
		data, err := json.Marshal(protocol.Checkpoint{SQN: sqn, State: state, Restart: restart, Left: left})
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = s.c.kv.Put(pctx, s.c.key, data)
			cancel()
		}
		if err != nil {
			s.mu.Lock()
			if s.state == nil {
				s.state, s.sqn, s.restart, s.left = state, sqn, restart, left
			}
			s.acks = append(acks, s.acks...)
			s.mu.Unlock()
			s.log.Warn("checkpoint not saved; its rounds stay unacknowledged until it is (tried again)", "sqn", sqn, "error", err)
			return fmt.Errorf("%s: save checkpoint: %w", s.c.label, err)
		}
	}
	for _, a := range acks {
		a.release()
	}
	return nil
}

// close stops the goroutine and stores what is left.
func (s *sinkCheckpoints) close(ctx context.Context) error {
	close(s.stop)
	<-s.done
	return s.save(ctx)
}
