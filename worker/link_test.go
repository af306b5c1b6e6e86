package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func putN(t *testing.T, l *link, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := l.put(context.Background(), inMsg{blocks: []codec.Block{{SQN: uint64(i + 1), Payload: []byte{byte(i)}}}}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}

func TestALinkBarrierRunsOnlyOnceTheConsumerAcknowledgedEverythingBeforeIt(t *testing.T) {
	ls := newLinks()
	l := ls.open(linkKey{"p", 1, 7})
	putN(t, l, 3)
	var ran atomic.Int32
	l.afterAcked([]func(){func() { ran.Add(1) }})
	putN(t, l, 1) // after the barrier: not waited for
	for i := 0; i < 2; i++ {
		(<-l.ch).msg.Ack()
		if ran.Load() != 0 {
			t.Fatalf("barrier ran after %d of the 3 messages before it were acknowledged", i+1)
		}
	}
	(<-l.ch).msg.Ack()
	if ran.Load() != 1 {
		t.Fatalf("barrier ran %d times once the 3 messages before it were acknowledged, want 1", ran.Load())
	}
}

func TestALinkAcknowledgementOutOfOrderWaitsForTheOnesBeforeIt(t *testing.T) {
	l := newLinks().open(linkKey{"p", 1, 1})
	putN(t, l, 2)
	var ran atomic.Int32
	l.afterAcked([]func(){func() { ran.Add(1) }})
	first, second := <-l.ch, <-l.ch
	second.msg.Ack()
	if ran.Load() != 0 {
		t.Fatal("barrier ran with the first message unacknowledged")
	}
	first.msg.Ack()
	if ran.Load() != 1 {
		t.Fatal("barrier did not run once both messages were acknowledged")
	}
}

func TestABarrierWithNothingUnacknowledgedRunsAtOnce(t *testing.T) {
	l := newLinks().open(linkKey{"p", 1, 1})
	ran := false
	l.afterAcked([]func(){func() { ran = true }})
	if !ran {
		t.Fatal("barrier on an empty link did not run at once")
	}
}

func TestAConsumerThatEndedReleasesWhatItLeftAndAProducerWaitingForRoom(t *testing.T) {
	l := newLinks().open(linkKey{"p", 1, 1})
	putN(t, l, linkDepth) // the link is full
	var ran atomic.Int32
	l.afterAcked([]func(){func() { ran.Add(1) }})
	blocked := make(chan error, 1)
	go func() { blocked <- l.put(context.Background(), inMsg{}) }()
	l.consumerDone()
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatalf("put waiting for room: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a put waiting for room still waits after the consumer ended")
	}
	if ran.Load() != 1 {
		t.Fatal("the barrier on messages the consumer left did not run when it ended")
	}
	l.afterAcked([]func(){func() { ran.Add(1) }})
	putN(t, l, 3) // taken and counted as acknowledged
	l.afterAcked([]func(){func() { ran.Add(1) }})
	if ran.Load() != 3 {
		t.Fatalf("barriers after the consumer ended ran %d times, want every one at once", ran.Load()-1)
	}
}

func TestALinkWaitsForItsConsumerAndIsForgottenOnceBothEndsClosed(t *testing.T) {
	ls := newLinks()
	k := linkKey{"p", 3, 9}
	l := ls.open(k)
	putN(t, l, 2)
	ls.close(k, producerEnd) // the producer finished before its consumer started
	if got := ls.open(k); got != l {
		t.Fatal("the consumer opening after its producer closed got a new link: the blocks left are lost")
	}
	if len(l.ch) != 2 {
		t.Fatalf("the link holds %d messages for its late consumer, want 2", len(l.ch))
	}
	ls.close(k, consumerEnd)
	if _, ok := ls.m[k]; ok {
		t.Fatal("the link is still known once both ends closed")
	}
	if other := ls.open(linkKey{"p", 3, 10}); other == l {
		t.Fatal("a link of another placement (epoch) is the same link")
	}
}

