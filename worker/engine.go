package worker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync/atomic"
	"unsafe"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/cacheline"
	"github.com/marvelo/marvelo/worker/align"
)

// The round engine runs every job that has inputs, whatever its kind: it aligns the inputs into
// rounds (the checker: dummies, stale blocks, resets; async and optional inputs beside it), skips
// ahead where a max_queue pipe dropped blocks, hands each round to the job's kind, and ends after
// the round that carries the finished bit or when an input ends. A round carries the input
// messages it consumed; they are acknowledged once every output has stored its answer to the
// round, so a job that dies in between leaves them to its next instance.
//
// The kind is what computes: a Go job answers a round at once, where it is handed (goKind); an
// executable is written the round and answers later, in order, on each of its outputs (execKind).
// Everything else — numbering, heads, the finished bit, acknowledgements, stats — is here, once.

// jobKind is the part of a job the engine hands rounds to.
type jobKind interface {
	// step runs one round. The kind answers it on every output with answer or skip, now or later
	// (but in round order). ended reports that the job ends with this round (a Go job's ErrEnd).
	step(ctx context.Context, r *round) (ended bool, err error)
	// finished reports that the job asked to finish with the round just stepped.
	finished() bool
	// skipRound passes a poison round by without handing it to the job (poisonRound): every
	// output answers it with nothing, in its place among the rounds, and downstream makes a
	// dummy there, as for a lost block.
	skipRound(ctx context.Context, r *round) error
}

// round is one compute block as the engine hands it to a kind. The slices are reused from round
// to round; a kind that keeps a round past step keeps only its tag.
type round struct {
	_   cacheline.Pad // written every round (cacheline)
	tag roundTag
	// connector: the round comes from the checker (false for a job whose inputs are all async,
	// numbered as a source).
	connector bool
	payloads  [][][]byte
	heads     [][]uint32
	_         cacheline.Pad
}

// newRound makes the round a job's rounds reuse, with room for every input's blocks of a round:
// padded, as the job's goroutine writes all of it every round (cacheline).
func newRound(ins []*input) *round {
	r := &round{payloads: cacheline.Make[[][]byte](len(ins)), heads: cacheline.Make[[]uint32](len(ins))}
	for k, in := range ins {
		n := max(in.pipe.BlockCount, 1)
		r.payloads[k], r.heads[k] = cacheline.Slice[[]byte](n), cacheline.Slice[uint32](n)
	}
	return r
}

// roundTag is what an answer inherits from the round it answers: its SQN, its head (the or of
// its inputs' heads, with the finished bit) and the messages to acknowledge once answered.
type roundTag struct {
	sqn  uint64
	head uint32
	acks *roundAcks
	// poison: the round is skipped (poisonRound) and never written to a program; an output
	// answers it with nothing when its turn comes (execKind.nextTag).
	poison bool
	// restart names the restart the round counts from (codec.RestartHeader): the one it
	// begins, or the last one before it; "" for one that cannot be named. A new instance of the
	// job computes the same name for the round again.
	restart string
}

// sourceTag is the tag of a source's step (and of an all-async job's). A restart is named by the
// job, its instance (epoch) and its number in the instance, and every step names the restart its
// sequence began with: a source that moves or restarts without a checkpoint begins a new
// sequence, which its consumers must take as a restart. A sequence resumed from a checkpoint is
// not named until its next reset (step.Restart 0). names keeps the name; it belongs to the
// calling goroutine (a source program's outputs are numbered each by its own pump).
func (t *task) sourceTag(step align.Step, names *sequenceName) roundTag {
	tag := roundTag{sqn: step.SQN, head: step.Head(t.headSize)}
	if step.Restart > 0 {
		tag.restart = names.ofSource(t.assign.Job.ID, t.assign.Epoch, step.Restart)
	}
	return tag
}

// roundSequence names the restart a checker's round counts from, from the restarts its
// synchronous inputs' blocks in the round count from (input.sequenceOfRound), so that every
// instance computing the round from the same blocks names it alike; "" when an input's sequence
// has no name (a block from a NATS client, or SQN 1 without the reset bit). A round that begins
// a restart is named by it; the rounds after it by it too, up to the next.
func (t *task) roundSequence(chk *align.Checker, ins []*input) string {
	if k := chk.Single(); k >= 0 { // one synchronous input: its name is the round's
		_, held := chk.Held(k)
		return ins[k].sequenceOfRound(held)
	}
	names := t.sequence.buf[:0]
	for k, in := range ins {
		if in.pipe.Async {
			continue
		}
		_, held := chk.Held(k)
		name := in.sequenceOfRound(held)
		if name == "" {
			return ""
		}
		names = append(names, name)
	}
	return t.sequence.ofInputs(names)
}

