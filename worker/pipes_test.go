package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// startJetStream runs a real embedded NATS server with JetStream in memory on a random port.
func startJetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func testPipe(t testing.TB, js jetstream.JetStream, maxMsgs int64) protocol.PipeBinding {
	t.Helper()
	pipe := protocol.PipeBinding{ID: 7, Subject: "marvelo.t.pipe.7", Stream: "MARVELO_t_7", Consumer: "job2-e1",
		Codec: "cbor", BlockCount: 1, HeadSize: 1}
	cfg := jetstream.StreamConfig{Name: pipe.Stream, Subjects: []string{pipe.Subject}, Storage: jetstream.MemoryStorage,
		Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, MaxMsgs: maxMsgs, Duplicates: time.Minute}
	st, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: pipe.Consumer,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 64}); err != nil {
		t.Fatal(err)
	}
	return pipe
}

func startPublisher(t *testing.T, js jetstream.JetStream, pipe protocol.PipeBinding) (*publisher, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := newPublisher(ctx, js, pipe, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	go p.run(ctx)
	t.Cleanup(cancel)
	return p, cancel
}

// readAll takes every block of the pipe through an input, as a job does, until the end.
func readAll(t *testing.T, js jetstream.JetStream, pipe protocol.PipeBinding) ([]codec.Block, uint64, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in := newInput(0, pipe)
	go in.read(ctx, js)
	var st stats
	var blocks []codec.Block
	msgs := 0
	for {
		b, ok, err := in.next(ctx, &st)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		msgs += len(in.done)
		for _, m := range in.done {
			_ = m.Ack()
		}
		in.done = in.done[:0]
		if !ok {
			return blocks, b.SQN, msgs
		}
		blocks = append(blocks, codec.Block{SQN: b.SQN, Head: b.Head, Payload: append([]byte(nil), b.Payload...)})
	}
}

func TestPublisherBatchesWhatGathersAndEndsTheStream(t *testing.T) {
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 4096)
	p, _ := startPublisher(t, js, pipe)
	const n = 5000
	for i := 1; i <= n; i++ {
		if err := p.Write(context.Background(), codec.Block{SQN: uint64(i), Payload: []byte(strconv.Itoa(i))}, false); err != nil {
			t.Fatal(err)
		}
	}
	end := uint64(n)
	if err := p.Close(context.Background(), &end); err != nil {
		t.Fatal(err)
	}
	blocks, endSQN, msgs := readAll(t, js, pipe)
	if len(blocks) != n || endSQN != n {
		t.Fatalf("%d blocks, end at %d; want %d and %d", len(blocks), endSQN, n, n)
	}
	for i, b := range blocks {
		if b.SQN != uint64(i+1) || string(b.Payload) != strconv.Itoa(i+1) {
			t.Fatalf("block %d: SQN %d payload %q", i, b.SQN, b.Payload)
		}
	}
	// Written faster than one message per round trip: blocks shared messages.
	if msgs >= n {
		t.Errorf("%d messages for %d blocks: no batching", msgs, n)
	}
	t.Logf("%d blocks in %d messages", n, msgs)
}

func TestPublisherWaitsWhileTheStreamIsFull(t *testing.T) {
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 3)
	// One block a message, so the stream fills after three.
	pipe.MaxQueue = 0
	p, _ := startPublisher(t, js, pipe)
	p.maxCount = 1
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= 20; i++ {
			if err := p.Write(context.Background(), codec.Block{SQN: uint64(i), Payload: []byte{byte(i)}}, false); err != nil {
				done <- err
				return
			}
		}
		end := uint64(20)
		done <- p.Close(context.Background(), &end)
	}()
	// The reader drains; the writer, held back by the full stream, gets through in order.
	blocks, _, _ := readAll(t, js, pipe)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 20 {
		t.Fatalf("%d blocks, want 20", len(blocks))
	}
	for i, b := range blocks {
		if b.SQN != uint64(i+1) {
			t.Fatalf("block %d has SQN %d: order lost under backpressure", i, b.SQN)
		}
	}
}

