package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
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

// TestSB6: entries with varying SQNs (3, 4, 7, 8, 9, 15) and head 10000000 through a job with
// 10 outputs that writes 11000000 on each: every output carries the round's SQN unchanged, with
// head 10000000 (the job cannot set reset), and dummies (corrupted) where SQNs are missing. With
// Finish, the first round ends the job: one block per output, with the finished bit.
func TestSB6(t *testing.T) {
	sqns := []uint64{3, 4, 7, 8, 9, 15}
	for _, finish := range []bool{false, true} {
		t.Run(fmt.Sprintf("finish=%v", finish), func(t *testing.T) {
			_, js := startJetStream(t)
			in := enginePipe(t, js, 1, 0)
			var blocks []codec.Block
			for _, s := range sqns {
				blocks = append(blocks, codec.Block{SQN: s, Head: 0b10000000})
			}
			fill(t, js, in, blocks, 15)
			var outs []protocol.PipeBinding
			for k := range 10 {
				outs = append(outs, enginePipe(t, js, 10+k, 0))
			}
			spec := pipeline.Job{ID: 2, Type: "sb6", Inputs: []int{1}, Outputs: []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, Head: true}
			runGoJob(t, js, &sb6{finish: finish}, spec, []protocol.PipeBinding{in}, outs)
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
