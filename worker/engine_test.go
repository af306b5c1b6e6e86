package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
)

// The round engine driven directly, on a real JetStream: input streams filled with chosen
// blocks (SQNs, heads), one job run to its end, its output streams read back block by block.

// enginePipe makes the stream and consumer of one pipe; maxQueue > 0 makes it a max_queue pipe.
func enginePipe(t *testing.T, js jetstream.JetStream, id, maxQueue int) protocol.PipeBinding {
	t.Helper()
	p := protocol.PipeBinding{ID: id, Subject: "marvelo.e.pipe." + strconv.Itoa(id), Stream: "MARVELO_e_" + strconv.Itoa(id),
		Consumer: "c" + strconv.Itoa(id), Codec: "cbor", BlockCount: 1, HeadSize: 1, MaxQueue: maxQueue}
	cfg := jetstream.StreamConfig{Name: p.Stream, Subjects: []string{p.Subject}, Storage: jetstream.MemoryStorage,
		Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, MaxMsgs: 4096}
	maxAck := 64
	if maxQueue > 0 {
		cfg.Subjects = append(cfg.Subjects, protocol.PipeEndSubject(p.Subject))
		cfg.Discard, cfg.MaxMsgs, cfg.MaxMsgsPerSubject = jetstream.DiscardOld, -1, int64(maxQueue)
		maxAck = 1
	}
	st, err := js.CreateStream(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: p.Consumer,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxAck, AckWait: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	return p
}

// fill publishes blocks (cbor integers: the SQN itself unless a payload is given) to a pipe,
// then an end marker naming end if end > 0.
func fill(t *testing.T, js jetstream.JetStream, p protocol.PipeBinding, blocks []codec.Block, end uint64) {
	t.Helper()
	c, _ := codec.New(p.Codec, 0)
	for _, b := range blocks {
		if b.Payload == nil {
			b.Payload, _ = c.Append(nil, int64(b.SQN))
		}
		if _, err := js.Publish(context.Background(), p.Subject, codec.AppendBlock(nil, b, p.HeadSize)); err != nil {
			t.Fatal(err)
		}
	}
	if end > 0 {
		subject := p.Subject
		if p.MaxQueue > 0 {
			subject = protocol.PipeEndSubject(subject)
		}
		msg := &nats.Msg{Subject: subject, Header: nats.Header{codec.EndHeader: []string{strconv.FormatUint(end, 10)}}}
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

// runGoJob runs a Go job (a value of a job type) on the given pipes to its end.
func runGoJob(t *testing.T, js jetstream.JetStream, j any, spec pipeline.Job, ins, outs []protocol.PipeBinding) *task {
	t.Helper()
	inPorts, err := ports(ins)
	if err != nil {
		t.Fatal(err)
	}
	outPorts, err := ports(outs)
	if err != nil {
		t.Fatal(err)
	}
	label := fmt.Sprintf("job %d (test)", spec.ID)
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
	tk.ctxConfig = job.ContextConfig{Pipeline: "e", Name: "test", JobID: spec.ID, HeadSize: tk.headSize,
		Inputs: len(ins), Outputs: len(outs), Log: tk.log}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tk.drainCtx, tk.drain = context.WithCancel(ctx)
	defer tk.drain()
	if err := tk.run(ctx, js); err != nil {
		t.Fatalf("run: %v", err)
	}
	return tk
}

// sqnHeads renders blocks as "sqn/head" for comparisons.
func sqnHeads(bs []codec.Block) string {
	s := ""
	for i, b := range bs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d/%02x", b.SQN, b.Head)
	}
	return s
}

// sb6 writes, on each of its outputs, head 11000000 — as far as a Go job can: SetOutHead refuses
// the reset bit, which belongs to the system — optionally finishing.
type sb6 struct{ finish bool }

func (j *sb6) Run(ctx *job.Context, v any) (job.Outputs, error) {
	out := make(job.Outputs, 10)
	for k := range out {
		out[k] = v
		if err := ctx.SetOutHead(k, pipeline.NewHead(0b11000000, 1)); err == nil {
			return nil, fmt.Errorf("SetOutHead let the job set the reset bit")
		}
		if err := ctx.SetOutHead(k, pipeline.NewHead(0b10000000, 1)); err != nil {
			return nil, err
		}
	}
	if j.finish {
		ctx.Finish()
	}
	return out, nil
}

// SPEC SB6: entries with varying SQNs (3, 4, 7, 8, 9, 15) and head 10000000 through a job with
// 10 outputs that tries to set the reset bit on each — a Go job writing 11000000 (SetOutHead
// refuses it, 10000000 is taken), an executable answering 01000000 (its own corrupted bit would
// skip the round): every output carries the round's SQN unchanged, with head 10000000 (the job
// cannot set reset), and dummies (corrupted) where SQNs are missing. Finishing in the first
// round (Finish, or the program's finished bit) ends the job: one block per output, 10100000.
func TestAConnectorPassesEachRoundsSQNToTenOutputsAndCannotSetTheResetBit(t *testing.T) {
	sqns := []uint64{3, 4, 7, 8, 9, 15}
	for _, kind := range []string{"go", "exec"} {
		for _, finish := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s_finish=%v", kind, finish), func(t *testing.T) {
				_, js := startJetStream(t)
				in := enginePipe(t, js, 1, 0)
				var blocks []codec.Block
				for _, s := range sqns {
					blocks = append(blocks, codec.Block{SQN: s, Head: 0b10000000})
				}
				var outs []protocol.PipeBinding
				var outIDs []int
				for k := range 10 {
					outs = append(outs, enginePipe(t, js, 10+k, 0))
					outIDs = append(outIDs, 10+k)
				}
				spec := pipeline.Job{ID: 2, Type: "sb6", Inputs: []int{1}, Outputs: outIDs, Head: true}
				if kind == "go" {
					fill(t, js, in, blocks, 15)
					runGoJob(t, js, &sb6{finish: finish}, spec, []protocol.PipeBinding{in}, outs)
				} else {
					in.Codec = "json"
					fill(t, js, in, blocks, 15)
					for k := range outs {
						outs[k].Codec = "json"
					}
					params := []string{"--head", "--out-head", "64"}
					if finish {
						params = append(params, "--finish", "1")
					}
					spec.Type, spec.Exec = "", &pipeline.Exec{Path: "./proto.py", Params: params}
					runExecJob(t, js, spec, []protocol.PipeBinding{in}, outs)
				}
				want := "3/80 4/80 5/80 6/80 7/80 8/80 9/80 10/80 11/80 12/80 13/80 14/80 15/80"
				if finish {
					want = "3/a0"
				}
				for k, o := range outs {
					got, _, _ := readAll(t, js, o)
					if s := sqnHeads(got); s != want {
						t.Errorf("output %d: %s, want %s", k, s, want)
					}
				}
			})
		}
	}
}

