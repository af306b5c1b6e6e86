package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/cacheline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// inMsg is one NATS message of an input pipe, split into its blocks.
type inMsg struct {
	blocks []codec.Block
	end    bool          // an end-of-stream marker: no blocks follow
	endSQN uint64        // the SQN an end marker names
	msg    jetstream.Msg // nil on a realtime pipe: nothing to acknowledge
	gap    uint64        // messages the stream dropped (max_queue) just before this one
	size   uint64        // the payload bytes of its blocks
	redel  bool          // JetStream delivered it before
	// restart names the restart its blocks count from (codec.RestartHeader), if its producer
	// named it: the restart its first block begins, or the last one before.
	restart string
	err     error
}

// input is one input pipe of a running job: a goroutine reads its consumer into ch, and the job's
// goroutine takes blocks from it one at a time.
type input struct {
	_    cacheline.Pad // the job's goroutine writes its fields on every block (cacheline)
	k    int
	pipe protocol.PipeBinding
	ch   chan inMsg

	// Owned by the job's goroutine.
	cur     inMsg
	pos     int
	ended   bool
	done    []jetstream.Msg // messages whose every block is taken, to acknowledge
	lastMsg jetstream.Msg   // the message of the block taken last
	endSQN  uint64          // the SQN an end marker named
	gapSeen bool            // the stream dropped blocks (max_queue) before the block taken last
	// top is the highest SQN taken from a synchronous input since its sequence (re)started, 0
	// before its first block; dropped is how many blocks were dropped on purpose (max_queue,
	// realtime) just before the next one. They bound how far ahead the next SQN may be
	// (checkJump). An async input's top is the highest SQN it took of its named sequence
	// (takenAsync).
	top     uint64
	dropped uint64
	// restart names the restart the block the input took last counts from ("" for none, or one
	// without a name), before what restart was before that block; left holds the names
	// of the sequences the input has left, newest last (at most maxLeft). replays counts the
	// blocks dropped because they were sent again (replayed).
	restart string
	before  string
	left    []string
	replays uint64
	rt      *realtimeSub // a realtime pipe's subscription, or nil
	link    *link        // a chained pipe's link (link.go), or nil
	log     *slog.Logger // the job's log (transient consumer errors)

	// acked is the highest stream sequence of this input whose acknowledgement was sent (written
	// by the round that releases it, read by the reader goroutine: see orderer.offer).
	acked atomic.Uint64
	_     cacheline.Pad
}

