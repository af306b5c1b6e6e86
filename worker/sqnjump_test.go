package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
)

// A gap is bounded (DESIGN §7): a block of a synchronous input whose SQN lies further ahead than
// its pipe can have in flight fails the job, named in its error, with no dummy made for the gap;
// a gap within the bound still becomes dummies; and a stop ends a job in the middle of a gap.

// farSQN is an SQN an attacker might inject: 2^40, far beyond any pipe's bound.
const farSQN = uint64(1) << 40

// goTask builds a Go job's task on the given pipes without running it (runGoJob runs it and
// wants it to succeed); workDir is its working directory.
func goTask(t *testing.T, js jetstream.JetStream, j any, spec pipeline.Job, ins, outs []protocol.PipeBinding, workDir string) *task {
	t.Helper()
	inPorts, err := ports(ins)
	if err != nil {
		t.Fatal(err)
	}
	outPorts, err := ports(outs)
	if err != nil {
		t.Fatal(err)
	}
	label := fmt.Sprintf("job %d (%s)", spec.ID, spec.Type)
	runner, err := job.Bind(j, label, inPorts, outPorts)
	if err != nil {
		t.Fatal(err)
	}
	tk := &task{
		assign: protocol.Assignment{Pipeline: "e", Epoch: 1, Job: spec, Inputs: ins, Outputs: outs},
		label:  label, headSize: spec.EffectiveHeadSize(), log: slog.New(slog.DiscardHandler),
		done: make(chan struct{}), stdin: newStdinReader(js.Conn(), "marvelo.e.stdin"),
		sequencer: align.NewSourceSequencer(), runner: runner,
	}
	tk.ctxConfig = job.ContextConfig{Pipeline: "e", Name: spec.Type, JobID: spec.ID, HeadSize: tk.headSize,
		Inputs: len(ins), Outputs: len(outs), Log: tk.log, WorkDir: workDir, InputPipes: spec.Inputs}
	return tk
}

// runTask runs a task to its end within a deadline and returns its error.
func runTask(t *testing.T, js jetstream.JetStream, tk *task) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tk.drainCtx, tk.drain = context.WithCancel(ctx)
	defer tk.drain()
	err := tk.run(ctx, js)
	if ctx.Err() != nil {
		t.Fatalf("the job did not end within its deadline (err %v)", err)
	}
	return err
}

// csvSinkOn runs csv_sink (job 2) on one input pipe and returns its error and the file's rows
// after the header.
func csvSinkOn(t *testing.T, js jetstream.JetStream, in protocol.PipeBinding) (error, []string) {
	t.Helper()
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: protocol.CheckpointBucket, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	spec := pipeline.Job{ID: 2, Type: "csv_sink", Inputs: []int{in.ID}}
	tk := goTask(t, js, &builtin.CSVSink{Path: "out.csv"}, spec, []protocol.PipeBinding{in}, nil, dir)
	err := runTask(t, js, tk)
	data, rerr := os.ReadFile(filepath.Join(dir, "out.csv"))
	if rerr != nil {
		t.Fatal(rerr)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) == 0 || lines[0] != fmt.Sprintf("pipe_%d", in.ID) {
		t.Fatalf("csv header %q, want pipe_%d", lines, in.ID)
	}
	return err, lines[1:]
}

// TestBlockFarAheadFailsTheSinkNamingPipelineJobPipeAndSQNsWithItsRowsUnchanged: blocks 1…5 of
// a pipe, then one with SQN 2^40 (and 6 after it): csv_sink writes rows 1…5, then fails with a
// protocol violation naming the pipeline, the job, the pipe, the SQN expected (6) and the one
// received, and writes no dummy row for the gap.
func TestBlockFarAheadFailsTheSinkNamingPipelineJobPipeAndSQNsWithItsRowsUnchanged(t *testing.T) {
	_, js := startJetStream(t)
	in := enginePipe(t, js, 1, 0)
	fill(t, js, in, append(span(1, 5, nil), codec.Block{SQN: farSQN}, codec.Block{SQN: 6}), 6)
	err, rows := csvSinkOn(t, js, in)
	var jump *SQNJumpError
	if !errors.As(err, &jump) {
		t.Fatalf("csv_sink ended with %v, want a protocol violation (SQNJumpError)", err)
	}
	want := fmt.Sprintf("pipeline e: job 2 (csv_sink): input pipe 1: protocol violation: expected SQN 6, received a block with SQN %d", farSQN)
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q\nwant it to begin %q", err, want)
	}
	if got := strings.Join(rows, " "); got != "1 2 3 4 5" {
		t.Errorf("rows %q, want 1 2 3 4 5 (no dummy row for the gap)", got)
	}
}

