package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// A job's next instance recomputes the rounds its inputs had not acknowledged. When its consumer
// took their answers already, the stream no longer holds them (a work queue forgets what was
// acknowledged), so the publisher cannot drop them (resumeSQN); the restart they begin is named
// (codec.RestartHeader) and the consumer drops the one it took, and the blocks after it as stale.

// holdAt forwards its input; at the value at it says so on reached and fails once release is
// closed: the instance a worker's death cuts off in the middle of a round.
type holdAt struct {
	at      string
	reached chan struct{}
	release chan struct{}
}

func (j *holdAt) Run(_ *job.Context, v any) (any, error) { return j.step(v) }

func (j *holdAt) step(v any) (any, error) {
	if fmt.Sprint(v) == j.at {
		close(j.reached)
		<-j.release
		return nil, errors.New("cut off at " + j.at)
	}
	return v, nil
}

// recordSink records the values it is handed, each also on got.
type recordSink struct {
	mu   sync.Mutex
	seen []string
	got  chan string
}

func (s *recordSink) Run(_ *job.Context, v any) error {
	s.mu.Lock()
	s.seen = append(s.seen, fmt.Sprint(v))
	s.mu.Unlock()
	s.got <- fmt.Sprint(v)
	return nil
}

func (s *recordSink) values() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.seen, " ")
}

// sourceBlocks publishes blocks 1…n of json integers 1…n to p in one message, the first with the
// reset bit, all counting from a restart named as a source names it (task.sourceTag), then an
// end marker naming end if end > 0.
func sourceBlocks(t *testing.T, js jetstream.JetStream, p protocol.PipeBinding, n, end uint64) {
	t.Helper()
	var values []int64
	for v := range n {
		values = append(values, int64(v+1))
	}
	publishSequence(t, js, p, "1.1.1", values, end)
}

// publishSequence publishes a sequence of json integers to p in one message: SQNs from 1, the
// first block with the reset bit, all counting from the restart named restart; then an end
// marker naming end if end > 0.
func publishSequence(t *testing.T, js jetstream.JetStream, p protocol.PipeBinding, restart string, values []int64, end uint64) {
	t.Helper()
	ctx := context.Background()
	pub, err := newPublisher(ctx, js, p, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := codec.New(p.Codec, 0)
	for i, v := range values {
		payload, _ := c.Append(nil, v)
		b := codec.Block{SQN: uint64(i + 1), Payload: payload}
		if i == 0 {
			b.Head = codec.HeadMask(p.HeadSize, codec.BitReset)
		}
		if err := pub.write(ctx, b, false, restart); err != nil {
			t.Fatal(err)
		}
	}
	go pub.run(ctx) // started after the writes: every block goes in one message
	var endAt *uint64
	if end > 0 {
		endAt = &end
	}
	if err := pub.Close(ctx, endAt); err != nil {
		t.Fatal(err)
	}
}

// streamMsgs is how many messages a pipe's stream holds.
func streamMsgs(t *testing.T, js jetstream.JetStream, p protocol.PipeBinding) uint64 {
	t.Helper()
	_, state := pipeStream(t, js, p)
	return state.Msgs
}

// pipeStream is a pipe's stream and its state now.
func pipeStream(t *testing.T, js jetstream.JetStream, p protocol.PipeBinding) (jetstream.Stream, jetstream.StreamState) {
	t.Helper()
	st, err := js.Stream(context.Background(), p.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st, info.State
}

// takeEvery hands msgs to an input and takes every block from it, as a job's rounds do, until
// the end; it returns each block taken as label words it.
func takeEvery(t *testing.T, in *input, msgs []inMsg, label func(codec.Block) string) []string {
	t.Helper()
	go func() {
		for _, m := range msgs {
			in.ch <- m
		}
	}()
	var st stats
	var got []string
	for {
		b, ok, err := in.next(context.Background(), &st)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return got
		}
		got = append(got, label(b))
	}
}

// waitStreamEmpty waits until every message of a pipe's stream is acknowledged (bounded polling).
func waitStreamEmpty(t *testing.T, js jetstream.JetStream, p protocol.PipeBinding) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := streamMsgs(t, js, p); n > 0; n = streamMsgs(t, js, p) {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("pipe %d still holds %d messages after 10 s", p.ID, n)
		}
	}
}