// runExecJob runs testdata/exec/proto.py with params on the given (json) pipes to its end.
func runExecJob(t *testing.T, js jetstream.JetStream, spec pipeline.Job, ins, outs []protocol.PipeBinding) *task {
	t.Helper()
	tk, run := execTask(t, js, "proto.py", spec, ins, outs)
	if err := run(); err != nil {
		t.Fatalf("run: %v", err)
	}
	return tk
}

// execTask prepares the program testdata/exec/<prog> (spec.Exec.Path names it) as a task on the
// given pipes; run runs it to its end.
func execTask(t *testing.T, js jetstream.JetStream, prog string, spec pipeline.Job, ins, outs []protocol.PipeBinding) (tk *task, run func() error) {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("../testdata/exec/" + prog)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, prog), b, 0o755); err != nil {
		t.Fatal(err)
	}
	a := protocol.Assignment{Pipeline: "e", Epoch: 1, Job: spec, Inputs: ins, Outputs: outs}
	es, err := execjob.SpecFromAssignment(&a, "w", dir)
	if err != nil {
		t.Fatal(err)
	}
	tk = &task{
		assign: a, label: fmt.Sprintf("job %d (%s)", spec.ID, prog), headSize: spec.EffectiveHeadSize(),
		log: slog.New(slog.DiscardHandler), done: make(chan struct{}), stdin: newStdinReader(js.Conn(), "marvelo.e.stdin"),
		sequencer: align.NewSourceSequencer(), execSpec: &es,
	}
	tk.ctxConfig = job.ContextConfig{Pipeline: "e", Name: prog, JobID: spec.ID, HeadSize: tk.headSize,
		Inputs: len(ins), Outputs: len(outs), Log: tk.log}
	return tk, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		tk.drainCtx, tk.drain = context.WithCancel(ctx)
		defer tk.drain()
		return tk.run(ctx, js)
	}
}

