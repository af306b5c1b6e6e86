package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// stats are a running job's counters, read by heartbeats while the job writes them.
type stats struct {
	blocksIn, blocksOut, rounds, stale, dummies, queueDrops atomic.Uint64
}

func (s *stats) snapshot() protocol.JobStats {
	return protocol.JobStats{
		BlocksIn: s.blocksIn.Load(), BlocksOut: s.blocksOut.Load(), Rounds: s.rounds.Load(),
		Stale: s.stale.Load(), Dummies: s.dummies.Load(), QueueDrops: s.queueDrops.Load(),
	}
}

// task is one job instance on this worker: prepared (built, args checked), then started.
type task struct {
	assign    protocol.Assignment
	label     string
	runner    *job.Runner
	jctx      *job.Context
	ctxConfig job.ContextConfig
	headSize  int
	log       *slog.Logger
	stats     stats
	stdin     *stdinReader

	// logPub receives a LoggingJob row per compute block when the job has log: true.
	logPub   *publisher
	logRow   builtin.LogRow
	logSQN   uint64
	logCodec codec.Codec

	cancel context.CancelFunc
	// drainCtx ends a source's generation without stopping its outputs: its streams end
	// cleanly (a graceful stop drains the pipeline from its sources).
	drainCtx context.Context
	drain    context.CancelFunc
	done     chan struct{}
	err      error // set before done is closed
}