// startTask runs a task until it ends or ctx does; its error comes on the channel returned.
func startTask(ctx context.Context, js jetstream.JetStream, tk *task) <-chan error {
	tk.drainCtx, tk.drain = context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		defer tk.drain()
		errc <- tk.run(ctx, js)
	}()
	return errc
}

// replayAfterCutOff runs a forward (job 2, pipe in to out) into a recording sink (job 3). Its
// first instance is cut off in the round of the value at, once the sink took and acknowledged
// taken answers; its next instance takes in from the start again with a new consumer (as a move
// makes) and answers to the end. It returns the sink and its task once the sink ended.
func replayAfterCutOff(t *testing.T, js jetstream.JetStream, in, out protocol.PipeBinding, at string, taken int) (*recordSink, *task) {
	t.Helper()
	sink := &recordSink{got: make(chan string, 16)}
	sinkTask := goTask(t, js, sink, pipeline.Job{ID: 3, Type: "record", Inputs: []int{2}}, []protocol.PipeBinding{out}, nil, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sinkDone := startTask(ctx, js, sinkTask)

	spec := pipeline.Job{ID: 2, Type: "hold", Inputs: []int{1}, Outputs: []int{2}}
	first := &holdAt{at: at, reached: make(chan struct{}), release: make(chan struct{})}
	firstCtx, kill := context.WithCancel(ctx)
	firstDone := startTask(firstCtx, js, goTask(t, js, first, spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out}, t.TempDir()))
	<-first.reached
	for i := 0; i < taken; i++ {
		select {
		case <-sink.got:
		case <-ctx.Done():
			t.Fatalf("the sink took %q, want %d values", sink.values(), taken)
		}
	}
	waitStreamEmpty(t, js, out)
	kill()
	close(first.release)
	<-firstDone

	if err := js.DeleteConsumer(ctx, in.Stream, in.Consumer); err != nil {
		t.Fatal(err)
	}
	next := in
	next.Consumer = "c1-next"
	if _, err := js.CreateConsumer(ctx, in.Stream, jetstream.ConsumerConfig{Durable: next.Consumer,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 64, AckWait: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := <-startTask(ctx, js, goTask(t, js, &holdAt{}, spec, []protocol.PipeBinding{next}, []protocol.PipeBinding{out}, t.TempDir())); err != nil {
		t.Fatalf("next instance: %v", err)
	}
	if err := <-sinkDone; err != nil {
		t.Fatalf("sink: %v", err)
	}
	return sink, sinkTask
}

func TestAnswersAJobComputesAgainAfterItsConsumerTookThemReachTheSinkOnce(t *testing.T) {
	_, js := startJetStream(t)
	in, out := jsonPipe(t, js, 1, 0), jsonPipe(t, js, 2, 0)
	sourceBlocks(t, js, in, 6, 6)
	// The first instance answers rounds 1–3 and is cut off in round 4, its input (one message,
	// blocks 1–6) not acknowledged; the sink takes the three answers. The next instance answers
	// rounds 1–6: 1–3 a second time, into an empty stream.
	sink, sinkTask := replayAfterCutOff(t, js, in, out, "4", 3)
	if got := sink.values(); got != "1 2 3 4 5 6" {
		t.Errorf("the sink took %s, want 1 2 3 4 5 6: each answer once, no restart and no dummy", got)
	}
	if st := sinkTask.stats.snapshot(); st.Dummies != 0 || st.Stale != 3 {
		t.Errorf("the sink counted %d dummies and %d stale blocks, want 0 and 3 (the repeated 1, 2 and 3)", st.Dummies, st.Stale)
	}
}

// A job's next instance that takes its input from the start again answers first the blocks of
// the sequence before the restart its consumer took last. Their SQNs lie ahead of the consumer's
// new sequence: without their sequence's name the consumer's checker would take them as a jump
// (dummies, then the old rows again). Every message names the restart its blocks count from, and
// the consumer drops the blocks of a sequence it has left.
func TestAReplayThatBeginsInTheSequenceBeforeTheConsumersLastRestartReachesTheSinkOnce(t *testing.T) {
	_, js := startJetStream(t)
	in, out := keptJSONPipe(t, js, 1), jsonPipe(t, js, 2, 0)
	publishSequence(t, js, in, "1.1.1", []int64{1, 2, 3}, 0)
	publishSequence(t, js, in, "1.1.2", []int64{11, 12, 13}, 3) // the source restarted
	// The first instance answers 1, 2, 3, the dummy round before the restart (0), 11 and 12, and
	// is cut off at 13; the sink takes them all (seven values with its own dummy, below). The
	// next instance takes the input from its start again, as if the first one's
	// acknowledgements were lost with it: 1, 2, 3 of the old sequence come first.
	sink, sinkTask := replayAfterCutOff(t, js, in, out, "13", 7)
	// The restart costs one dummy round at each stage (SPEC §4.4): the forward answers its round
	// 4 (a dummy: 0) and the sink makes round 5 a dummy of its own (0); nothing else twice.
	if got := sink.values(); got != "1 2 3 0 0 11 12 13" {
		t.Errorf("the sink took %s, want 1 2 3 0 0 11 12 13: each answer once, one dummy per stage for the restart", got)
	}
	// Dropped: 1, 2, 3 and the forward's 0 (a sequence the sink left), the restart 11 it took
	// last, and 12 (stale).
	if st := sinkTask.stats.snapshot(); st.Dummies != 1 || st.Stale != 6 {
		t.Errorf("the sink counted %d dummies and %d stale blocks, want 1 and 6", st.Dummies, st.Stale)
	}
}

// keptJSONPipe is jsonPipe on a stream that keeps what was acknowledged (limits retention): a
// new consumer takes it from the start again, as if every acknowledgement had been lost.
func keptJSONPipe(t *testing.T, js jetstream.JetStream, id int) protocol.PipeBinding {
	t.Helper()
	p := jsonPipe(t, js, id, 0)
	ctx := context.Background()
	if err := js.DeleteStream(ctx, p.Stream); err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: p.Stream, Subjects: []string{p.Subject}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: p.Consumer, AckPolicy: jetstream.AckExplicitPolicy,
		MaxAckPending: 64, AckWait: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	return p
}

// A restored file sink's input has taken nothing yet, so it takes the restart its producer sends
// again; the checkpoint names the restart its rows count from, and the sink writes none of them
// twice.
func TestARestoredFileSinkWritesNoRowTwiceWhenItsProducerSendsTheRestartItTookAgain(t *testing.T) {
	// The sink writes rows 1–3; the producer's next instance sends 1–6 again from the same
	// restart.
	got := fileSinkRestored(t,
		func(js jetstream.JetStream, in protocol.PipeBinding) { sourceBlocks(t, js, in, 3, 0) },
		func(js jetstream.JetStream, in protocol.PipeBinding) { sourceBlocks(t, js, in, 6, 6) })
	if strings.Join(got, " ") != "pipe_1 1 2 3 4 5 6" {
		t.Errorf("the file holds %q, want a header and rows 1 to 6, each once", got)
	}
}

// TestARestoredFileSinkWritesNoRowTwiceWhenItsProducerReplaysASequenceOlderThanItsCheckpoints:
// the sink's input left sequence a for b before its worker died, and its checkpoint says so
// (protocol.Checkpoint.Left): the producer's next instance sends a's blocks again, then b's,
// and the sink restored writes only b's new row.
func TestARestoredFileSinkWritesNoRowTwiceWhenItsProducerReplaysASequenceOlderThanItsCheckpoints(t *testing.T) {
	got := fileSinkRestored(t,
		func(js jetstream.JetStream, in protocol.PipeBinding) {
			publishSequence(t, js, in, "2.1.1", []int64{1, 2, 3, 4, 5}, 0)
			publishSequence(t, js, in, "2.1.2", []int64{10, 11}, 0)
		},
		func(js jetstream.JetStream, in protocol.PipeBinding) {
			publishSequence(t, js, in, "2.1.1", []int64{1, 2, 3, 4, 5}, 0)
			publishSequence(t, js, in, "2.1.2", []int64{10, 11, 12}, 3)
		})
	// A restart costs its consumer a dummy round (SPEC §4.4): the csv sink writes it as 0.
	if want := "pipe_1 1 2 3 4 5 0 10 11 12"; strings.Join(got, " ") != want {
		t.Errorf("the file holds %q, want the words %q: rows 1 to 5, a dummy, 10 to 12, each once", got, want)
	}
}

// fileSinkRestored runs a csv sink (job 2) of pipe 1 whose worker dies once it took and
// acknowledged what before published; then the sink restored from its checkpoint takes what
// after publishes, to the end. It returns the words of the file.
func fileSinkRestored(t *testing.T, before, after func(jetstream.JetStream, protocol.PipeBinding)) []string {
	t.Helper()
	_, js := startJetStream(t)
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: protocol.CheckpointBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	in := jsonPipe(t, js, 1, 0)
	dir := t.TempDir()
	spec := pipeline.Job{ID: 2, Type: "csv_sink", Inputs: []int{1}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The sink acknowledges its rows once its checkpoint is stored; then its worker dies.
	before(js, in)
	firstCtx, kill := context.WithCancel(ctx)
	firstDone := startTask(firstCtx, js, goTask(t, js, &builtin.CSVSink{Path: "out.csv"}, spec, []protocol.PipeBinding{in}, nil, dir))
	waitStreamEmpty(t, js, in)
	kill()
	<-firstDone

	after(js, in)
	if err := <-startTask(ctx, js, goTask(t, js, &builtin.CSVSink{Path: "out.csv"}, spec, []protocol.PipeBinding{in}, nil, dir)); err != nil {
		t.Fatalf("restored sink: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "out.csv"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(data))
}

// TestARestartIsDroppedOnlyWhenItIsTheOneItsInputTookLast: a restart named again is dropped; a
// restart of another name, or of none (a NATS client's), restarts the sequence as always.
func TestARestartIsDroppedOnlyWhenItIsTheOneItsInputTookLast(t *testing.T) {
	pipe := protocol.PipeBinding{ID: 4, Codec: "json", BlockCount: 1, HeadSize: 1}
	rst := codec.HeadMask(1, codec.BitReset)
	in := newInput(0, pipe)
	msgs := []inMsg{
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}}, restart: "a"},
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}}, restart: "a"},           // a replay: 1 dropped
		{blocks: []codec.Block{{SQN: 3}, {SQN: 1, Head: rst}, {SQN: 2}}, restart: "a"}, // a restart not first: it and the rest unnamed
		{blocks: []codec.Block{{SQN: 1, Head: rst}}, restart: "b"},
		{blocks: []codec.Block{{SQN: 1}}}, // SQN 1 from a NATS client: a restart of no name
		{blocks: []codec.Block{{SQN: 1}}},
		{end: true, endSQN: 1},
	}
	got := takeEvery(t, in, msgs, func(b codec.Block) string {
		if b.Head == rst {
			return fmt.Sprint(b.SQN, "r")
		}
		return fmt.Sprint(b.SQN)
	})
	want := "1r 2 2 3 1r 2 1r 1 1"
	if strings.Join(got, " ") != want || in.replays != 1 {
		t.Errorf("took %s with %d replays dropped, want %s with 1", strings.Join(got, " "), in.replays, want)
	}
}

