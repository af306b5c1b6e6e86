package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Chains (issue 25, DESIGN.md §8 "Chains"). A pipe whose producer and consumer the broker placed
// on this worker together is chained (PipeBinding.Chain, the epoch of that placement): its blocks
// go from the producer's publisher to the consumer's input through a link in this process, not
// through the broker. Everything else stays as on any pipe, because both ends are the same code:
// the publisher batches blocks as it would for JetStream (with copies of their payloads, not
// framed: publisher.own), and the input hands them to the same round engine (alignment, dummies,
// heads, block_count, the finished bit, end markers) as the blocks it parses from a message.
//
// What is exact through JetStream stays exact through a link: a message on a link counts as
// stored only once the consumer acknowledges it, that is once the consumer's own outputs have
// stored its answer to the round (or the consumer is a sink and has taken it). So the producer's
// rounds release their input messages only then, and the acknowledgements of a chain's first
// inputs wait for its last outputs. When the worker dies, nothing in a link was acknowledged
// upstream: the broker moves the chain as a whole and it resumes from its first inputs, the
// blocks its last outputs stored already being dropped by their SQN (publisher.resumeSQN).

// linkKey names one chained pipe of one placement: the pipeline, the pipe and the epoch both of
// its ends were placed at (PipeBinding.Chain).
type linkKey struct {
	pipeline string
	pipe     int
	chain    uint64
}

// links are the chained pipes of this worker's jobs, by key. The producer and the consumer each
// open their end and close it once done; the link is forgotten once both are closed, so blocks
// a producer left before its consumer started wait for it.
type links struct {
	mu sync.Mutex
	m  map[linkKey]*link
}

func newLinks() *links { return &links{m: map[linkKey]*link{}} }

// linkEnd is which end of a link a job holds.
type linkEnd int

const (
	producerEnd linkEnd = iota
	consumerEnd
)

// open returns the link of key, made by whichever end comes first.
func (ls *links) open(k linkKey) *link {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[k]
	if l == nil {
		l = &link{key: k, ch: make(chan inMsg, linkDepth), gone: make(chan struct{}), free: make(chan []codec.Block, linkDepth+2)}
		ls.m[k] = l
	}
	return l
}

// close closes one end of the link of key; the second close forgets the link.
func (ls *links) close(k linkKey, end linkEnd) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.m[k]
	if l == nil {
		return
	}
	l.closed[end] = true
	if l.closed[producerEnd] && l.closed[consumerEnd] {
		delete(ls.m, k)
	}
}

// forget drops every link of a pipeline: it is stopped, and an end that never opened (a job
// prepared and never started) will not close its link.
func (ls *links) forget(pipeline string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for k := range ls.m {
		if k.pipeline == pipeline {
			delete(ls.m, k)
		}
	}
}

// linkDepth bounds the messages under way on a link (each a batch of up to maxLinkBlocks
// blocks): a slow consumer pushes back on its producer, as a full stream does.
const linkDepth = 8

// link is one chained pipe: a bounded queue of messages from the producer's publisher to the
// consumer's input, and the producer's barriers (publisher.AfterStored) waiting for the
// consumer's acknowledgements. The producer's publisher hands each batch's blocks, and the queue
// is the consumer's input channel itself (input.ch): no goroutine between them.
type link struct {
	key linkKey
	ch  chan inMsg

	// running is held while barriers run (and while they are taken, before mu): a barrier found
	// due at once (afterAcked) runs only after the ones an acknowledgement took before it ended,
	// so the producer's wait (waitAcked) cannot return while a checkpoint barrier of its is still
	// starting its put. Lock order: running, then mu; a barrier takes other links' locks only
	// (upstream ones: a chain has no cycle).
	running sync.Mutex
	mu      sync.Mutex // guards the fields below; never held while a barrier runs
	sent    uint64     // messages put, numbered from 1
	acked   uint64     // every message up to here is acknowledged
	early   map[uint64]bool
	waits   []linkBarrier // in the order of their positions
	drop    bool          // the consumer ended its rounds: every message counts as acknowledged
	gone    chan struct{} // closed with drop: a put waiting for room gives up waiting
	closed  [2]bool       // by linkEnd (links.close)

	// free holds block slices of messages the consumer took every block of, for the producer's
	// next batches (blockSlice): allocation is most of what a chained block costs beyond its round.
	free chan []codec.Block
}

// blockSlice returns an empty slice for a batch's blocks: one the consumer gave back (recycle),
// or a new one. A new one starts small and grows with the batches (those of 4 KiB blocks stop
// at 128 by their bytes), and keeps what it grew to as it is recycled.
func (l *link) blockSlice() []codec.Block {
	select {
	case s := <-l.free:
		return s
	default:
		return make([]codec.Block, 0, linkSliceStart)
	}
}

// linkSliceStart is the capacity a new batch slice of a link starts at.
const linkSliceStart = 64

// recycle gives back the block slice of a message the consumer took every block of: the blocks
// themselves were copied out (the checker and a round hold codec.Block values), and the payloads
// they point to are never written again (publisher.own), so only the slice is reused.
func (l *link) recycle(blocks []codec.Block) {
	if cap(blocks) == 0 {
		return
	}
	clear(blocks) // no payload kept alive by a slice waiting here
	select {
	case l.free <- blocks[:0]:
	default:
	}
}

