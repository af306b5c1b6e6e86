package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/cacheline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Batch bounds: a busy pipe sends up to this many blocks, or bytes, in one NATS message. 512 KiB
// rather than 256: with the data connections of the pool, 16 KiB blocks went from 0.78 to
// 0.87-0.92 of core NATS relays, 4 KiB from 0.93 to 1.00 (DESIGN §6); well within a server's
// default max_payload of 1 MiB.
const (
	maxBatchBlocks = 512
	maxBatchBytes  = 512 << 10
)

// maxLinkBlocks bounds a chained pipe's batches (link.go) instead of maxBatchBlocks; the bytes
// bound is the same. A batch costs a link little, but each batch that drains a consumer's link
// parks its goroutine and wakes it again, and with the stages of a chain sharing a few cores
// that wait leaves a core idle: the chained 64 B line ran 10-15 % faster at 2048 blocks than at
// 512, no faster at 4096 or 8192, and 30-40 % slower at 64 or 128 (session 15). 4 KiB blocks
// stop at the bytes bound (128 a batch) either way.
const maxLinkBlocks = 2048

// publisher writes the blocks of one output pipe to its stream. The job's goroutine appends
// blocks to a pending batch; the publisher's goroutine sends whatever is pending as one message.
// While a send is under way new blocks gather, so batches grow with load by themselves: an idle
// pipe sends each block at once, a busy one amortises the per-message cost over many blocks.
//
// Sends are synchronous (one outstanding message per pipe), each with the stream sequence the
// publisher expects to follow: the stream keeps the order even when a send is retried, and a
// second instance of the same job (a stale worker) cannot interleave its blocks.
type publisher struct {
	_        cacheline.Pad // the job's goroutine writes its batch on every block (cacheline)
	js       jetstream.JetStream
	pipe     protocol.PipeBinding
	headSize int
	maxCount int
	log      *slog.Logger

	mu       sync.Mutex
	pending  []byte        // batch entries: u32 length + block wire form
	blocks   []codec.Block // a chained pipe's pending blocks instead, unframed (own)
	size     int           // bytes pending: of pending, or of the blocks' payloads
	count    int
	payload  int      // the pending blocks' payload bytes, for counts
	restart  string   // the name of the restart the pending batch's blocks count from (codec.RestartHeader)
	arena    []byte   // where own copies a chained pipe's payloads
	barriers []func() // run once everything appended before them is stored
	closing  bool
	end      *uint64 // publish an end-of-stream marker after the last block
	err      error

	wake  chan struct{} // the publisher has work
	space chan struct{} // the writer may append again
	done  chan struct{}

	// counts are the job's counters, to which the publisher adds the blocks and payload bytes
	// it takes to send, a batch at a time (not an atomic add per block on the hot path); nil for
	// a job's logging pipe, which is not one of its outputs.
	counts *stats

	// link is a chained pipe's link (link.go): messages go to the consumer in this process, and
	// count as stored once it acknowledges them. nil for a pipe through the broker.
	link *link

	lastSeq uint64 // stream sequence of the last message stored
	// resumeSQN is the last SQN found in the stream when an instance of the job started: a job
	// that moved re-computes blocks its old instance may have stored already, and those are not
	// published twice. Zero once a newer block (or a reset) has been written.
	resumeSQN uint64
	_         cacheline.Pad
}