// noteAcked raises acked to seq.
func (in *input) noteAcked(seq uint64) {
	for {
		cur := in.acked.Load()
		if seq <= cur || in.acked.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func newInput(k int, pipe protocol.PipeBinding) *input {
	return &input{k: k, pipe: pipe, ch: make(chan inMsg, 4)}
}

// read is the input's goroutine: it pulls messages from the pipe's durable consumer until ctx
// ends. In-flight messages are bounded by the consumer's MaxAckPending and by ch, so a slow job
// pushes back on the stream instead of growing memory.
func (in *input) read(ctx context.Context, js jetstream.JetStream) {
	if in.link == nil {
		defer close(in.ch) // a chained input's channel is its link's, which the producer feeds too
	}
	var info *jetstream.ConsumerInfo
	var it jetstream.MessagesContext
	for {
		var err error
		info, it, err = in.open(ctx, js)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		if jserr.IsGone(err) {
			in.deliver(ctx, inMsg{err: err})
			return
		}
		in.transient(ctx, err) // the broker restarts, a leader is elected: try again
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	o := newOrderer(in, js, info.AckFloor.Stream)
	for {
		m, err := o.next(it)
		if errors.Is(err, nats.ErrTimeout) {
			if !o.waited(ctx) {
				return
			}
			continue
		}
		if err != nil {
			switch {
			case ctx.Err() != nil, errors.Is(err, jetstream.ErrMsgIteratorClosed):
				return
			case jserr.IsGone(err):
				in.deliver(ctx, inMsg{err: fmt.Errorf("input pipe %d: %w", in.pipe.ID, err)})
				return
			}
			// A missed heartbeat, a reconnect, a leader change: the iterator goes on pulling.
			in.transient(ctx, err)
			continue
		}
		im := in.parse(m.Headers(), m.Data())
		im.msg = m
		var seq uint64
		if md, err := m.Metadata(); err == nil {
			seq, im.redel = md.Sequence.Stream, md.NumDelivered > 1
		}
		if !o.offer(ctx, im, seq) || im.err != nil {
			return
		}
	}
}

// open binds the pipe's durable consumer and starts pulling from it.
func (in *input) open(ctx context.Context, js jetstream.JetStream) (*jetstream.ConsumerInfo, jetstream.MessagesContext, error) {
	var cons jetstream.Consumer
	var info *jetstream.ConsumerInfo
	err := untilSettled(ctx, func(ctx context.Context) error {
		var err error
		if cons, err = js.Consumer(ctx, in.pipe.Stream, in.pipe.Consumer); err != nil {
			return fmt.Errorf("input pipe %d: consumer %s/%s: %w", in.pipe.ID, in.pipe.Stream, in.pipe.Consumer, err)
		}
		if info, err = cons.Info(ctx); err != nil {
			return fmt.Errorf("input pipe %d: consumer info: %w", in.pipe.ID, err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	// Short pulls with heartbeats: a pull a consumer's leader took with it (a server of a cluster
	// died, its consumers elected new leaders) is noticed and made again within about 2 s.
	it, err := cons.Messages(jetstream.PullMaxMessages(pullBatch(in.pipe)), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("input pipe %d: %w", in.pipe.ID, err)
	}
	return info, it, nil
}

// transientPause spaces the retries after a transient consumer error that repeats at once.
const transientPause = 100 * time.Millisecond

// transient logs a transient consumer error and waits a little before the next pull. To an
// input every error but a gone consumer or stream (jserr.IsGone) is transient (DESIGN.md §5).
func (in *input) transient(ctx context.Context, err error) {
	if in.log != nil {
		in.log.Warn("input pipe: transient consumer error; retrying", "pipe", in.pipe.ID, "error", err)
	}
	backoff.Pause(ctx, transientPause)
}

// holdWait bounds how long an input waits for a message the consumer delivered but this worker
// never received (a connection cut while it was under way, or a delivery the client dropped as
// a slow consumer after a reconnect) when the stream cannot be asked for it: the consumer
// delivers it again once its ack wait (5 s) passes. Later messages wait meanwhile, so the job
// sees the blocks in order and nothing becomes a dummy for a block that is merely late.
const holdWait = 7 * time.Second

// Asking the stream for a missing message (orderer.fill): each request is bounded by
// lookupCall, and one that failed (the stream's Raft group elects a leader) is made again after
// lookupRetry, until holdWait.
const (
	lookupCall  = time.Second
	lookupRetry = 250 * time.Millisecond
)

// orderer hands an input's messages to the job in stream order. In a work-queue stream the
// sequences a consumer delivers are consecutive, except where a max_queue pipe's stream dropped
// its oldest messages (counted, and skipped ahead) or where a delivery was lost in transit. A
// lost one is still in the stream (a work queue forgets a message only once it is
// acknowledged): the orderer reads it from there at once and hands it on, and the later
// messages follow without waiting for the consumer's redelivery, which comes after the ack wait
// and is then only acknowledged. A sequence the stream no longer holds was acknowledged already:
// it is skipped. Only while the stream cannot be asked (an election) are the later messages
// held, up to holdWait.
type orderer struct {
	in     *input
	stream func(ctx context.Context) (jetstream.Stream, error) // the pipe's stream, for fill
	expect uint64                                              // the next stream sequence
	held   []inMsg                                             // messages after a missing one, in sequence order
	seqs   []uint64                                            // their stream sequences
	until  time.Time                                           // when to give up waiting for the missing ones
	retry  time.Time                                           // when to ask the stream again (zero: no try pending)
	st     jetstream.Stream                                    // the stream, once looked up
	passed map[uint64]bool                                     // sequences below expect given up on (flush), never handed on
}

// newOrderer starts at the message after the consumer's acknowledgement floor.
func newOrderer(in *input, js jetstream.JetStream, ackFloor uint64) *orderer {
	return &orderer{in: in, expect: ackFloor + 1, stream: func(ctx context.Context) (jetstream.Stream, error) {
		return js.Stream(ctx, in.pipe.Stream)
	}}
}

func (o *orderer) next(it jetstream.MessagesContext) (jetstream.Msg, error) {
	if len(o.held) == 0 {
		return it.Next()
	}
	wait := time.Until(o.until)
	if !o.retry.IsZero() {
		wait = min(wait, time.Until(o.retry))
	}
	if wait <= 0 {
		return nil, nats.ErrTimeout
	}
	return it.Next(jetstream.NextMaxWait(wait))
}

// waited is called when next timed out with messages held: it asks the stream again for the
// missing ones, or, after holdWait, gives up on them (flush).
func (o *orderer) waited(ctx context.Context) bool {
	if len(o.held) == 0 {
		return true
	}
	if !time.Now().Before(o.until) {
		return o.flush(ctx)
	}
	return o.fill(ctx)
}

// offer takes one message: delivered at once when it is the next in order, only to be
// acknowledged when this input handed it on already, held when one before it is missing, until
// the stream hands the missing one.
func (o *orderer) offer(ctx context.Context, im inMsg, seq uint64) bool {
	switch {
	case seq == 0:
		return o.in.deliver(ctx, im)
	case seq < o.expect && o.passed[seq]:
		delete(o.passed, seq) // given up on, late: the job judges it (a late block is dropped by SQN)
		return o.in.deliver(ctx, im)
	case seq < o.expect && seq <= o.in.acked.Load():
		// Delivered again after its round acknowledged it: that acknowledgement was lost (a
		// consumer's leader changed while it travelled). Acknowledged again at once, here: held
		// for a later round, such messages can fill the consumer's MaxAckPending, and then no
		// later round comes (the pipe stalled silently, redelivering them every ack wait).
		if err := im.msg.Ack(); err != nil && o.in.log != nil {
			o.in.log.Debug("ack failed; the block will be delivered again", "pipe", o.in.pipe.ID, "error", err)
		}
		return true
	case seq < o.expect:
		// Delivered again while its round is still under way (the ack wait passed), or the
		// consumer's own delivery of a message read from the stream: this input handed its
		// blocks on already. Handed on without them, only to be acknowledged, with the round that
		// takes it (after the round under way): a job sees each block once even where it cannot
		// tell a duplicate by its SQN (an async input; a first block, SQN 1, which a checker takes
		// for a reset).
		return o.in.deliver(ctx, inMsg{msg: im.msg, redel: im.redel})
	case seq > o.expect && o.in.pipe.MaxQueue > 0:
		im.gap = seq - o.expect // the stream dropped the oldest: max_queue at work
	case seq > o.expect:
		first := len(o.held) == 0
		o.hold(im, seq)
		if first {
			return o.fill(ctx)
		}
		return true
	}
	o.expect = seq + 1
	if !o.in.deliver(ctx, im) {
		return false
	}
	return o.release(ctx)
}

func (o *orderer) hold(im inMsg, seq uint64) {
	if len(o.held) == 0 {
		o.until = time.Now().Add(holdWait)
	}
	i := len(o.seqs)
	for i > 0 && o.seqs[i-1] > seq {
		i--
	}
	if i > 0 && o.seqs[i-1] == seq {
		return // the same message twice while waiting: keep one
	}
	o.held = append(o.held[:i], append([]inMsg{im}, o.held[i:]...)...)
	o.seqs = append(o.seqs[:i], append([]uint64{seq}, o.seqs[i:]...)...)
}

// fill reads the missing messages before each held one from the stream and hands them on,
// with the held ones in order (with nothing to acknowledge: the consumer's own delivery of each
// comes later and is handed on without its blocks, to be acknowledged, as every redelivery of
// what this input handed on already is), skipping those the stream no longer holds.
// When the stream does not answer, it schedules another try and the held messages wait.
func (o *orderer) fill(ctx context.Context) bool {
	o.retry = time.Time{}
	for len(o.held) > 0 {
		for o.seqs[0] > o.expect {
			im, found, err := o.lookup(ctx, o.expect)
			if err != nil {
				if ctx.Err() != nil {
					return false
				}
				if o.in.log != nil {
					o.in.log.Debug("input pipe: missing message not read from the stream; waiting", "pipe", o.in.pipe.ID, "seq", o.expect, "error", err)
				}
				o.retry = time.Now().Add(lookupRetry)
				return true
			}
			o.expect++
			if !found {
				continue // acknowledged already
			}
			if !o.in.deliver(ctx, im) || im.err != nil {
				return false
			}
		}
		if !o.drain(ctx) {
			return false
		}
	}
	return true
}

// lookup reads the message at seq from the pipe's stream; found is false when the stream no
// longer holds it.
func (o *orderer) lookup(ctx context.Context, seq uint64) (inMsg, bool, error) {
	lctx, cancel := context.WithTimeout(ctx, lookupCall)
	defer cancel()
	if o.st == nil {
		st, err := o.stream(lctx)
		if err != nil {
			return inMsg{}, false, fmt.Errorf("input pipe %d: stream %s: %w", o.in.pipe.ID, o.in.pipe.Stream, err)
		}
		o.st = st
	}
	raw, err := o.st.GetMsg(lctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return inMsg{}, false, nil
	}
	if err != nil {
		return inMsg{}, false, fmt.Errorf("input pipe %d: message %d of stream %s: %w", o.in.pipe.ID, seq, o.in.pipe.Stream, err)
	}
	return o.in.parse(raw.Header, raw.Data), true, nil
}

// release delivers the held messages that are now in order, and fills the gaps after them.
func (o *orderer) release(ctx context.Context) bool {
	if !o.drain(ctx) {
		return false
	}
	if len(o.held) == 0 {
		o.retry = time.Time{}
		return true
	}
	return o.fill(ctx)
}

// drain delivers the held messages that are now in order.
func (o *orderer) drain(ctx context.Context) bool {
	n := len(o.held)
	for len(o.held) > 0 && o.seqs[0] == o.expect {
		if !o.in.deliver(ctx, o.held[0]) {
			return false
		}
		o.expect++
		o.held, o.seqs = o.held[1:], o.seqs[1:]
	}
	if len(o.held) > 0 && len(o.held) < n {
		o.until = time.Now().Add(holdWait)
	}
	return true
}

// flush gives up on the missing messages: the held ones go to the job, whose checker makes
// dummies for the blocks that never came.
func (o *orderer) flush(ctx context.Context) bool {
	for len(o.held) > 0 {
		if !o.in.deliver(ctx, o.held[0]) {
			return false
		}
		for seq := o.expect; seq < o.seqs[0]; seq++ {
			if o.passed == nil {
				o.passed = map[uint64]bool{}
			}
			o.passed[seq] = true
		}
		o.expect = o.seqs[0] + 1
		o.held, o.seqs = o.held[1:], o.seqs[1:]
	}
	o.retry = time.Time{}
	return true
}

// pullBatch is how many messages the reader asks for at once.
func pullBatch(p protocol.PipeBinding) int {
	if p.MaxQueue > 0 {
		return 1 // keep the queue in the stream, where the oldest block is dropped
	}
	return 16
}

func (in *input) deliver(ctx context.Context, m inMsg) bool {
	select {
	case in.ch <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// parse splits a message into blocks: a batch, a lone block, or an end marker.
func (in *input) parse(h nats.Header, data []byte) inMsg { return parseMsg(in.pipe, h, data) }

// parseMsg splits a message of a pipe into blocks (input.parse).
func parseMsg(pipe protocol.PipeBinding, h nats.Header, data []byte) inMsg {
	im := inMsg{restart: h.Get(codec.RestartHeader)}
	if v := h.Get(codec.EndHeader); v != "" {
		im.end = true
		im.endSQN, _ = strconv.ParseUint(v, 10, 64)
		return im
	}
	if v := h.Get(codec.BatchHeader); v != "" {
		n, _ := strconv.Atoi(v)
		im.blocks = make([]codec.Block, 0, n)
		err := codec.SplitBatch(data, pipe.HeadSize, func(b codec.Block) error {
			im.blocks = append(im.blocks, b)
			im.size += uint64(len(b.Payload))
			return nil
		})
		if err != nil {
			im.err = fmt.Errorf("input pipe %d: malformed batch: %w", pipe.ID, err)
		}
		return im
	}
	b, err := codec.DecodeBlock(data, pipe.HeadSize)
	if err != nil {
		im.err = fmt.Errorf("input pipe %d: malformed block: %w", pipe.ID, err)
		return im
	}
	im.blocks, im.size = []codec.Block{b}, uint64(len(b.Payload))
	return im
}

// consumed marks a message whose blocks are all taken, for acknowledgement.
func (in *input) consumed(m jetstream.Msg) {
	if m != nil {
		in.done = append(in.done, m)
	}
}

// next returns the input's next block, waiting for one; ok is false once the input has ended,
// and the block then carries the SQN an end marker named, if any.
func (in *input) next(ctx context.Context, st *stats) (codec.Block, bool, error) {
	for {
		if in.ended {
			return codec.Block{SQN: in.endSQN}, false, nil
		}
		if in.pos < len(in.cur.blocks) {
			b := in.cur.blocks[in.pos]
			in.pos++
			in.lastMsg = in.cur.msg
			if in.pos == len(in.cur.blocks) {
				in.consumed(in.cur.msg)
			}
			if in.replayed(b) {
				continue
			}
			if err := in.checkJump(b.SQN, b.Head, false); err != nil {
				return codec.Block{}, false, err
			}
			if _, _, fin := codec.Flags(b.Head, in.pipe.HeadSize); fin {
				in.ended = true
			}
			return b, true, nil
		}
		select {
		case m, open := <-in.ch:
			if !open {
				if err := ctx.Err(); err != nil {
					return codec.Block{}, false, err
				}
				return codec.Block{}, false, fmt.Errorf("input pipe %d: reader stopped", in.pipe.ID)
			}
			if m.err != nil {
				return codec.Block{}, false, m.err
			}
			if in.rt != nil {
				m.gap = in.rt.drops.Swap(0) // the subscription dropped the oldest: the job is behind
			}
			st.queueDrops.Add(m.gap)
			st.blocksIn.Add(uint64(len(m.blocks))) // once a message, not once a block: the hot path
			st.bytesIn.Add(m.size)
			if m.redel {
				st.redeliveries.Add(1)
			}
			in.gapSeen = in.gapSeen || m.gap > 0
			in.dropped += m.gap
			if _, linked := in.cur.msg.(*linkMsg); linked {
				in.link.recycle(in.cur.blocks) // every block of it was taken
			}
			in.cur, in.pos = m, 0
			if m.end {
				if err := in.checkJump(m.endSQN, 0, true); err != nil {
					return codec.Block{}, false, err
				}
				in.consumed(m.msg)
				in.ended, in.endSQN = true, m.endSQN
			} else if len(m.blocks) == 0 {
				in.consumed(m.msg)
			}
		case <-ctx.Done():
			return codec.Block{}, false, ctx.Err()
		}
	}
}

// replayed notes the sequence a block counts from and reports whether the block was sent again,
// to be dropped. A producer that moved or restarted recomputes the rounds its inputs had not
// acknowledged, and its consumer may have taken their answers already (the stream no longer
// holds them, so the publisher's resumeSQN cannot drop them). Every message names the restart
// its blocks count from (codec.RestartHeader), and a block is sent again when
//   - it begins the restart the input took last: taken again it would restart the input's
//     sequence a second time (a dummy round, and the blocks after it twice); dropped, the blocks
//     that follow it are older than the checker expects and dropped as stale, up to the first
//     new one;
//   - it counts from a restart the input has left: its SQN belongs to the old sequence, and the
//     checker would take it as a jump ahead in the new one (dummies, then the old rows again);
//   - of an async input, which no checker guards: it is of the sequence the input is in, and
//     the input took its SQN already (takenAsync).
//
// A restart is named only by the first block of its message; a message without a name (a NATS
// client's) is taken as SPEC §4.4 says. A name the input has not seen (its restart was dropped
// by max_queue, or this instance began within the sequence) is adopted.
func (in *input) replayed(b codec.Block) bool {
	in.before = in.restart
	name := in.cur.restart
	if name == in.restart && b.Head == 0 && b.SQN != 1 {
		return in.pipe.Async && in.takenAsync(b, name) // the usual block
	}
	restarts := codec.BeginsRestart(b, in.pipe.HeadSize)
	if restarts && in.pos != 1 {
		// A restart within its message (a client's): neither it nor the blocks after it count
		// from the restart the message names.
		name, in.cur.restart = "", ""
	}
	if name != "" && ((restarts && name == in.restart) || slices.Contains(in.left, name)) {
		in.replays++
		return true
	}
	if restarts || name != in.restart {
		in.leave(in.restart)
		in.restart = name
		if in.pipe.Async {
			in.top = 0
		}
	}
	return in.pipe.Async && in.takenAsync(b, name)
}

// takenAsync reports whether an async input took block b of the sequence named name before: its
// SQN is not above the highest it took of that sequence (top), which it then raises. An async
// input bypasses the checker, which drops such a block of a synchronous input as stale; one
// producer writes a pipe in order, so within a named sequence only a replay goes back. A block
// of no name (a client's), or with SQN 0, is taken as always.
func (in *input) takenAsync(b codec.Block, name string) bool {
	if name == "" || b.SQN == 0 {
		return false
	}
	if b.SQN <= in.top {
		in.replays++
		return true
	}
	in.top = b.SQN
	return false
}

// maxLeft bounds the names of left sequences an input remembers: a replay reaches back over the
// restarts of one instance's unacknowledged rounds, a few at most.
const maxLeft = 16

// leave remembers that the input left the sequence named name. left is made anew, never changed
// in place: a sink's checkpoint keeps what it was (goKind.leftOf), and a restart is rare.
func (in *input) leave(name string) {
	if name == "" {
		return
	}
	in.left = recentLeft(append(slices.Clip(in.left), name)) // appended to a clipped slice: a copy
}

// recentLeft is the names of left sequences an input remembers of names, newest last: the last
// maxLeft.
func recentLeft(names []string) []string {
	return names[max(0, len(names)-maxLeft):]
}

// sequenceOfRound names the restart the blocks a round took from this input count from: the
// one of the block taken last, or the one before it when the checker holds that block for a
// later round (held).
func (in *input) sequenceOfRound(held bool) string {
	if held {
		return in.before
	}
	return in.restart
}

// maxSQNJump is how far ahead of the highest SQN a synchronous input has taken the next SQN may
// lie: the most blocks its pipe can have in flight, its stream's message limit (or its
// max_queue, if larger) times the most blocks one message carries (DESIGN §7); a link holds far
// fewer (linkDepth batches of maxLinkBlocks). Every SQN in between becomes a dummy, so this also
// bounds the dummies one block can cause.
func maxSQNJump(p protocol.PipeBinding) uint64 {
	return uint64(max(protocol.PipeMaxMsgs, p.MaxQueue, realtimeQueue)) * maxBatchBlocks
}

// SQNJumpError is a protocol violation: a block (or an end-of-stream marker) of a synchronous
// input whose SQN lies further ahead of the input's last SQN than its pipe can have in flight.
// The job fails with it; no dummy is made for the SQNs skipped.
type SQNJumpError struct {
	Pipe     int
	Expected uint64 // the SQN after the highest one taken
	Received uint64
	Limit    uint64 // maxSQNJump, raised by blocks dropped on purpose just before
	End      bool   // an end-of-stream marker named Received
}

func (e *SQNJumpError) Error() string {
	what := "a block with SQN"
	if e.End {
		what = "an end-of-stream marker naming SQN"
	}
	return fmt.Sprintf("input pipe %d: protocol violation: expected SQN %d, received %s %d, %d ahead; "+
		"a pipe can have at most %d blocks in flight, so no dummies are made for the gap", e.Pipe, e.Expected, what, e.Received,
		e.Received-e.Expected, e.Limit)
}

// checkJump checks the SQN of a block (head) or of an end marker (end) taken from a synchronous
// input against the highest one taken before: a first block, a block that restarts the sequence
// (reset bit, or SQN 1) and a late one pass; one further ahead than maxSQNJump (times one plus
// the blocks dropped on purpose just before it: each of those may have been as far ahead) is an
// SQNJumpError.
func (in *input) checkJump(sqn uint64, head uint32, end bool) error {
	dropped := in.dropped
	in.dropped = 0
	switch {
	case in.pipe.Async || sqn == 0:
		return nil // async inputs bypass alignment: no dummies; SQN 0 is dropped as stale
	case sqn == in.top+1:
		in.top = sqn // the usual case
		return nil
	}
	if !end {
		if _, reset, _ := codec.Flags(head, in.pipe.HeadSize); reset || sqn == 1 || in.top == 0 {
			in.top = sqn
			return nil
		}
	}
	if in.top == 0 || sqn <= in.top {
		return nil
	}
	limit := maxSQNJump(in.pipe)
	if dropped > 0 {
		limit = satMul(limit, dropped+1)
	}
	if sqn-in.top > limit {
		return &SQNJumpError{Pipe: in.pipe.ID, Expected: in.top + 1, Received: sqn, Limit: limit, End: end}
	}
	in.top = sqn
	return nil
}

// satMul is a*b, or the largest uint64 where that overflows.
func satMul(a, b uint64) uint64 {
	if a != 0 && b > math.MaxUint64/a {
		return math.MaxUint64
	}
	return a * b
}