// takenNamed takes every block of msgs from in (takeEvery), each written as its SQN, "r" for the
// reset bit, and the name of the sequence the input is in once it took it.
func takenNamed(t *testing.T, in *input, msgs []inMsg) string {
	t.Helper()
	rst := codec.HeadMask(in.pipe.HeadSize, codec.BitReset)
	return strings.Join(takeEvery(t, in, msgs, func(b codec.Block) string {
		if b.Head == rst {
			return fmt.Sprint(b.SQN, "r", in.restart)
		}
		return fmt.Sprint(b.SQN, in.restart)
	}), " ")
}

// TestABlockOfASequenceItsInputHasLeftIsDropped: a block whose message names a sequence the
// input has left is dropped, however many restarts ago it left it, and so is a restart it took
// before the last one; a name it has not seen is adopted.
func TestABlockOfASequenceItsInputHasLeftIsDropped(t *testing.T) {
	pipe := protocol.PipeBinding{ID: 4, Codec: "json", BlockCount: 1, HeadSize: 1}
	rst := codec.HeadMask(1, codec.BitReset)
	in := newInput(0, pipe)
	msgs := []inMsg{
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}, {SQN: 3}}, restart: "a"},
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}}, restart: "b"},
		{blocks: []codec.Block{{SQN: 1, Head: rst}}, restart: "c"},
		{blocks: []codec.Block{{SQN: 3}, {SQN: 4}}, restart: "a"},            // replayed: left two restarts ago
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}}, restart: "b"}, // replayed restart, not the last
		{blocks: []codec.Block{{SQN: 2}, {SQN: 3}}, restart: "c"},
		{blocks: []codec.Block{{SQN: 4}}, restart: "d"}, // a name not seen (its restart was dropped): adopted
		{blocks: []codec.Block{{SQN: 4}}, restart: "c"}, // left when d was adopted
		{end: true, endSQN: 4},
	}
	got := takenNamed(t, in, msgs)
	if want := "1ra 2a 3a 1rb 2b 1rc 2c 3c 4d"; got != want || in.replays != 5 {
		t.Errorf("took %s with %d replays dropped, want %s with 5", got, in.replays, want)
	}
}