func newPublisher(ctx context.Context, js jetstream.JetStream, pipe protocol.PipeBinding, log *slog.Logger) (*publisher, error) {
	if pipe.Realtime || pipe.Chain != 0 {
		p := &publisher{
			js: js, pipe: pipe, headSize: pipe.HeadSize, maxCount: maxBatchBlocks, log: log,
			wake: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{}),
		}
		if pipe.Chain != 0 {
			p.maxCount = maxLinkBlocks
		}
		return p, nil
	}
	var st jetstream.Stream
	var info *jetstream.StreamInfo
	err := untilSettled(ctx, func(ctx context.Context) error {
		var err error
		if st, err = js.Stream(ctx, pipe.Stream); err != nil {
			return fmt.Errorf("output pipe %d: stream %s: %w", pipe.ID, pipe.Stream, err)
		}
		if info, err = st.Info(ctx); err != nil {
			return fmt.Errorf("output pipe %d: stream %s info: %w", pipe.ID, pipe.Stream, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p := &publisher{
		js: js, pipe: pipe, headSize: pipe.HeadSize, maxCount: maxBatchBlocks, log: log,
		wake: make(chan struct{}, 1), space: make(chan struct{}, 1), done: make(chan struct{}),
		lastSeq: info.State.LastSeq,
	}
	if pipe.MaxQueue > 0 {
		// max_queue counts blocks, and the stream's limit counts messages: one block a message.
		p.maxCount = 1
	}
	if info.State.Msgs > 0 {
		err := untilSettled(ctx, func(ctx context.Context) error {
			var err error
			p.resumeSQN, err = lastSQN(ctx, st, pipe)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// fenceWalk bounds how many empty batches (the broker's fences of moves: broker/fence.go) lastSQN
// looks past for the last block; a pipe whose job moved that often with nothing written between
// is resumed from 0, as an emptied one is (its consumer drops what it took already).
const fenceWalk = 8

// lastSQN reads the SQN of the last block in a pipe's stream, looking past empty batches.
func lastSQN(ctx context.Context, st jetstream.Stream, pipe protocol.PipeBinding) (uint64, error) {
	m, err := st.GetLastMsgForSubject(ctx, pipe.Subject)
	for walked := 0; err == nil && m.Header.Get(codec.BatchHeader) == codec.EmptyBatch; walked++ {
		if m.Sequence <= 1 || walked == fenceWalk {
			return 0, nil
		}
		m, err = st.GetMsg(ctx, m.Sequence-1)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil // consumed meanwhile
	}
	if err != nil {
		return 0, fmt.Errorf("output pipe %d: last block: %w", pipe.ID, err)
	}
	if v := m.Header.Get(codec.EndHeader); v != "" {
		return strconv.ParseUint(v, 10, 64)
	}
	var last uint64
	if m.Header.Get(codec.BatchHeader) != "" {
		err = codec.SplitBatch(m.Data, pipe.HeadSize, func(b codec.Block) error { last = b.SQN; return nil })
	} else {
		var b codec.Block
		b, err = codec.DecodeBlock(m.Data, pipe.HeadSize)
		last = b.SQN
	}
	if err != nil {
		return 0, fmt.Errorf("output pipe %d: last block: %w", pipe.ID, err)
	}
	return last, nil
}

// Write appends one block, waiting while the pending batch is full (backpressure). readOnly
// says that b's payload is memory nobody writes again — an input's payload a job passes on
// (withinInputs) — which a chained pipe hands on as it is instead of copying it (own).
func (p *publisher) Write(ctx context.Context, b codec.Block, readOnly bool) error {
	return p.write(ctx, b, readOnly, "")
}

// write is Write for a block that counts from the restart named restart (roundTag.restart). Every
// batch carries the name its blocks count from (codec.RestartHeader), so that a consumer knows a
// block this job's next instance sends again: a restart it took already, or a block of a sequence
// it has left (input.replayed). A block of another name, and a named restart, therefore begin a
// batch of their own.
func (p *publisher) write(ctx context.Context, b codec.Block, readOnly bool, restart string) error {
	if p.resumeSQN > 0 {
		if _, reset, _ := codec.Flags(b.Head, p.headSize); !reset && b.SQN <= p.resumeSQN {
			p.countOut(1, len(b.Payload)) // the job's answer all the same
			return nil                    // stored by this job's previous instance
		}
		p.resumeSQN = 0
	}
	for {
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return err
		}
		if empty := p.count == 0; empty || (p.joins(b, restart) && p.count < p.maxCount && p.size < maxBatchBytes) {
			if empty {
				p.restart = restart
			}
			if p.link != nil {
				// Exactly what the wire form would carry: the head's own bytes, a payload of its own.
				b.Head &= codec.HeadLimit(p.headSize)
				if !readOnly {
					b.Payload = p.own(b.Payload)
				}
				p.blocks = append(p.blocks, b)
				p.size += len(b.Payload)
			} else {
				p.pending = codec.AppendBatchEntry(p.pending, b, p.headSize)
				p.size = len(p.pending)
			}
			p.count++
			p.payload += len(b.Payload)
			p.mu.Unlock()
			if empty {
				// Woken by the first block only: the goroutine takes every block pending when it
				// sends, and looks again after each send.
				p.signal(p.wake)
			}
			return nil
		}
		p.mu.Unlock()
		select {
		case <-p.space:
		case <-p.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// joins reports whether a block counting from the restart named restart may join the pending
// batch: it counts from the batch's restart, and it does not begin a named restart. Callers hold
// mu.
func (p *publisher) joins(b codec.Block, restart string) bool {
	if restart != p.restart {
		return false
	}
	return restart == "" || !codec.BeginsRestart(b, p.headSize)
}

// countOut adds blocks and their payload bytes to the job's counters of blocks out.
func (p *publisher) countOut(blocks, bytes int) {
	if p.counts != nil && blocks > 0 {
		p.counts.blocksOut.Add(uint64(blocks))
		p.counts.bytesOut.Add(uint64(bytes))
	}
}

// linkChunk is the size of the chunks own copies a chained pipe's payloads into; a payload
// larger than a quarter of it gets an allocation of its own. 16 KiB is among the collector's
// small sizes (32 KiB is not, and took a slower path).
const linkChunk = 16 << 10

// own copies a block's payload for a chained pipe. The consumer keeps the blocks a message of a
// link hands it past their round (a prev dummy repeats the previous payload; a Go job may keep
// what it was given, as it may a message's from the broker), so a copy is never written again:
// full chunks are dropped, not reused, and the collector frees them once nothing refers to them.
// Neither framed nor parsed, and no buffer grown by copying (a batch's bytes were, block by
// block): at 4 KiB that growing was half the chain's CPU. Callers hold mu.
func (p *publisher) own(payload []byte) []byte {
	if len(payload) > linkChunk/4 {
		return append([]byte(nil), payload...) // copied, not zeroed first
	}
	if p.arena == nil || cap(p.arena)-len(p.arena) < len(payload) {
		p.arena = make([]byte, 0, linkChunk)
	}
	n := len(p.arena)
	p.arena = append(p.arena, payload...)
	return p.arena[n:len(p.arena):len(p.arena)]
}

// AfterStored runs fn once every block written so far is stored in the stream.
func (p *publisher) AfterStored(fn func()) {
	p.mu.Lock()
	// Queued even when nothing is pending: a send may be in flight, and fn must follow it.
	p.barriers = append(p.barriers, fn)
	p.mu.Unlock()
	p.signal(p.wake)
}

// Close flushes what is pending, publishes an end-of-stream marker if end is not nil, and stops
// the publisher. It returns the first error the publisher met.
func (p *publisher) Close(ctx context.Context, end *uint64) error {
	p.mu.Lock()
	p.closing = true
	p.end = end
	p.mu.Unlock()
	p.signal(p.wake)
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	if err == nil && p.link != nil {
		// A chained pipe's blocks are stored once its consumer acknowledges them: the job ends
		// (and reports its end, after which a move would not restart it) only then.
		return p.link.waitAcked(ctx)
	}
	return err
}

func (p *publisher) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// run is the publisher's goroutine; it ends when closed and flushed, or on ctx.
func (p *publisher) run(ctx context.Context) {
	defer close(p.done)
	var spare []byte
	for {
		p.mu.Lock()
		batch, blocks, size, n, payload, barriers, closing, end := p.pending, p.blocks, p.size, p.count, p.payload, p.barriers, p.closing, p.end
		restart := p.restart
		p.pending, p.size, p.count, p.payload, p.barriers, p.restart = spare[:0], 0, 0, 0, nil, ""
		if p.link != nil && n > 0 {
			// The consumer keeps the blocks it is handed: the next batch gets a slice of its own.
			p.blocks = p.link.blockSlice()
		}
		p.mu.Unlock()
		p.signal(p.space)
		p.countOut(n, payload)
		if n > 0 {
			var err error
			if p.link != nil {
				err = p.link.put(ctx, inMsg{blocks: blocks, size: uint64(size), restart: restart})
			} else {
				err = p.send(ctx, batch, n, restart)
			}
			if err != nil {
				p.fail(err)
				return
			}
		}
		if p.link != nil {
			p.link.afterAcked(barriers) // stored once the consumer acknowledges
		} else {
			runAll(barriers)
		}
		spare = batch
		if n > 0 || len(barriers) > 0 {
			continue // more may have gathered while sending
		}
		if closing {
			if end != nil {
				if err := p.sendEnd(ctx, *end); err != nil {
					p.fail(err)
				}
			}
			return
		}
		select {
		case <-p.wake:
		case <-ctx.Done():
			p.fail(ctx.Err())
			return
		}
	}
}

func (p *publisher) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

// send publishes one batch (or a lone block in the plain wire format), naming the restart its
// blocks count from, if it has a name.
func (p *publisher) send(ctx context.Context, batch []byte, n int, restart string) error {
	msg := &nats.Msg{Subject: p.pipe.Subject}
	if n == 1 {
		msg.Data = batch[4:]
	} else {
		msg.Data = batch
		msg.Header = nats.Header{codec.BatchHeader: []string{strconv.Itoa(n)}}
	}
	if restart != "" {
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header.Set(codec.RestartHeader, restart)
	}
	if err := p.publish(ctx, msg); err != nil {
		return err
	}
	return nil
}

func (p *publisher) sendEnd(ctx context.Context, lastSQN uint64) error {
	if p.link != nil {
		return p.link.put(ctx, inMsg{end: true, endSQN: lastSQN})
	}
	subject := p.pipe.Subject
	if p.pipe.MaxQueue > 0 && !p.pipe.Realtime {
		subject = protocol.PipeEndSubject(subject) // outside the queue's count of blocks
	}
	msg := &nats.Msg{Subject: subject, Header: nats.Header{codec.EndHeader: []string{strconv.FormatUint(lastSQN, 10)}}}
	return p.publish(ctx, msg)
}

// publishAttempt bounds the wait for one publish's answer. An answer lost with a broker that
// died never comes: the attempt is retried after this long (the expected sequence makes the
// retry safe), so a restarted broker resumes the stream within about a second, not five.
const publishAttempt = time.Second

// publish stores one message, retrying while the stream is full (the reader is behind: this is
// where backpressure reaches the writer) or the server is briefly unreachable.
func (p *publisher) publish(ctx context.Context, msg *nats.Msg) error {
	if p.pipe.Realtime {
		// Core NATS: no store, no acknowledgement, no retry — a late block is worthless.
		if err := p.js.Conn().PublishMsg(msg); err != nil {
			return fmt.Errorf("output pipe %d: publish to %s: %w", p.pipe.ID, p.pipe.Subject, err)
		}
		return nil
	}
	// No message ids: JetStream would remember every one for its duplicate window, which at a
	// million messages a minute is hundreds of megabytes. The expected sequence orders and fences
	// the publishes instead, and settles the one ambiguous case (an answer that never came).
	wait := backoff.Backoff{First: 500 * time.Microsecond, Max: 20 * time.Millisecond}
	unanswered := false
	for {
		pctx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := p.js.PublishMsg(pctx, msg, jetstream.WithExpectLastSequence(p.lastSeq))
		cancel()
		if err == nil {
			p.lastSeq = ack.Sequence
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if unanswered && jserr.IsWrongLastSequence(err) && p.storedAlready(ctx, msg) {
			p.lastSeq++ // the unanswered attempt was stored after all
			return nil
		}
		if !retryable(err) {
			if jserr.IsWrongLastSequence(err) {
				return fmt.Errorf("output pipe %d: another instance of this job publishes on %s (this one is stale): %w", p.pipe.ID, p.pipe.Subject, err)
			}
			return fmt.Errorf("output pipe %d: publish to %s: %w", p.pipe.ID, p.pipe.Subject, err)
		}
		unanswered = unanswered || !jserr.IsStreamFull(err)
		if !wait.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// storedAlready reports whether the message following the expected sequence is msg: an attempt
// whose answer was lost may have been stored.
func (p *publisher) storedAlready(ctx context.Context, msg *nats.Msg) bool {
	st, err := p.js.Stream(ctx, p.pipe.Stream)
	if err != nil {
		return false
	}
	got, err := st.GetMsg(ctx, p.lastSeq+1)
	if err != nil {
		// Consumed meanwhile (a work queue forgets acknowledged messages): it was stored, and
		// no other instance can have published in between, since it would have been fenced.
		return errors.Is(err, jetstream.ErrMsgNotFound)
	}
	return bytes.Equal(got.Data, msg.Data) && got.Header.Get(codec.BatchHeader) == msg.Header.Get(codec.BatchHeader) &&
		got.Header.Get(codec.EndHeader) == msg.Header.Get(codec.EndHeader)
}

// retryable reports whether a publish may succeed if tried again: the stream is full (the
// reader is behind), or the answer did not come or the cluster had no leader for the moment
// (the expected sequence makes the attempt safe to repeat).
func retryable(err error) bool { return jserr.IsStreamFull(err) || jserr.IsTransient(err) }
