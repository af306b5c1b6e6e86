package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
)

// An executable job runs as a process the adapter (package execjob) connects to the job's pipes:
// rounds assembled by the checker are written to its inputs, and each block it writes to an
// output is published as it is read. The n-th block of an output carries the SQN and head of the
// n-th round written (the original's connection queue), so a program that answers each round
// with one block keeps the SQNs — gaps and dummies included — that joins downstream align on. A
// program that writes more blocks than rounds numbers on (SQNs only ever grow). The finished bit
// of a round is not copied onto the program's blocks, whose count it does not know: when the
// program closes an output, the stream ends with a marker, unless the program set the finished
// bit itself. A source numbers its blocks as Go sources do.

// roundTag is what an output block inherits from the round it answers; once every output has
// stored its block for the round, the round's input messages are acknowledged.
type roundTag struct {
	sqn  uint64
	head uint32
	acks *pendingAcks
}

// pendingAcks acknowledges a round's input messages once each output has stored its answer: a
// worker that dies before leaves them to be delivered to the job's next instance.
type pendingAcks struct {
	msgs    []jetstream.Msg
	pending atomic.Int32
}

func (t *task) answered(a *pendingAcks) {
	if a != nil && a.pending.Add(-1) == 0 {
		t.ack(a.msgs)
	}
}

// execOutput is one output of a running executable.
type execOutput struct {
	k    int
	pub  *publisher
	tags chan roundTag // rounds written to the program, oldest first
	last uint64        // SQN of the last block published
	fin  bool          // the last block carried the finished bit
}

// execTagQueue bounds how far a program's outputs may lag behind its inputs before numbering
// falls back to counting on (a program that drops blocks on purpose).
const execTagQueue = 1 << 14

// runExec runs the executable to its end: inputs closed when upstream ends, outputs read until
// the program closes them, the exit status as the job's result. procCtx bounds the program (a
// drained source's ends first); ctx bounds the pipes, which still flush after a drain.
func (t *task) runExec(procCtx, ctx context.Context, ins []*input, outs []*publisher) error {
	proc, err := execjob.Start(procCtx, *t.execSpec, func(stream, line string) {
		if stream == execjob.Stderr {
			t.log.Warn(line)
			return
		}
		fmt.Fprintln(t.jctx.Out, line)
	})
	if err != nil {
		return err
	}
	defer proc.Stop(execjob.DefaultGrace) // releases everything once it has exited
	eo := make([]*execOutput, len(outs))
	for k, pub := range outs {
		eo[k] = &execOutput{k: k, pub: pub, tags: make(chan roundTag, execTagQueue)}
	}
	var wg sync.WaitGroup
	outErrs := make([]error, len(eo))
	for k, o := range eo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if outErrs[k] = t.pumpOutput(ctx, proc, o, len(ins) == 0); outErrs[k] != nil {
				proc.Stop(0) // a malformed frame fails the job: the program has nothing more to say
			}
		}()
	}
	var inErr error
	if len(ins) > 0 {
		inErr = t.feedExec(ctx, proc, ins, eo)
	}
	if cerr := proc.CloseInputs(); cerr != nil && inErr == nil {
		inErr = cerr
	}
	wg.Wait()
	waitErr := proc.Wait()
	if err := errors.Join(outErrs...); err != nil {
		return err
	}
	drained := procCtx.Err() != nil && ctx.Err() == nil
	if waitErr != nil && !drained {
		return waitErr
	}
	if inErr != nil && !errors.Is(inErr, execjob.ErrInputClosed) {
		return inErr
	}
	return t.closeExecOutputs(ctx, eo)
}

