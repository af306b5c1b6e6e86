package worker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestOnlyAGoneConsumerEndsAnInput: missed heartbeats, reconnects, leader changes and timeouts
// are retried; a deleted consumer or stream ends the input (jserr.IsGone).
func TestOnlyAGoneConsumerEndsAnInput(t *testing.T) {
	for _, tc := range []struct {
		err  error
		gone bool
	}{
		{jetstream.ErrNoHeartbeat, false},
		{fmt.Errorf("input pipe 3: %w", jetstream.ErrNoHeartbeat), false},
		{jetstream.ErrConsumerLeadershipChanged, false},
		{nats.ErrTimeout, false},
		{nats.ErrConnectionReconnecting, false},
		{nats.ErrNoResponders, false},
		{jetstream.ErrConsumerDeleted, true},
		{fmt.Errorf("input pipe 3: %w", jetstream.ErrConsumerNotFound), true},
		{jetstream.ErrStreamNotFound, true},
	} {
		if got := jserr.IsGone(tc.err); got != tc.gone {
			t.Errorf("jserr.IsGone(%v) = %v, want %v", tc.err, got, tc.gone)
		}
	}
}

// TestALostDeliveryIsReadFromTheStreamAtOnce: a delivery the consumer made that never reached
// the input (taken here by another client, as a connection cut or a slow-consumer drop takes
// it) is read from the stream at once — the blocks come in order, long before the consumer's
// redelivery (its ack wait) or holdWait — and a sequence the stream no longer holds (acked
// already) is skipped: blocks 1, 3, 4, 5, 6 of six of which 2 was acknowledged. The consumer's
// redelivery of 1 then comes to be acknowledged, and its block is not handed on twice.
func TestALostDeliveryIsReadFromTheStreamAtOnce(t *testing.T) {
	const ackWait = 2 * time.Second
	ctx, js, pipe := pipeWithBlocks(t, 64, ackWait, 6)
	cons, err := js.Consumer(ctx, pipe.Stream, pipe.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	lost, err := cons.Fetch(2, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for m := range lost.Messages() {
		if n++; n == 2 {
			if err := m.DoubleAck(ctx); err != nil { // 2 acknowledged; 1 delivered and lost
				t.Fatal(err)
			}
		}
	}
	if n != 2 {
		t.Fatalf("fetched %d messages, want 2", n)
	}
	started := time.Now()
	in := newInput(0, pipe)
	go in.read(ctx, js)
	var st stats
	var got []uint64
	for len(got) < 5 {
		b, ok, err := in.next(ctx, &st)
		if err != nil || !ok {
			t.Fatalf("next after blocks %v: ok %v, %v", got, ok, err)
		}
		got = append(got, b.SQN)
		ackDone(t, in)
	}
	if took := time.Since(started); took > ackWait/2 {
		t.Errorf("the blocks took %v, want well under the ack wait (%v) and holdWait (%v)", took, ackWait, holdWait)
	}
	if fmt.Sprint(got) != "[1 3 4 5 6]" {
		t.Errorf("blocks %v, want [1 3 4 5 6]", got)
	}
	// The redelivery of 1 (after the ack wait): a message to acknowledge, no block.
	wctx, wcancel := context.WithTimeout(ctx, ackWait+ackWait*3/4)
	defer wcancel()
	if b, ok, err := in.next(wctx, &st); err == nil {
		t.Errorf("a block after the last: SQN %d (ok %v)", b.SQN, ok)
	}
	if seqs := ackDone(t, in); fmt.Sprint(seqs) != "[1]" {
		t.Errorf("messages to acknowledge after the last block: %v, want the redelivery of [1]", seqs)
	}
}

// pipeWithBlocks starts a JetStream server with a pipe whose consumer has the given
// MaxAckPending and ack wait, and stores n blocks (SQNs 1…n, one a message) in its stream. The
// context ends with the test, or after 20 s.
func pipeWithBlocks(t *testing.T, maxAckPending int, ackWait time.Duration, n int) (context.Context, jetstream.JetStream, protocol.PipeBinding) {
	t.Helper()
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if _, err := js.CreateOrUpdateConsumer(ctx, pipe.Stream, jetstream.ConsumerConfig{Durable: pipe.Consumer,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxAckPending, AckWait: ackWait}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		if _, err := js.Publish(ctx, pipe.Subject, codec.AppendBlock(nil, codec.Block{SQN: uint64(i), Payload: []byte{byte(i)}}, pipe.HeadSize)); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, js, pipe
}

// readingInput is pipeWithBlocks with an input reading the pipe.
func readingInput(t *testing.T, maxAckPending int, ackWait time.Duration, n int) (context.Context, *input) {
	t.Helper()
	ctx, js, pipe := pipeWithBlocks(t, maxAckPending, ackWait, n)
	in := newInput(0, pipe)
	go in.read(ctx, js)
	return ctx, in
}

// takeBlocks takes n blocks from an input, as a job does, and returns their SQNs.
func takeBlocks(ctx context.Context, t *testing.T, in *input, st *stats, n int) []uint64 {
	t.Helper()
	var got []uint64
	for len(got) < n {
		b, ok, err := in.next(ctx, st)
		if err != nil || !ok {
			t.Fatalf("next after blocks %v: ok %v, %v", got, ok, err)
		}
		got = append(got, b.SQN)
	}
	return got
}

// ackDone acknowledges the messages an input's blocks have been taken from, as a job does, and
// returns their stream sequences.
func ackDone(t *testing.T, in *input) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, m := range in.done {
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, md.Sequence.Stream)
		if err := m.DoubleAck(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	in.done = in.done[:0]
	return seqs
}

// TestARedeliveredMessageIsHandedOnOnceOnly: messages the consumer delivers again (their ack wait
// passed before the job acknowledged them) come to be acknowledged, without their blocks: the
// first block, SQN 1, would otherwise be taken for a reset by the job's checker and counted twice.
func TestARedeliveredMessageIsHandedOnOnceOnly(t *testing.T) {
	const ackWait = time.Second
	ctx, in := readingInput(t, 64, ackWait, 3)
	var st stats
	got := takeBlocks(ctx, t, in, &st, 3)
	first := len(in.done) // not acknowledged: the consumer delivers them again after ackWait
	wctx, wcancel := context.WithTimeout(ctx, ackWait*5/2)
	defer wcancel()
	if b, ok, err := in.next(wctx, &st); err == nil {
		t.Errorf("a block handed on again: SQN %d (ok %v)", b.SQN, ok)
	}
	if fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("blocks %v, want [1 2 3]", got)
	}
	if seqs := ackDone(t, in); len(seqs) < first+3 {
		t.Errorf("messages to acknowledge %v: want the 3 delivered and their 3 redeliveries", seqs)
	}
}

// TestAMessageWhoseAcknowledgementWasLostIsAcknowledgedWhenDeliveredAgain: a round took blocks
// 1–3 and sent their acknowledgements, which never reached the consumer (lost while its leader
// changed; here, simply not sent). With MaxAckPending 3 the consumer then delivers nothing new,
// only 1–3 again after its ack wait. The input acknowledges those redeliveries itself, at once,
// without handing them to the job, so block 4 comes. Handed on to be acknowledged with a later
// round, they kept MaxAckPending full and no later round could come: the pipe stalled silently.
func TestAMessageWhoseAcknowledgementWasLostIsAcknowledgedWhenDeliveredAgain(t *testing.T) {
	const ackWait = time.Second
	ctx, in := readingInput(t, 3, ackWait, 4)
	var st stats
	if got := takeBlocks(ctx, t, in, &st, 3); fmt.Sprint(got) != "[1 2 3]" {
		t.Fatalf("blocks %v, want [1 2 3]", got)
	}
	for _, m := range in.done { // the round's acknowledgements: sent, and lost on the way
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		in.noteAcked(md.Sequence.Stream)
	}
	in.done = in.done[:0]
	wctx, wcancel := context.WithTimeout(ctx, 3*ackWait)
	defer wcancel()
	b, ok, err := in.next(wctx, &st)
	if err != nil || !ok || b.SQN != 4 {
		t.Fatalf("after the lost acknowledgements: SQN %d, ok %v, %v; want block 4 (the redeliveries of 1–3 acknowledged by the input)", b.SQN, ok, err)
	}
	if seqs := ackDone(t, in); fmt.Sprint(seqs) != "[4]" {
		t.Errorf("messages handed to the job to acknowledge: %v, want only [4]", seqs)
	}
}