// sequenceName keeps the name of the restart a job's rounds count from while it stays the same:
// building it (a source's from its numbers, a connector's from several inputs' names) costs more
// than the rest of a round's bookkeeping.
type sequenceName struct {
	_       cacheline.Pad // written every round (cacheline)
	name    string
	restart uint64   // a source's: the restart number name was built from (0: none yet)
	from    []string // a connector's: the inputs' names name was hashed from (none: not yet)
	buf     []string // where roundSequence gathers the inputs' names of a round
	_       cacheline.Pad
}

// ofSource is the name of a source's restart n of its instance epoch: "job.epoch.n".
func (s *sequenceName) ofSource(job int, epoch, n uint64) string {
	if n != s.restart {
		s.restart, s.name = n, fmt.Sprintf("%d.%d.%d", job, epoch, n)
	}
	return s.name
}

// ofInputs is the name of a round whose synchronous inputs' blocks count from the restarts
// names: the one name of a single input, else a hash of them all in order. names is kept as
// s.buf for the next round to gather into.
func (s *sequenceName) ofInputs(names []string) string {
	s.buf = names
	if len(names) == 1 {
		return names[0]
	}
	if len(s.from) > 0 && slices.Equal(names, s.from) {
		return s.name
	}
	h := fnv.New64a()
	for _, n := range names {
		h.Write([]byte(n))
		h.Write([]byte{0})
	}
	s.name = strconv.FormatUint(h.Sum64(), 36)
	s.from = append(s.from[:0], names...)
	return s.name
}

// roundAcks are the input messages a round consumed. Each output releases them once its answer
// (or the decision not to answer) is stored; the last release acknowledges them.
type roundAcks struct {
	t       *task
	msgs    []jetstream.Msg
	pending atomic.Int32
}

// newRoundAcks returns the acknowledgements of msgs, released by outputs releases; nil when
// there is nothing to acknowledge.
func (t *task) newRoundAcks(msgs []jetstream.Msg, outputs int) *roundAcks {
	if len(msgs) == 0 {
		return nil
	}
	a := &roundAcks{t: t, msgs: msgs}
	a.pending.Store(int32(max(outputs, 1)))
	return a
}

// release is one output's release; nil-safe.
func (a *roundAcks) release() {
	if a != nil && a.pending.Add(-1) == 0 {
		a.t.ack(a.msgs)
	}
}

// outPort is one output of a running job: its publisher and what its stream ends with.
type outPort struct {
	k    int
	pub  *publisher
	last uint64 // SQN of the last block written
	fin  bool   // the last block carried the finished bit
}

func newOutPorts(pubs []*publisher) []*outPort {
	ports := make([]*outPort, len(pubs))
	for k, p := range pubs {
		ports[k] = &outPort{k: k, pub: p}
	}
	return ports
}

// answer writes a job's answer to a round on output o: the round's SQN, the head of OutHead (the
// finished bit of the round passes, whether or not the job sees heads), and the round's messages
// released once the block is stored. readOnly: the payload is an input's (publisher.Write). The
// publisher counts the block out.
func (t *task) answer(ctx context.Context, o *outPort, tag roundTag, jobHead uint32, payload []byte, connector, readOnly bool) error {
	head := align.OutHead(jobHead, tag.head, t.headSize, connector, t.assign.Job.Head)
	if err := o.pub.write(ctx, codec.Block{SQN: tag.sqn, Head: head, Payload: payload}, readOnly, tag.restart); err != nil {
		return err
	}
	if tag.acks != nil {
		o.pub.AfterStored(tag.acks.release)
	}
	o.last, o.fin = tag.sqn, head&codec.HeadMask(t.headSize, codec.BitFinished) != 0
	return nil
}