// run executes the job to its end: setup, the compute loop, flush, close. It returns nil when the
// job finished or ended, ctx's error when stopped.
func (t *task) run(ctx context.Context, js jetstream.JetStream) (err error) {
	jobCtx := ctx
	if t.runner.IsSource() {
		jobCtx = t.drainCtx
	}
	t.jctx = job.NewContext(jobCtx, t.ctxConfig)
	defer t.stdin.Close()
	if err := t.runner.Setup(t.jctx); err != nil {
		return err
	}
	defer func() {
		if cerr := t.runner.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	// The publishers and readers outlive the compute loop a little: the loop ends, then the
	// publishers flush. pctx stops them all when run returns.
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	outs := make([]*publisher, len(t.assign.Outputs))
	for k, p := range t.assign.Outputs {
		pub, err := newPublisher(pctx, js, p, t.log)
		if err != nil {
			return fmt.Errorf("%s: %w", t.label, err)
		}
		outs[k] = pub
		wg.Add(1)
		go func() { defer wg.Done(); pub.run(pctx) }()
	}
	if t.assign.Job.Log {
		t.logPub, outs = outs[len(outs)-1], outs[:len(outs)-1]
		if t.logCodec, err = codec.New(t.logPub.pipe.Codec, t.logPub.pipe.BlockSize); err != nil {
			return fmt.Errorf("%s: logging pipe %d: %w", t.label, t.logPub.pipe.ID, err)
		}
	}
	ins := make([]*input, len(t.assign.Inputs))
	for k, p := range t.assign.Inputs {
		ins[k] = newInput(k, p)
		wg.Add(1)
		go func() { defer wg.Done(); ins[k].read(pctx, js) }()
	}
	var last outcome
	if t.runner.IsSource() {
		last, err = t.runSource(pctx, js, outs)
	} else {
		last, err = t.runRounds(pctx, ins, outs)
	}
	if err != nil {
		return err
	}
	if err := t.closeOutputs(ctx, outs, last); err != nil {
		return err
	}
	if t.logPub != nil {
		// The logging rows never carry the finished bit: their stream ends with a marker.
		return t.closeOutputs(ctx, []*publisher{t.logPub}, outcome{lastSQN: t.logSQN})
	}
	return nil
}

// writeLogRow sends one LoggingJob row for a compute block that ran from in to out.
func (t *task) writeLogRow(ctx context.Context, in, out time.Time) error {
	if t.logPub == nil {
		return nil
	}
	row := t.logRow.Row(t.assign.Job.Label(), t.stats.rounds.Load(), in, out)
	payload, err := t.logCodec.Append(nil, row)
	if err != nil {
		return fmt.Errorf("%s: logging pipe %d: %w", t.label, t.logPub.pipe.ID, err)
	}
	t.logSQN++
	return t.logPub.Write(ctx, codec.Block{SQN: t.logSQN, Payload: payload})
}

// outcome says how the compute loop ended, for the end-of-stream marker.
type outcome struct {
	lastSQN  uint64
	finished bool // the last block carried the finished bit
}

// closeOutputs flushes every output; where the last block did not carry the finished bit, an
// end-of-stream marker tells downstream that nothing follows.
func (t *task) closeOutputs(ctx context.Context, outs []*publisher, last outcome) error {
	var end *uint64
	if !last.finished {
		end = &last.lastSQN
	}
	var errs []error
	for _, p := range outs {
		if err := p.Close(ctx, end); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", t.label, err)
	}
	return nil
}

// runSource numbers the source's blocks from 1, with the reset bit on the first. A source that
// implements job.Checkpointer and has a checkpoint (it moved from another worker) continues
// after it, numbering on without a reset; its checkpoint is saved each time the blocks emitted
// so far are stored.
func (t *task) runSource(ctx context.Context, js jetstream.JetStream, outs []*publisher) (outcome, error) {
	var o outcome
	cp, err := t.openCheckpoints(ctx, js)
	if err != nil {
		return o, err
	}
	if cp != nil {
		if o.lastSQN, err = cp.restore(ctx); err != nil {
			return o, err
		}
	}
	resetNext := o.lastSQN == 0
	resetMask := codec.HeadMask(t.headSize, codec.BitReset)
	finMask := codec.HeadMask(t.headSize, codec.BitFinished)
	stepIn := time.Now()
	err = t.runner.Generate(t.jctx, func(payloads [][]byte) error {
		if err := t.writeLogRow(ctx, stepIn, time.Now()); err != nil {
			return err
		}
		defer func() { stepIn = time.Now() }()
		o.lastSQN++
		for k, pub := range outs {
			head := t.jctx.OutHead(k) &^ resetMask
			if resetNext {
				head |= resetMask
			}
			if err := pub.Write(ctx, codec.Block{SQN: o.lastSQN, Head: head, Payload: payloads[k]}); err != nil {
				return err
			}
			o.finished = head&finMask != 0
		}
		resetNext = false
		t.stats.blocksOut.Add(uint64(len(outs)))
		t.stats.rounds.Add(1)
		if cp != nil {
			cp.save(o.lastSQN, outs)
		}
		return nil
	})
	switch {
	case err == nil, errors.Is(err, job.ErrEnd):
		return o, nil
	case ctx.Err() != nil:
		return o, ctx.Err()
	case t.drainCtx.Err() != nil:
		return o, nil // drained: the outputs end here
	}
	return o, err
}

// runRounds is the compute loop of a job with inputs: align the inputs into a compute block, run
// the job, write its outputs with the round's SQN and merged head, acknowledge what was consumed
// once the outputs are stored. It ends after the block with the finished bit, or when an input
// ends.
func (t *task) runRounds(ctx context.Context, ins []*input, outs []*publisher) (outcome, error) {
	var o outcome
	payloads := make([][][]byte, len(ins))
	heads := make([][]uint32, len(ins))
	var outBuf [][]byte
	for {
		round, ok, err := alignRound(ctx, ins, &t.stats)
		if err != nil {
			return o, err
		}
		if !ok {
			return o, nil
		}
		var inHead uint32
		for k, in := range ins {
			payloads[k], heads[k] = payloads[k][:0], heads[k][:0]
			for _, b := range in.roundBlock {
				payloads[k] = append(payloads[k], b.Payload)
				heads[k] = append(heads[k], b.Head)
				inHead |= b.Head
			}
		}
		t.jctx.BeginBlock(heads)
		stepIn := time.Now()
		outBuf, err = t.runner.Step(t.jctx, payloads, outBuf)
		if errors.Is(err, job.ErrEnd) {
			t.ackConsumed(ins, outs)
			return o, nil
		}
		if err != nil {
			return o, err
		}
		t.stats.rounds.Add(1)
		if err := t.writeLogRow(ctx, stepIn, time.Now()); err != nil {
			return o, err
		}
		for k, pub := range outs {
			head := mergeHead(t.jctx.OutHead(k), inHead, t.headSize)
			if err := pub.Write(ctx, codec.Block{SQN: round, Head: head, Payload: outBuf[k]}); err != nil {
				return o, err
			}
		}
		t.stats.blocksOut.Add(uint64(len(outs)))
		for _, in := range ins {
			in.roundBlock = in.roundBlock[:0]
		}
		t.ackConsumed(ins, outs)
		o.lastSQN = round
		_, _, inFin := codec.Flags(inHead, t.headSize)
		if inFin || t.jctx.Finished() {
			o.finished = len(outs) > 0
			return o, nil
		}
	}
}

// mergeHead is the head written on an output: the job's head with the reserved bits fixed by the
// system — corrupted and finished are the or of job and inputs, reset is the inputs' (a job can
// neither set nor clear it).
func mergeHead(jobHead, inHead uint32, size int) uint32 {
	cor := codec.HeadMask(size, codec.BitCorrupted)
	rst := codec.HeadMask(size, codec.BitReset)
	fin := codec.HeadMask(size, codec.BitFinished)
	h := jobHead &^ rst
	h |= inHead & (cor | rst | fin)
	return h
}

// alignRound finds the next round that every input has complete: an input behind the others
// drops its rounds until it catches up. ok is false once an input has ended.
func alignRound(ctx context.Context, ins []*input, st *stats) (uint64, bool, error) {
	var target uint64
	for {
		raised := false
		for _, in := range ins {
			r, ok, err := in.nextRound(ctx, target, st)
			if err != nil || !ok {
				return 0, false, err
			}
			if r > target {
				target, raised = r, true
			}
		}
		// When no input raised the target, every input holds exactly the target round.
		if !raised {
			return target, true, nil
		}
	}
}

// ackConsumed acknowledges every message the job has fully consumed, once the outputs computed
// from it are stored: a job that dies before that leaves them to be delivered again.
func (t *task) ackConsumed(ins []*input, outs []*publisher) {
	var msgs []jetstream.Msg
	for _, in := range ins {
		if len(in.done) > 0 {
			msgs = append(msgs, in.done...)
			in.done = in.done[:0]
		}
	}
	if len(msgs) == 0 {
		return
	}
	ack := func() {
		for _, m := range msgs {
			if err := m.Ack(); err != nil {
				t.log.Debug("ack failed; the block will be delivered again", "error", err)
			}
		}
	}
	if len(outs) == 0 {
		ack()
		return
	}
	var pending atomic.Int32
	pending.Store(int32(len(outs)))
	for _, p := range outs {
		p.AfterStored(func() {
			if pending.Add(-1) == 0 {
				ack()
			}
		})
	}
}