func TestAPutOnAFullLinkEndsWithItsContext(t *testing.T) {
	l := newLinks().open(linkKey{"p", 1, 1})
	putN(t, l, linkDepth)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.put(ctx, inMsg{}); err == nil {
		t.Fatal("a put on a full link with an ended context returned nil")
	}
}

func TestAChainedProducerEndsOnlyOnceItsConsumerAcknowledgedEverything(t *testing.T) {
	l := newLinks().open(linkKey{"p", 1, 1})
	putN(t, l, 2)
	ended := make(chan error, 1)
	go func() { ended <- l.waitAcked(context.Background()) }()
	(<-l.ch).msg.Ack()
	select {
	case <-ended:
		t.Fatal("the producer's wait ended with a message unacknowledged")
	default:
	}
	(<-l.ch).msg.Ack()
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the producer still waits with every message acknowledged")
	}
}

// chainedPipe is a chained pipe's two ends in this process: the producer's publisher, running
// until ctx ends, and the consumer's input.
func chainedPipe(ctx context.Context, t *testing.T) (*publisher, *input) {
	t.Helper()
	pipe := protocol.PipeBinding{ID: 1, HeadSize: 1, Chain: 1}
	p, err := newPublisher(ctx, nil, pipe, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	l := newLinks().open(linkKey{"p", 1, 1})
	p.link = l
	go p.run(ctx)
	return p, &input{pipe: pipe, ch: l.ch, link: l}
}

// A chained pipe's blocks travel unframed (publisher.own): what the consumer is handed must be
// its own — unchanged when the producing job reuses its buffer, and when the link reuses the
// slice the blocks came in (recycle) for later batches — since a prev dummy repeats it later.
func TestAChainedBlockKeepsItsPayloadAfterTheProducerReusesItsBufferAndTheLinkItsSlice(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, in := chainedPipe(ctx, t)
	var st stats
	buf := make([]byte, 3)
	var kept []codec.Block
	const blocks = 3 * maxBatchBlocks // several batches: their slices are recycled
	wrote := make(chan error, 1)
	go func() {
		for sqn := uint64(1); sqn <= blocks; sqn++ {
			copy(buf, fmt.Sprintf("%03d", sqn%1000)) // the job writes every answer into one buffer
			if err := p.Write(ctx, codec.Block{SQN: sqn, Payload: buf}, false); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	for range blocks {
		b, ok, err := in.next(ctx, &st)
		if err != nil || !ok {
			t.Fatalf("next: ok %v, %v", ok, err)
		}
		kept = append(kept, b)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	for _, b := range kept {
		if want := fmt.Sprintf("%03d", b.SQN%1000); string(b.Payload) != want {
			t.Fatalf("block SQN %d kept payload %q, want %q", b.SQN, b.Payload, want)
		}
	}
}

// An answer that passes on an input's payload (readOnly: memory nobody writes again) goes down a
// chained pipe as it is; any other payload is copied, since the job may write its buffer again.
func TestAChainedPipeHandsOnAReadOnlyPayloadWithoutACopyAndCopiesAnyOther(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, in := chainedPipe(ctx, t)
	input, buffer := []byte("an input's payload"), []byte("the job's own buffer")
	for sqn, w := range []struct {
		payload  []byte
		readOnly bool
	}{{input, true}, {buffer, false}} {
		if err := p.Write(ctx, codec.Block{SQN: uint64(sqn + 1), Payload: w.payload}, w.readOnly); err != nil {
			t.Fatal(err)
		}
		var st stats
		b, ok, err := in.next(ctx, &st)
		if err != nil || !ok {
			t.Fatalf("next: ok %v, %v", ok, err)
		}
		same := unsafe.SliceData(b.Payload) == unsafe.SliceData(w.payload)
		switch {
		case string(b.Payload) != string(w.payload):
			t.Fatalf("block %d: payload %q, want %q", b.SQN, b.Payload, w.payload)
		case w.readOnly && !same:
			t.Errorf("block %d: the read-only payload was copied", b.SQN)
		case !w.readOnly && same:
			t.Errorf("block %d: the job's buffer was handed on, not copied", b.SQN)
		}
	}
}