func TestAMovedJobDoesNotPublishWhatItsOldInstanceStored(t *testing.T) {
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 4096)
	old, cancelOld := startPublisher(t, js, pipe)
	for i := 1; i <= 10; i++ {
		if err := old.Write(context.Background(), codec.Block{SQN: uint64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	cancelOld()
	// The new instance recomputes blocks 8…12: 8, 9, 10 are in the stream already.
	p, _ := startPublisher(t, js, pipe)
	if p.resumeSQN != 10 {
		t.Fatalf("resume SQN %d, want 10", p.resumeSQN)
	}
	for i := 8; i <= 12; i++ {
		if err := p.Write(context.Background(), codec.Block{SQN: uint64(i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	end := uint64(12)
	if err := p.Close(context.Background(), &end); err != nil {
		t.Fatal(err)
	}
	blocks, _, _ := readAll(t, js, pipe)
	var sqns []uint64
	for _, b := range blocks {
		sqns = append(sqns, b.SQN)
	}
	if fmt.Sprint(sqns) != "[1 2 3 4 5 6 7 8 9 10 11 12]" {
		t.Fatalf("SQNs %v", sqns)
	}
}

func TestAStaleInstanceIsFencedOff(t *testing.T) {
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 4096)
	stale, _ := startPublisher(t, js, pipe)
	fresh, _ := startPublisher(t, js, pipe)
	if err := fresh.Write(context.Background(), codec.Block{SQN: 1}, false); err != nil {
		t.Fatal(err)
	}
	if err := fresh.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	// The stale instance still expects the stream to be empty: its publish must fail.
	_ = stale.Write(context.Background(), codec.Block{SQN: 1}, false)
	err := stale.Close(context.Background(), nil)
	if err == nil {
		t.Fatal("a stale instance published after a newer one")
	}
	if !strings.Contains(err.Error(), "another instance of this job publishes") || !strings.Contains(err.Error(), "this one is stale") {
		t.Fatalf("error %q: want the fencing error", err)
	}
	if n := streamMsgs(t, js, pipe); n != 1 {
		t.Fatalf("the stream holds %d messages, want the fresh instance's one", n)
	}
}

// TestAFencedStaleInstanceIsRefusedEvenWhenItPublishesBeforeTheNewOne: a move fences the job's
// outputs with an empty batch (broker/fence.go) before the new instance starts. The old instance,
// frozen with a batch pending and thawed before the new one published anything, is refused; the
// new one publishes after the fence, and a reader takes its blocks only, passing the fence by.
func TestAFencedStaleInstanceIsRefusedEvenWhenItPublishesBeforeTheNewOne(t *testing.T) {
	ctx := context.Background()
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 4096)
	first, _ := startPublisher(t, js, pipe)
	if err := first.Write(ctx, codec.Block{SQN: 1, Payload: []byte("a")}, false); err != nil {
		t.Fatal(err)
	}
	waitStored(t, first)
	// Frozen: a publisher whose goroutine has not run yet, with block 2 pending.
	stale, err := newPublisher(ctx, js, pipe, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Write(ctx, codec.Block{SQN: 2, Payload: []byte("stale")}, false); err != nil {
		t.Fatal(err)
	}
	// The move: the fence, then the new instance reads the stream's state.
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: pipe.Subject, Header: nats.Header{codec.BatchHeader: []string{codec.EmptyBatch}}}); err != nil {
		t.Fatal(err)
	}
	fresh, _ := startPublisher(t, js, pipe)
	if fresh.resumeSQN != 1 {
		t.Errorf("the new instance resumes after SQN %d, want 1 (the last block before the fence)", fresh.resumeSQN)
	}
	// Thawed first: its pending batch is refused.
	go stale.run(ctx)
	if err := stale.Close(ctx, nil); err == nil || !strings.Contains(err.Error(), "this one is stale") {
		t.Fatalf("the stale instance's close: %v, want the fencing error", err)
	}
	for _, sqn := range []uint64{2, 3} {
		if err := fresh.Write(ctx, codec.Block{SQN: sqn, Payload: []byte("fresh")}, false); err != nil {
			t.Fatal(err)
		}
	}
	end := uint64(3)
	if err := fresh.Close(ctx, &end); err != nil {
		t.Fatalf("the new instance: %v", err)
	}
	blocks, endSQN, _ := readAll(t, js, pipe)
	var got []string
	for _, b := range blocks {
		got = append(got, fmt.Sprintf("%d:%s", b.SQN, b.Payload))
	}
	if strings.Join(got, " ") != "1:a 2:fresh 3:fresh" || endSQN != 3 {
		t.Errorf("a reader took %v ending at %d, want 1:a 2:fresh 3:fresh ending at 3", got, endSQN)
	}
}

// waitStored waits for the barriers queued on p to run: everything written before is stored.
func waitStored(t *testing.T, p *publisher) {
	t.Helper()
	done := make(chan struct{})
	p.AfterStored(func() { close(done) })
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocks were not stored within 10 s")
	}
}

func TestInputParsesEveryMessageForm(t *testing.T) {
	in := newInput(0, protocol.PipeBinding{ID: 3, HeadSize: 1})
	var batch []byte
	for i := 1; i <= 3; i++ {
		batch = codec.AppendBatchEntry(batch, codec.Block{SQN: uint64(i), Head: 0x80, Payload: []byte{byte(i)}}, 1)
	}
	m := in.parse(nats.Header{codec.BatchHeader: []string{"3"}}, batch)
	if m.err != nil || len(m.blocks) != 3 || m.blocks[2].SQN != 3 || m.blocks[2].Head != 0x80 {
		t.Fatalf("batch: %+v", m)
	}
	single := codec.AppendBlock(nil, codec.Block{SQN: 9, Payload: []byte("x")}, 1)
	if m := in.parse(nil, single); m.err != nil || len(m.blocks) != 1 || m.blocks[0].SQN != 9 {
		t.Fatalf("single: %+v", m)
	}
	if m := in.parse(nats.Header{codec.EndHeader: []string{"42"}}, nil); !m.end || m.endSQN != 42 {
		t.Fatalf("end: %+v", m)
	}
	if m := in.parse(nats.Header{codec.BatchHeader: []string{"2"}}, batch[:10]); m.err == nil {
		t.Fatal("a truncated batch parsed")
	}
	if m := in.parse(nil, []byte{1, 2}); m.err == nil {
		t.Fatal("a short block parsed")
	}
}

// BenchmarkOneBlockJourney follows one block at a time (nothing else in flight, as at a low
// rate) from a job's Write to the next job's input, on an embedded JetStream server, beside one
// core NATS message from publish to a subscriber on the same server: the per-block cost of a
// reliable pipe against its ceiling, in one run. Metrics: write-µs (Write returns: the send is on
// its way), deliver-µs (the reading job has the block), core-µs (the core NATS message).
func BenchmarkOneBlockJourney(b *testing.B) {
	nc, js := startJetStream(b)
	pipe := testPipe(b, js, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := newPublisher(ctx, js, pipe, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	go p.run(ctx)
	in := newInput(0, pipe)
	go in.read(ctx, js)
	sub, err := nc.SubscribeSync("bench.core")
	if err != nil {
		b.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)
	var st stats
	var write, deliver, core time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := p.Write(ctx, codec.Block{SQN: uint64(i + 1), Payload: payload}, false); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, ok, err := in.next(ctx, &st); err != nil || !ok {
			b.Fatalf("next: %v", err)
		}
		t2 := time.Now()
		for _, m := range in.done {
			_ = m.Ack()
		}
		in.done = in.done[:0]
		if err := nc.Publish("bench.core", payload); err != nil {
			b.Fatal(err)
		}
		if _, err := sub.NextMsg(10 * time.Second); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		write, deliver, core = write+t1.Sub(t0), deliver+t2.Sub(t0), core+t3.Sub(t2)
		// Let the answer come back, as between blocks at a low rate.
		stored := make(chan struct{})
		p.AfterStored(func() { close(stored) })
		<-stored
	}
	n := float64(b.N)
	b.ReportMetric(float64(write.Microseconds())/n, "write-µs")
	b.ReportMetric(float64(deliver.Microseconds())/n, "deliver-µs")
	b.ReportMetric(float64(core.Microseconds())/n, "core-µs")
}

// Every message names the restart its blocks count from (codec.RestartHeader), so a name change
// and a named restart begin a message of their own, and a block of no name goes in a message
// without the header.
func TestEveryMessageNamesTheRestartAllItsBlocksCountFrom(t *testing.T) {
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 4096)
	p, _ := startPublisher(t, js, pipe)
	rst := codec.HeadMask(pipe.HeadSize, codec.BitReset)
	written := []struct {
		b    codec.Block
		name string
	}{
		{codec.Block{SQN: 1, Head: rst}, "a"}, {codec.Block{SQN: 2}, "a"}, {codec.Block{SQN: 3}, "a"},
		{codec.Block{SQN: 4}, "b"}, {codec.Block{SQN: 5}, "b"},
		{codec.Block{SQN: 1, Head: rst}, "b"}, {codec.Block{SQN: 2}, "b"},
		{codec.Block{SQN: 3}, ""}, {codec.Block{SQN: 4}, ""},
	}
	for _, w := range written {
		w.b.Payload = []byte(w.name + "/" + strconv.FormatUint(w.b.SQN, 10)) // the name it was written with
		if err := p.write(context.Background(), w.b, false, w.name); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	st, state := pipeStream(t, js, pipe)
	var got []string
	for seq := state.FirstSeq; seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		name := m.Header.Get(codec.RestartHeader)
		for i, b := range parseMsg(pipe, m.Header, m.Data).blocks {
			if written, _, _ := strings.Cut(string(b.Payload), "/"); written != name {
				t.Errorf("message %d names %q but holds block %q", seq, name, b.Payload)
			}
			if name != "" && b.Head == rst && i > 0 {
				t.Errorf("message %d holds the restart %q of %q at position %d, not first", seq, b.Payload, name, i)
			}
			got = append(got, string(b.Payload))
		}
	}
	if want := "a/1 a/2 a/3 b/4 b/5 b/1 b/2 /3 /4"; strings.Join(got, " ") != want {
		t.Errorf("the stream holds %s, want %s", strings.Join(got, " "), want)
	}
}