// feedExec writes the job's rounds to the program until an input ends or a round carries the
// finished bit. A program that stops reading (it exited, or closed an input) ends the feeding.
func (t *task) feedExec(ctx context.Context, proc *execjob.Process, ins []*input, eo []*execOutput) error {
	chk, err := t.newChecker(ins)
	if err != nil {
		return err
	}
	if chk == nil {
		return fmt.Errorf("%s: an executable job needs at least one synchronous input", t.label)
	}
	defer t.syncCheckerStats(chk)
	take := func(k int) (codec.Block, bool, error) { return ins[k].next(ctx, &t.stats) }
	payloads := make([][][]byte, len(ins))
	heads := make([][]uint32, len(ins))
	for {
		r, ok, err := chk.Next(take)
		if err != nil || !ok {
			return err
		}
		for k, blocks := range r.Blocks {
			if blocks != nil {
				payloads[k], heads[k] = blockParts(blocks, payloads[k], heads[k])
			}
		}
		if err := proc.WriteRound(ctx, payloads, heads); err != nil {
			return err
		}
		t.stats.rounds.Add(1)
		var acks *pendingAcks
		if msgs := takeConsumed(ins, chk); len(eo) == 0 {
			t.ack(msgs) // a sink program: handing it the data is all there is
		} else if len(msgs) > 0 {
			acks = &pendingAcks{msgs: msgs}
			acks.pending.Store(int32(len(eo)))
		}
		for _, o := range eo {
			t.queueTag(ctx, o, roundTag{r.SQN, r.Head, acks})
		}
		if _, _, fin := codec.Flags(r.Head, t.headSize); fin {
			return nil
		}
	}
}

// tagWait is how long the feeding waits for a program's output to catch up when its queue of
// rounds is full, before it numbers that output on (a program that drops blocks on purpose).
const tagWait = time.Second

// queueTag queues a round for an output's numbering. A full queue means the program's pipes hold
// many rounds not yet answered: waiting for it is backpressure, as a Go job gets; only a program
// that stays silent on this output makes the round count as answered and its blocks number on.
func (t *task) queueTag(ctx context.Context, o *execOutput, tag roundTag) {
	select {
	case o.tags <- tag:
		return
	default:
	}
	timer := time.NewTimer(tagWait)
	defer timer.Stop()
	select {
	case o.tags <- tag:
	case <-timer.C:
		t.answered(tag.acks)
	case <-ctx.Done():
	}
}

// pumpOutput publishes every block the program writes to one output.
func (t *task) pumpOutput(ctx context.Context, proc *execjob.Process, o *execOutput, source bool) error {
	finMask := codec.HeadMask(t.headSize, codec.BitFinished)
	var buf []byte
	for {
		payload, head, err := proc.ReadOutput(o.k, buf[:0])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, execjob.ErrStopped) {
				return nil // stopped by the worker (a stop, a drain, or another output's error)
			}
			return err
		}
		buf = payload
		var sqn uint64
		var out uint32
		var tag roundTag
		switch {
		case source:
			step, err := nextSourceStep(ctx, t.sequencer)
			if err != nil {
				return err
			}
			sqn, out = step.SQN, align.OutHead(head, step.Head(t.headSize), t.headSize, false, t.assign.Job.Head)
		default:
			select {
			case tag = <-o.tags:
			default:
				tag = roundTag{}
			}
			sqn = max(tag.sqn, o.last+1)
			out = align.OutHead(head, tag.head&^finMask, t.headSize, true, t.assign.Job.Head)
		}
		if err := o.pub.Write(ctx, codec.Block{SQN: sqn, Head: out, Payload: payload}); err != nil {
			return err
		}
		if acks := tag.acks; acks != nil {
			o.pub.AfterStored(func() { t.answered(acks) })
		}
		o.last, o.fin = sqn, out&finMask != 0
		t.stats.blocksOut.Add(1)
	}
}

// closeExecOutputs flushes the outputs; one whose last block did not carry the finished bit ends
// with a marker naming its last SQN.
func (t *task) closeExecOutputs(ctx context.Context, eo []*execOutput) error {
	var errs []error
	for _, o := range eo {
		// Rounds the program finished without answering on this output are consumed all the same.
		for len(o.tags) > 0 {
			t.answered((<-o.tags).acks)
		}
		var end *uint64
		if !o.fin {
			end = &o.last
		}
		if err := o.pub.Close(ctx, end); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", t.label, err)
	}
	return nil
}