// TestEndMarkerFarAheadFailsTheSinkWithItsRowsUnchanged: blocks 1…3, then an end-of-stream
// marker naming SQN 2^40 (an ended input's slots up to the SQN its marker names become dummies):
// csv_sink writes rows 1…3 and fails naming the marker, with no dummy row.
func TestEndMarkerFarAheadFailsTheSinkWithItsRowsUnchanged(t *testing.T) {
	_, js := startJetStream(t)
	in := enginePipe(t, js, 1, 0)
	fill(t, js, in, span(1, 3, nil), farSQN)
	err, rows := csvSinkOn(t, js, in)
	want := fmt.Sprintf("input pipe 1: protocol violation: expected SQN 4, received an end-of-stream marker naming SQN %d", farSQN)
	if err == nil || !strings.Contains(err.Error(), "pipeline e: job 2 (csv_sink)") || !strings.Contains(err.Error(), want) {
		t.Fatalf("csv_sink ended with %v\nwant an error naming pipeline e, job 2 and %q", err, want)
	}
	if got := strings.Join(rows, " "); got != "1 2 3" {
		t.Errorf("rows %q, want 1 2 3 (no dummy row for the gap)", got)
	}
}

// TestSQNGapWithinTheBoundStillBecomesDummies: blocks 1, 2, 3, 10, 11 (SQNs 4…9 lost): csv_sink
// writes a zero dummy row for each of 4…9 and finishes, as before the bound.
func TestSQNGapWithinTheBoundStillBecomesDummies(t *testing.T) {
	_, js := startJetStream(t)
	in := enginePipe(t, js, 1, 0)
	fill(t, js, in, append(span(1, 3, nil), span(10, 11, nil)...), 11)
	err, rows := csvSinkOn(t, js, in)
	if err != nil {
		t.Fatalf("csv_sink: %v", err)
	}
	if got := strings.Join(rows, " "); got != "1 2 3 0 0 0 0 0 0 10 11" {
		t.Errorf("rows %q, want 1 2 3 0 0 0 0 0 0 10 11", got)
	}
}