// startKind runs a job of one kind that adds its inputs (one output; none for a sink): the
// builtin sum or discard ("go"), testdata/exec/proto.py ("exec"). Pipes are json.
func startKind(t *testing.T, js jetstream.JetStream, kind string, spec pipeline.Job, ins, outs []protocol.PipeBinding) *task {
	t.Helper()
	if kind == "exec" {
		spec.Exec = &pipeline.Exec{Path: "./proto.py"}
		return runExecJob(t, js, spec, ins, outs)
	}
	if len(outs) == 0 {
		spec.Type = "discard"
		return runGoJob(t, js, &builtin.Discard{}, spec, ins, outs)
	}
	spec.Type = "sum"
	return runGoJob(t, js, builtin.Sum{}, spec, ins, outs)
}

func jsonPipe(t *testing.T, js jetstream.JetStream, id, maxQueue int) protocol.PipeBinding {
	p := enginePipe(t, js, id, maxQueue)
	p.Codec = "json"
	return p
}

// values decodes json blocks as integers.
func values(t *testing.T, bs []codec.Block) string {
	t.Helper()
	c, _ := codec.New("json", 0)
	s := ""
	for i, b := range bs {
		v, err := c.DecodeAny(b.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			s += " "
		}
		s += fmt.Sprint(v)
	}
	return s
}

func span(from, to uint64, head map[uint64]uint32) []codec.Block {
	var bs []codec.Block
	for s := from; s <= to; s++ {
		bs = append(bs, codec.Block{SQN: s, Head: head[s]})
	}
	return bs
}

// SPEC SQN11: three max_queue 10 inputs that were each sent blocks 1…14 while the job was away hold
// 5…14; the job, Go or executable, runs rounds 5…14 — rounds 1…4 dropped whole on every input at
// once, no dummies — and counts 12 drops.
func TestMaxQueueDropsWholeRoundsOnEveryInputAtOnce(t *testing.T) {
	for _, kind := range []string{"go", "exec"} {
		t.Run(kind, func(t *testing.T) {
			_, js := startJetStream(t)
			var ins []protocol.PipeBinding
			for k := range 3 {
				in := jsonPipe(t, js, 1+k, 10)
				fill(t, js, in, span(1, 14, nil), 14)
				ins = append(ins, in)
			}
			out := jsonPipe(t, js, 9, 0)
			tk := startKind(t, js, kind, pipeline.Job{ID: 2, Inputs: []int{1, 2, 3}, Outputs: []int{9}}, ins, []protocol.PipeBinding{out})
			got, _, _ := readAll(t, js, out)
			var sqns, vals []string
			for s := 5; s <= 14; s++ {
				sqns, vals = append(sqns, fmt.Sprintf("%d/00", s)), append(vals, fmt.Sprint(3*s))
			}
			if sqnHeads(got) != strings.Join(sqns, " ") || values(t, got) != strings.Join(vals, " ") {
				t.Fatalf("out %s = %s, want %s = %s", sqnHeads(got), values(t, got), strings.Join(sqns, " "), strings.Join(vals, " "))
			}
			st := tk.stats.snapshot()
			if st.QueueDrops != 12 || st.Dummies != 0 || st.Rounds != 10 {
				t.Errorf("queue_drops %d dummies %d rounds %d, want 12, 0, 10", st.QueueDrops, st.Dummies, st.Rounds)
			}
		})
	}
}