// withinInputs reports whether p lies within one of a round's input payloads. Those are memory
// nobody writes again: a NATS message's data, a chunk a link's producer copied into
// (publisher.own), a dummy's payload; a job reads them and never writes them (job.RawJob). An
// answer that passes one on (a forward) is then handed down a chained pipe without a copy.
func withinInputs(p []byte, in [][][]byte) bool {
	if len(p) == 0 {
		return false
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	end := start + uintptr(len(p))
	for _, blocks := range in {
		for _, q := range blocks {
			if len(q) == 0 {
				continue
			}
			// Pointers compared as numbers: the collector does not move heap objects, and both
			// slices are alive for the comparison.
			qs := uintptr(unsafe.Pointer(unsafe.SliceData(q)))
			if start >= qs && end <= qs+uintptr(len(q)) {
				return true
			}
		}
	}
	return false
}

// skip releases a round on output o without an answer: downstream makes a dummy for its SQN
// (the stream's end marker names it, should it be the last). The release still waits for the
// blocks written before to be stored.
func (t *task) skip(o *outPort, tag roundTag) {
	if tag.acks != nil {
		o.pub.AfterStored(tag.acks.release)
	}
	o.last, o.fin = tag.sqn, false
}

// consume releases a round on output o that the job ended before: nothing is published for it
// and the output's end stays where it was (downstream sees the stream end, not a dummy).
func (t *task) consume(o *outPort, tag roundTag) {
	if tag.acks != nil {
		o.pub.AfterStored(tag.acks.release)
	}
}

// closeOutputs flushes every output; one whose last block did not carry the finished bit ends
// with a marker naming its last SQN.
func (t *task) closeOutputs(ctx context.Context, outs []*outPort) error {
	var errs []error
	for _, o := range outs {
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

// runRounds is the engine's loop (see above). It returns nil when the rounds ended (an input
// ended, the finished bit, the job's end), else the error that stopped them.
func (t *task) runRounds(ctx context.Context, ins []*input, outs []*outPort, kind jobKind) error {
	chk, err := t.newChecker(ins)
	if err != nil {
		return err
	}
	if chk != nil {
		defer t.syncCheckerStats(chk, ins)
	}
	opts, err := t.startOptionals(ctx, ins)
	if err != nil {
		return err
	}
	var seq *align.SourceSequencer
	if chk == nil {
		seq = t.sequencer // every input is async: the job numbers its blocks as a source does
	}
	// A job whose inputs are all optional runs a round per value that arrives and ends with its
	// producers: an optional input never holds its receiver, and nothing else would end it.
	allOptional := len(opts.bufs) == len(ins)
	rejoin, skipping := false, false
	take := func(k int) (codec.Block, bool, error) {
		b, ok, err := ins[k].next(ctx, &t.stats)
		if ins[k].gapSeen {
			ins[k].gapSeen, rejoin = false, true
		}
		return b, ok, err
	}
	r := newRound(ins)
	t.sequence.buf = cacheline.Slice[string](len(ins))
	done := ctx.Done()
	for {
		// A stop ends the rounds here too, not only where an input waits: rounds of dummies for
		// a gap (the checker holds the next block) take nothing from an input, and neither does
		// a round a sink only writes.
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		var b codec.Block
		var head uint32
		usual := false
		if chk != nil {
			b, head, usual = chk.Usual(take)
		}
		if usual {
			// The usual round of a job with one synchronous input: its block, as Next would have
			// made it a round (align.Checker.Usual).
			if rejoin {
				rejoin = false
				chk.Rejoin()
			}
			skipping = false // a round with no dummy is whole
			k := chk.Single()
			r.tag.sqn, r.tag.head, r.connector = b.SQN, head, true
			r.tag.restart = t.roundSequence(chk, ins)
			r.payloads[k], r.heads[k] = append(r.payloads[k][:0], b.Payload), append(r.heads[k][:0], b.Head)
			if b.SQN%64 == 0 || head != 0 {
				t.syncCheckerStats(chk, ins)
			}
		} else if chk != nil {
			cr, ok, err := chk.Next(take)
			if err != nil {
				return t.protocolViolation(err)
			}
			if !ok {
				return nil
			}
			if rejoin {
				// max_queue dropped blocks: skip ahead to the newest instead of making dummies.
				rejoin, skipping = false, true
				chk.Rejoin()
			}
			if skipping {
				// Until a round is whole again, a round with a dummy on a max_queue input is
				// skipped: the one the drop cut (its blocks before the drop, dummies after) and
				// the one the rejoin lands in halfway (dummies, then the first kept block).
				if queueDummies(cr, ins) {
					t.skipRound(cr)
					t.ack(takeConsumed(ins, chk))
					continue
				}
				skipping = false
			}
			r.tag.sqn, r.tag.head, r.connector = cr.SQN, cr.Head, true
			r.tag.restart = t.roundSequence(chk, ins)
			for k, blocks := range cr.Blocks {
				if blocks != nil {
					r.payloads[k], r.heads[k] = blockParts(blocks, r.payloads[k], r.heads[k])
				}
			}
			if cr.SQN%64 == 0 || cr.Head != 0 {
				t.syncCheckerStats(chk, ins) // counters for heartbeats; the end of the loop syncs too
			}
		} else {
			if allOptional {
				more, err := opts.await(ctx)
				if err != nil || !more {
					return err
				}
			}
			step, err := nextSourceStep(ctx, seq)
			if err != nil {
				return err
			}
			r.tag = t.sourceTag(step, &t.sequence)
		}
		inputEnded, err := t.takeAsync(ctx, ins, opts, r.payloads, r.heads)
		if err != nil {
			return err
		}
		if inputEnded {
			return nil
		}
		r.tag.acks = t.newRoundAcks(takeConsumed(ins, chk), len(outs))
		var jobEnded bool
		poison := t.poisonRound(r)
		if poison {
			err = kind.skipRound(ctx, r)
		} else {
			jobEnded, err = kind.step(ctx, r)
		}
		if err != nil {
			return err
		}
		if len(outs) == 0 {
			r.tag.acks.release() // a sink: the round is done once the job has it
		}
		if jobEnded {
			return nil
		}
		if !poison {
			t.stats.rounds.Add(1)
		}
		_, _, inFin := codec.Flags(r.tag.head, t.headSize)
		if inFin || kind.finished() {
			return nil
		}
	}
}

// poisonRound reports whether r is the poison round the job's assignment says to skip
// (Assignment.SkipSQN: it failed the job twice in a row and the restart policy skips it), and
// says so once as a notice. Only a round of the checker is one; a later round or a reset means
// the round was acknowledged before this instance, which then skips nothing.
func (t *task) poisonRound(r *round) bool {
	if t.skipSQN == 0 || !r.connector {
		return false
	}
	_, reset, _ := codec.Flags(r.tag.head, t.headSize)
	switch {
	case r.tag.sqn == t.skipSQN:
		t.skipSQN = 0
		t.jctx.Notify(fmt.Sprintf("round SQN %d skipped as a dummy: it failed the job twice in a row (restart policy skip_poison)", r.tag.sqn))
		return true
	case r.tag.sqn > t.skipSQN, reset:
		t.skipSQN = 0
	}
	return false
}

// protocolViolation names the pipeline and the job in an SQN jump (a block further ahead than its
// pipe can have in flight), so that status and logs show where it came from; other errors pass.
func (t *task) protocolViolation(err error) error {
	var jump *SQNJumpError
	if !errors.As(err, &jump) {
		return err
	}
	t.log.Error("input pipe: protocol violation; the job fails", "pipe", jump.Pipe, "expected_sqn", jump.Expected, "received_sqn", jump.Received)
	return fmt.Errorf("pipeline %s: %s: %w", t.assign.Pipeline, t.label, jump)
}

// queueDummies reports whether a round holds a dummy on an input whose pipe has a max_queue.
func queueDummies(r align.Round, ins []*input) bool {
	for k, ds := range r.Dummy {
		if ins[k].pipe.MaxQueue <= 0 {
			continue
		}
		for _, d := range ds {
			if d {
				return true
			}
		}
	}
	return false
}

// skipRound counts a round skipped after max_queue drops: it is never handed to the job, so its
// dummies are not the job's, and its real blocks are dropped as the stream's oldest were.
func (t *task) skipRound(r align.Round) {
	for _, ds := range r.Dummy {
		for _, d := range ds {
			if d {
				t.skippedDummies++
			} else {
				t.stats.queueDrops.Add(1)
			}
		}
	}
}

// blockParts splits blocks into their payloads and heads, reusing the slices.
func blockParts(blocks []codec.Block, payloads [][]byte, heads []uint32) ([][]byte, []uint32) {
	payloads, heads = payloads[:0], heads[:0]
	for _, b := range blocks {
		payloads = append(payloads, b.Payload)
		heads = append(heads, b.Head)
	}
	return payloads, heads
}

// takeConsumed returns the messages every block of which the job has taken, leaving out the one
// holding a block the checker holds (waiting for its slot, or for the other inputs to reset):
// it is consumed only by a later round.
func takeConsumed(ins []*input, chk *align.Checker) []jetstream.Msg {
	var msgs []jetstream.Msg
	for k, in := range ins {
		if in.pipe.Optional != nil || len(in.done) == 0 { // an optional input acknowledges its own
			continue
		}
		keep := 0
		if chk != nil && !in.pipe.Async {
			if _, held := chk.Held(k); held && in.done[len(in.done)-1] == in.lastMsg {
				keep = 1
			}
		}
		msgs = append(msgs, in.done[:len(in.done)-keep]...)
		if keep == 1 {
			in.done = append(in.done[:0], in.lastMsg)
		} else {
			in.done = in.done[:0]
		}
	}
	return msgs
}

// ack acknowledges messages; a failed ack only means the block comes again (and is dropped as a
// duplicate by its SQN).
func (t *task) ack(msgs []jetstream.Msg) {
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			t.log.Debug("ack failed; the block will be delivered again", "error", err)
		}
		t.noteAcked(m)
	}
}

// noteAcked tells the input a message came from that its acknowledgement was sent (sent, not
// received: one lost on the way is made again when the message comes back; see orderer.offer).
func (t *task) noteAcked(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	for _, in := range t.ins {
		if in.pipe.Stream == md.Stream {
			in.noteAcked(md.Sequence.Stream)
			return
		}
	}
}

// allClosed reports whether every channel is closed.
func allClosed(chs []chan struct{}) bool {
	for _, ch := range chs {
		select {
		case <-ch:
		default:
			return false
		}
	}
	return true
}