// TestAnAsyncInputDropsTheBlocksOfItsSequenceItTookBefore: no checker guards an async input, so
// the input itself drops a block of its sequence whose SQN it took already, a restart it took,
// and the blocks of a sequence it left; a message of no name (a client's) is taken as always.
func TestAnAsyncInputDropsTheBlocksOfItsSequenceItTookBefore(t *testing.T) {
	pipe := protocol.PipeBinding{ID: 4, Codec: "json", BlockCount: 1, HeadSize: 1, Async: true}
	rst := codec.HeadMask(1, codec.BitReset)
	in := newInput(0, pipe)
	msgs := []inMsg{
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}, {SQN: 3}}, restart: "a"},
		{blocks: []codec.Block{{SQN: 2}, {SQN: 3}, {SQN: 4}}, restart: "a"}, // 2 and 3 sent again
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}}, restart: "b"},
		{blocks: []codec.Block{{SQN: 4}, {SQN: 5}}, restart: "a"},                      // a sequence left
		{blocks: []codec.Block{{SQN: 1, Head: rst}, {SQN: 2}, {SQN: 3}}, restart: "b"}, // 1 and 2 again
		{blocks: []codec.Block{{SQN: 1}}},                                              // a client's, of no name
		{blocks: []codec.Block{{SQN: 1}}},
		{end: true, endSQN: 1},
	}
	got := takenNamed(t, in, msgs)
	if want := "1ra 2a 3a 4a 1rb 2b 3b 1 1"; got != want || in.replays != 6 {
		t.Errorf("took %s with %d replays dropped, want %s with 6", got, in.replays, want)
	}
}

// TestAnInputRemembersTheLastSequencesItLeftWithoutChangingWhatItGaveAway: left holds the last
// maxLeft names, newest last, and a leave makes a new slice, so that the one a sink's checkpoint
// keeps (goKind.leftOf) stays as it was.
func TestAnInputRemembersTheLastSequencesItLeftWithoutChangingWhatItGaveAway(t *testing.T) {
	in := newInput(0, protocol.PipeBinding{ID: 4, Codec: "json"})
	var kept []string
	for i := range maxLeft + 4 {
		in.leave(fmt.Sprint(i))
		if i == maxLeft-1 {
			kept = in.left
		}
	}
	if len(in.left) != maxLeft || in.left[0] != "4" || in.left[maxLeft-1] != fmt.Sprint(maxLeft+3) {
		t.Errorf("left %v, want the names 4 to %d", in.left, maxLeft+3)
	}
	if len(kept) != maxLeft || kept[0] != "0" || kept[maxLeft-1] != fmt.Sprint(maxLeft-1) {
		t.Errorf("a slice given away became %v, want the names 0 to %d still", kept, maxLeft-1)
	}
}