// SPEC SQN12: blocks 1…10 with the finished bit on 5 and no end marker: a connector (Go or
// executable) answers rounds 1…5, the last with the finished bit (SB-4: finished = job OR input),
// and ends without waiting for more; a sink ends after round 5.
func TestSinksAndConnectorsEndOnTheFinishedBit(t *testing.T) {
	fin := map[uint64]uint32{5: 0x20}
	for _, kind := range []string{"go", "exec"} {
		t.Run(kind+"_connector", func(t *testing.T) {
			_, js := startJetStream(t)
			in := jsonPipe(t, js, 1, 0)
			fill(t, js, in, span(1, 10, fin), 0)
			out := jsonPipe(t, js, 9, 0)
			tk := startKind(t, js, kind, pipeline.Job{ID: 2, Inputs: []int{1}, Outputs: []int{9}}, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
			got, _, _ := readAll(t, js, out)
			if s := sqnHeads(got); s != "1/00 2/00 3/00 4/00 5/20" {
				t.Fatalf("out %s, want 1…5, the finished bit on 5", s)
			}
			if r := tk.stats.snapshot().Rounds; r != 5 {
				t.Errorf("%d rounds, want 5", r)
			}
		})
		t.Run(kind+"_sink", func(t *testing.T) {
			_, js := startJetStream(t)
			in := jsonPipe(t, js, 1, 0)
			fill(t, js, in, span(1, 10, fin), 0)
			tk := startKind(t, js, kind, pipeline.Job{ID: 2, Inputs: []int{1}}, []protocol.PipeBinding{in}, nil)
			if r := tk.stats.snapshot().Rounds; r != 5 {
				t.Errorf("%d rounds, want 5", r)
			}
		})
	}
}

// finishAt is a Go connector that forwards its input and calls Finish on its n-th round.
type finishAt struct {
	n, seen int
}

func (j *finishAt) Run(ctx *job.Context, v any) (any, error) {
	if j.seen++; j.seen == j.n {
		ctx.Finish()
	}
	return v, nil
}

// SPEC SB5: a connector without head: true, Go (sum) or executable (proto.py, which sees no heads),
// writes each round's connection head unchanged — user bits and corrupted included, 00000000,
// 10000000, 00011101, 10100000 — and the finished bit in it ends the job after that round (no end
// marker, more blocks waiting). A Go connector without head that calls Finish signals it: its last
// block carries the finished bit.
func TestAConnectorWithoutHeadPassesTheConnectionHead(t *testing.T) {
	heads := map[uint64]uint32{2: 0b10000000, 3: 0b00011101, 4: 0b10100000}
	for _, kind := range []string{"go", "exec"} {
		t.Run(kind, func(t *testing.T) {
			_, js := startJetStream(t)
			in := jsonPipe(t, js, 1, 0)
			fill(t, js, in, span(1, 8, heads), 0)
			out := jsonPipe(t, js, 9, 0)
			tk := startKind(t, js, kind, pipeline.Job{ID: 2, Inputs: []int{1}, Outputs: []int{9}}, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
			got, _, _ := readAll(t, js, out)
			if s, v := sqnHeads(got), values(t, got); s != "1/00 2/80 3/1d 4/a0" || v != "1 2 3 4" {
				t.Fatalf("out %s = %s, want 1/00 2/80 3/1d 4/a0 = 1 2 3 4", s, v)
			}
			if r := tk.stats.snapshot().Rounds; r != 4 {
				t.Errorf("%d rounds, want 4", r)
			}
		})
	}
	t.Run("go_finish", func(t *testing.T) {
		_, js := startJetStream(t)
		in := jsonPipe(t, js, 1, 0)
		fill(t, js, in, span(1, 8, nil), 0)
		out := jsonPipe(t, js, 9, 0)
		runGoJob(t, js, &finishAt{n: 2}, pipeline.Job{ID: 2, Type: "finish_at", Inputs: []int{1}, Outputs: []int{9}},
			[]protocol.PipeBinding{in}, []protocol.PipeBinding{out})
		got, _, _ := readAll(t, js, out)
		if s := sqnHeads(got); s != "1/00 2/20" {
			t.Fatalf("out %s, want 1/00 2/20", s)
		}
	})
}

// TestConnectorSettingTheFinishedBitEndsTheJob: a connector with head: true that finishes on
// its third round of blocks 1…10 (no end marker) — a Go job calling Finish, an executable
// answering with the finished bit on both its outputs and reading and answering on — ends
// there: each output holds rounds 1…3, the finished bit on 3, nothing after it.
func TestConnectorSettingTheFinishedBitEndsTheJob(t *testing.T) {
	for _, kind := range []string{"go", "exec"} {
		t.Run(kind, func(t *testing.T) {
			_, js := startJetStream(t)
			in := jsonPipe(t, js, 1, 0)
			fill(t, js, in, span(1, 10, nil), 0)
			outs := []protocol.PipeBinding{jsonPipe(t, js, 8, 0), jsonPipe(t, js, 9, 0)}
			spec := pipeline.Job{ID: 2, Inputs: []int{1}, Outputs: []int{8, 9}, Head: true}
			want := []string{"1 2 3", "1 2 3"} // proto.py: the sum and the product of one input
			var tk *task
			if kind == "go" {
				spec.Type, spec.Outputs, outs, want = "finish_at", spec.Outputs[:1], outs[:1], want[:1]
				tk = runGoJob(t, js, &finishAt{n: 3}, spec, []protocol.PipeBinding{in}, outs)
			} else {
				spec.Exec = &pipeline.Exec{Path: "./proto.py", Params: []string{"--head", "--finish", "3"}}
				tk = runExecJob(t, js, spec, []protocol.PipeBinding{in}, outs)
			}
			for k, o := range outs {
				got, _, _ := readAll(t, js, o) // up to the finished bit
				if s, v := sqnHeads(got), values(t, got); s != "1/00 2/00 3/20" || v != want[k] {
					t.Errorf("output %d: %s = %s, want 1/00 2/00 3/20 = %s", k, s, v, want[k])
				}
			}
			if n := tk.stats.snapshot().BlocksOut; n != uint64(3*len(outs)) { // and nothing after it
				t.Errorf("%d blocks written, want %d", n, 3*len(outs))
			}
		})
	}
}

// TestExecSQNRoundsFarBehindAreAcknowledgedBeforeTheyAreAnswered: the sqn acknowledgement
// window (DESIGN.md §5). A program with "exec": {"sqn": true} reads 70 of 100 rounds (one block
// per input message, a consumer with MaxAckPending 64) and then waits, having answered nothing:
// the input's consumer has acknowledged at least the 70 − 32 oldest meanwhile while the output
// is still empty. Let go, it answers only round 100, and the output holds that block alone.
func TestExecSQNRoundsFarBehindAreAcknowledgedBeforeTheyAreAnswered(t *testing.T) {
	_, js := startJetStream(t)
	in := jsonPipe(t, js, 1, 0)
	fill(t, js, in, span(1, 100, nil), 100)
	out := jsonPipe(t, js, 9, 0)
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	spec := pipeline.Job{ID: 2, Inputs: []int{1}, Outputs: []int{9}, Exec: &pipeline.Exec{Path: "./decimate.py", SQN: true,
		Params: []string{"--every", "100", "--gate", gate, "--gate-after", "70"}}}
	_, run := execTask(t, js, "decimate.py", spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
	done := make(chan error, 1)
	go func() { done <- run() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, in.Stream, in.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var acked uint64
	for acked < 70-sqnAckWindow {
		select {
		case <-tick.C:
		case err := <-done:
			t.Fatalf("the job ended (%v) before the program was let go", err)
		case <-ctx.Done():
			t.Fatalf("the input's ack floor is %d with the program waiting after 70 rounds, want at least %d", acked, 70-sqnAckWindow)
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		acked = ci.AckFloor.Consumer
	}
	st, err := js.Stream(ctx, out.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if si, err := st.Info(ctx); err != nil || si.State.Msgs != 0 {
		t.Fatalf("output stream: %+v, %v; want it empty while the program waits", si.State, err)
	}
	t.Logf("%d of the 70 rounds read acknowledged, none answered", acked)
	g, err := os.OpenFile(gate, os.O_WRONLY, 0) // returns once the program has the gate open
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	got, end, _ := readAll(t, js, out)
	if s, v := sqnHeads(got), values(t, got); s != "100/00" || v != "100" || end != 100 {
		t.Fatalf("out %s = %s ending at %d, want 100/00 = 100 ending at 100", s, v, end)
	}
}

// sb4 is a Go connector with head: true that writes head h on its output every round.
type sb4 struct{ h uint32 }

func (j sb4) Run(ctx *job.Context, v any) (any, error) {
	return v, ctx.SetHead(pipeline.NewHead(j.h, 1))
}

// SPEC SB4: its table, a connector with head: true fed blocks 10 (head h_in), 11 and 12: the out
// block 10 has the head of the table and the later ones the job's head; a finished bit, the input's
// or the job's own, ends the job after block 10. A Go job cannot write the reset bit (SetHead
// refuses it) and an executable's corrupted bit skips its round, so row 1 is 10100000 for Go and
// 01100000 (reset forced off) for the program.
func TestAConnectorWithHeadWritesItsHeadThroughTheEngineAndEndsOnAFinishedBit(t *testing.T) {
	rows := []struct {
		in, goJob, execJob uint32
		want               string
	}{
		{0b00000000, 0b10100000, 0, "10/a0"},
		{0b00000000, 0, 0b01100000, "10/20"},
		{0b10100000, 0, 0, "10/a0"},
		{0b01000000, 0, 0, "10/40 11/00 12/00"},
		{0b00000000, 0b00000001, 0b00000001, "10/01 11/01 12/01"},
		{0b10000000, 0b00000011, 0b00000011, "10/83 11/03 12/03"},
	}
	for i, row := range rows {
		for _, kind := range []string{"go", "exec"} {
			h := row.goJob
			if kind == "exec" {
				h = row.execJob
			}
			if (row.goJob != row.execJob) && h == 0 {
				continue // the row of the other kind
			}
			t.Run(fmt.Sprintf("row%d_%s", i+1, kind), func(t *testing.T) {
				_, js := startJetStream(t)
				in := jsonPipe(t, js, 1, 0)
				fill(t, js, in, span(10, 12, map[uint64]uint32{10: row.in}), 12)
				out := jsonPipe(t, js, 9, 0)
				spec := pipeline.Job{ID: 2, Inputs: []int{1}, Outputs: []int{9}, Head: true}
				var tk *task
				if kind == "go" {
					spec.Type = "sb4"
					tk = runGoJob(t, js, sb4{h: h}, spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
				} else {
					spec.Exec = &pipeline.Exec{Path: "./proto.py", Params: []string{"--head", "--out-head", strconv.Itoa(int(h))}}
					tk = runExecJob(t, js, spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
				}
				got, _, _ := readAll(t, js, out) // up to the finished bit
				if s := sqnHeads(got); s != row.want {
					t.Fatalf("h_in %08b h_job %08b: out %s, want %s", row.in, h, s, row.want)
				}
				// Nothing was written after it either.
				if n := tk.stats.snapshot().BlocksOut; n != uint64(len(got)) {
					t.Fatalf("h_in %08b h_job %08b: %d blocks written, want %d", row.in, h, n, len(got))
				}
			})
		}
	}
}

func TestWithinInputsFindsAnAnswerThatIsAnInputsPayloadOrPartOfOne(t *testing.T) {
	a, b := []byte("first input"), []byte("second input, two blocks")
	in := [][][]byte{{a}, {b[:6], b[6:]}, nil}
	for _, c := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"an input's payload", a, true},
		{"a block of the second input", b[6:], true},
		{"part of a payload", a[2:5], true},
		{"across two blocks of one buffer", b[4:10], false},
		{"a copy", []byte("first input"), false},
		{"empty", a[:0], false},
	} {
		if got := withinInputs(c.p, in); got != c.want {
			t.Errorf("%s: withinInputs %v, want %v", c.name, got, c.want)
		}
	}
}