// linkBarrier is a producer's barrier: fns run once every message up to pos is acknowledged.
type linkBarrier struct {
	pos uint64
	fns []func()
}

// put hands a message (a batch of blocks, or an end marker) to the consumer, waiting while the
// link is full.
func (l *link) put(ctx context.Context, im inMsg) error {
	l.mu.Lock()
	if l.drop {
		l.sent++
		l.acked = l.sent
		l.mu.Unlock()
		return nil // nobody reads on: as a stream nobody reads, it takes the message
	}
	l.sent++
	pos := l.sent
	l.mu.Unlock()
	im.msg = &linkMsg{l: l, pos: pos}
	select {
	case l.ch <- im:
		return nil
	case <-l.gone:
		return nil // counted as acknowledged by consumerDone
	case <-ctx.Done():
		return ctx.Err()
	}
}

// afterAcked runs fns once every message put so far is acknowledged (at once if it is).
func (l *link) afterAcked(fns []func()) {
	if len(fns) == 0 {
		return
	}
	l.running.Lock()
	defer l.running.Unlock()
	l.mu.Lock()
	if l.acked >= l.sent {
		l.mu.Unlock()
		runAll(fns)
		return
	}
	l.waits = append(l.waits, linkBarrier{pos: l.sent, fns: fns})
	l.mu.Unlock()
}

// stats are the link's counts, for its producer's heartbeats.
func (l *link) stats() protocol.LinkStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return protocol.LinkStats{Pipe: l.key.pipe, Messages: l.sent, Unacked: l.sent - l.acked, Waiting: uint64(len(l.ch))}
}

// waitAcked returns once every message put so far is acknowledged, or with ctx's error.
func (l *link) waitAcked(ctx context.Context) error {
	done := make(chan struct{})
	l.afterAcked([]func(){func() { close(done) }})
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ack acknowledges message pos and runs the barriers it completes, outside the lock. The
// consumer acknowledges in order; one out of order waits in early for the ones before it.
func (l *link) ack(pos uint64) {
	l.running.Lock()
	defer l.running.Unlock()
	l.mu.Lock()
	if pos <= l.acked {
		l.mu.Unlock()
		return
	}
	if pos != l.acked+1 {
		if l.early == nil {
			l.early = map[uint64]bool{}
		}
		l.early[pos] = true
		l.mu.Unlock()
		return
	}
	l.acked = pos
	for l.early[l.acked+1] {
		delete(l.early, l.acked+1)
		l.acked++
	}
	fns := l.due()
	l.mu.Unlock()
	runAll(fns)
}

// due takes the barriers every message of which is acknowledged. Callers hold mu.
func (l *link) due() []func() {
	var fns []func()
	n := 0
	for _, w := range l.waits {
		if w.pos > l.acked {
			break
		}
		fns = append(fns, w.fns...)
		n++
	}
	l.waits = l.waits[n:]
	return fns
}

// consumerDone says the consumer ended its rounds normally (it finished, or its inputs ended):
// what it left unread and whatever comes later counts as acknowledged, as blocks stored in a
// stream nobody reads any more would, so the producer's inputs are acknowledged and it ends as
// it would then (its own end, or the broker's, issue 23 item 6).
func (l *link) consumerDone() {
	l.running.Lock()
	defer l.running.Unlock()
	l.mu.Lock()
	if l.drop {
		l.mu.Unlock()
		return
	}
	l.drop = true
	close(l.gone)
	l.acked = l.sent
	clear(l.early)
	fns := l.due()
	l.mu.Unlock()
	runAll(fns)
}

func runAll(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}

// errLinkMsg answers what a link's message cannot: it has no stream metadata.
var errLinkMsg = errors.New("a message of a chained pipe has no stream metadata")

// linkMsg is one message on a link, shaped as a JetStream message so that the input and the
// round engine handle it as they handle any: Ack is the consumer's acknowledgement.
type linkMsg struct {
	l   *link
	pos uint64
}

var _ jetstream.Msg = (*linkMsg)(nil)

func (m *linkMsg) Metadata() (*jetstream.MsgMetadata, error) { return nil, errLinkMsg }
func (m *linkMsg) Data() []byte                              { return nil } // its blocks travel unframed
func (m *linkMsg) Headers() nats.Header                      { return nil }
func (m *linkMsg) Subject() string                           { return "" }
func (m *linkMsg) Reply() string                             { return "" }
func (m *linkMsg) Ack() error                                { m.l.ack(m.pos); return nil }
func (m *linkMsg) DoubleAck(context.Context) error           { return m.Ack() }

// A link redelivers nothing: a consumer that gives a message back has failed, and its chain
// moves as a whole and resumes from its first inputs.
func (m *linkMsg) Nak() error                       { return nil }
func (m *linkMsg) NakWithDelay(time.Duration) error { return nil }
func (m *linkMsg) InProgress() error                { return nil }
func (m *linkMsg) Term() error                      { return nil }
func (m *linkMsg) TermWithReason(string) error      { return nil }