// TestAnSQNJumpIsBoundedByWhatThePipeCanHaveInFlight: the bound is the pipe's stream limit (or its
// max_queue, if larger) times the blocks a message carries; a jump of exactly the bound passes
// and one more fails; a restart (reset bit or SQN 1), a late block, an async input, and a block
// after drops (up to the bound once more per block dropped) pass.
func TestAnSQNJumpIsBoundedByWhatThePipeCanHaveInFlight(t *testing.T) {
	plain := protocol.PipeBinding{ID: 1, HeadSize: 1}
	if got, want := maxSQNJump(plain), uint64(protocol.PipeMaxMsgs*maxBatchBlocks); got != want || want != 2097152 {
		t.Fatalf("bound of a plain pipe %d, want %d = 4096 messages × 512 blocks", got, want)
	}
	big := protocol.PipeBinding{ID: 2, HeadSize: 1, MaxQueue: 10000}
	if got := maxSQNJump(big); got != 10000*maxBatchBlocks {
		t.Fatalf("bound of a max_queue 10000 pipe %d, want %d", got, 10000*maxBatchBlocks)
	}
	g := maxSQNJump(plain)
	reset := codec.HeadMask(1, codec.BitReset)
	type step struct {
		sqn     uint64
		head    uint32
		dropped uint64
		end     bool
		fails   bool
	}
	cases := map[string][]step{
		"exactly the bound":           {{sqn: 100}, {sqn: 100 + g}},
		"one past the bound":          {{sqn: 100}, {sqn: 101 + g, fails: true}},
		"far ahead":                   {{sqn: 1}, {sqn: 2}, {sqn: farSQN, fails: true}},
		"end marker far ahead":        {{sqn: 7}, {sqn: farSQN, end: true, fails: true}},
		"end marker within the bound": {{sqn: 7}, {sqn: 7 + g, end: true}},
		"first block far ahead":       {{sqn: farSQN}, {sqn: farSQN + 1}},
		"a reset far ahead":           {{sqn: 5}, {sqn: farSQN, head: reset}},
		"a restart at 1, then on":     {{sqn: farSQN}, {sqn: 1}, {sqn: 1 + g}},
		"late blocks":                 {{sqn: 1000}, {sqn: 3}, {sqn: 1000 + g}},
		"after 2 blocks dropped":      {{sqn: 10}, {sqn: 10 + 3*g, dropped: 2}},
		"past the drops' bound":       {{sqn: 10}, {sqn: 11 + 3*g, dropped: 2, fails: true}},
		"the drops count once":        {{sqn: 10}, {sqn: 10 + 3*g, dropped: 2}, {sqn: 11 + 4*g, fails: true}},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			in := newInput(0, plain)
			for i, s := range steps {
				in.dropped += s.dropped
				err := in.checkJump(s.sqn, s.head, s.end)
				var jump *SQNJumpError
				if s.fails != errors.As(err, &jump) {
					t.Fatalf("step %d (SQN %d): %v, want failure %v", i, s.sqn, err, s.fails)
				}
				if s.fails && (jump.Received != s.sqn || jump.Pipe != 1 || jump.End != s.end) {
					t.Fatalf("step %d: %+v", i, jump)
				}
			}
		})
	}
	async := newInput(0, protocol.PipeBinding{ID: 3, HeadSize: 1, Async: true})
	for _, sqn := range []uint64{1, farSQN} {
		if err := async.checkJump(sqn, 0, false); err != nil {
			t.Fatalf("async input: %v", err)
		}
	}
}

// gapCounter is a sink that counts its rounds and closes reached at the n-th.
type gapCounter struct {
	rounds  atomic.Uint64
	n       uint64
	reached chan struct{}
}

func (g *gapCounter) Run(ctx *job.Context, v any) error {
	if g.rounds.Add(1) == g.n {
		close(g.reached)
	}
	return nil
}

// TestStopEndsASinkInTheMiddleOfAGapOfDummies: blocks 1 and 1+bound (a legal gap of two million
// dummies, which the checker fills holding the second block, taking nothing from the input):
// the job is stopped once 1,000 rounds are done and ends, stopped, long before the gap is filled.
func TestStopEndsASinkInTheMiddleOfAGapOfDummies(t *testing.T) {
	_, js := startJetStream(t)
	in := enginePipe(t, js, 1, 0)
	g := maxSQNJump(in)
	fill(t, js, in, []codec.Block{{SQN: 1}, {SQN: 1 + g}}, 0)
	sink := &gapCounter{n: 1000, reached: make(chan struct{})}
	tk := goTask(t, js, sink, pipeline.Job{ID: 2, Type: "counter_sink", Inputs: []int{1}}, []protocol.PipeBinding{in}, nil, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tk.drainCtx, tk.drain = context.WithCancel(ctx)
	defer tk.drain()
	ended := make(chan error, 1)
	go func() { ended <- tk.run(ctx, js) }()
	select {
	case <-sink.reached:
	case err := <-ended:
		t.Fatalf("the job ended before 1000 rounds: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("1000 rounds not done within 30 s")
	}
	cancel()
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("the stopped job ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job did not end within 10 s of its stop")
	}
	if n := sink.rounds.Load(); n >= g {
		t.Fatalf("the job ran %d rounds after its stop; the gap (%d dummies) was filled", n, g)
	}
	t.Logf("stopped after %d of the gap's %d rounds", sink.rounds.Load(), g)
}
