package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// inMsg is one NATS message of an input pipe, split into its blocks.
type inMsg struct {
	blocks []codec.Block
	end    bool // an end-of-stream marker: no blocks follow
	msg    jetstream.Msg
	gap    uint64 // messages the stream dropped (max_queue) just before this one
	err    error
}

// input is one input pipe of a running job: a goroutine reads its consumer into ch, and the job's
// goroutine takes blocks from it one at a time.
type input struct {
	k    int
	pipe protocol.PipeBinding
	ch   chan inMsg

	// Owned by the job's goroutine.
	cur     inMsg
	pos     int
	ended   bool
	lastSQN uint64
	done    []jetstream.Msg // messages whose every block is consumed, to acknowledge

	round      uint64 // round being assembled
	roundBlock []codec.Block
}

func newInput(k int, pipe protocol.PipeBinding) *input {
	return &input{k: k, pipe: pipe, ch: make(chan inMsg, 4)}
}

// read is the input's goroutine: it pulls messages from the pipe's durable consumer until ctx
// ends. In-flight messages are bounded by the consumer's MaxAckPending and by ch, so a slow job
// pushes back on the stream instead of growing memory.
func (in *input) read(ctx context.Context, js jetstream.JetStream) {
	defer close(in.ch)
	cons, err := js.Consumer(ctx, in.pipe.Stream, in.pipe.Consumer)
	if err != nil {
		in.deliver(ctx, inMsg{err: fmt.Errorf("input pipe %d: consumer %s/%s: %w", in.pipe.ID, in.pipe.Stream, in.pipe.Consumer, err)})
		return
	}
	// Gaps in the stream sequences delivered are blocks the stream dropped (max_queue): acked
	// messages leave a work-queue stream, so nothing else makes a gap.
	var lastStreamSeq uint64
	info, err := cons.Info(ctx)
	if err != nil {
		in.deliver(ctx, inMsg{err: fmt.Errorf("input pipe %d: consumer info: %w", in.pipe.ID, err)})
		return
	}
	lastStreamSeq = info.AckFloor.Stream
	it, err := cons.Messages(jetstream.PullMaxMessages(pullBatch(in.pipe)))
	if err != nil {
		in.deliver(ctx, inMsg{err: fmt.Errorf("input pipe %d: %w", in.pipe.ID, err)})
		return
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return
			}
			in.deliver(ctx, inMsg{err: fmt.Errorf("input pipe %d: %w", in.pipe.ID, err)})
			return
		}
		im := in.parse(m)
		if md, err := m.Metadata(); err == nil {
			if md.Sequence.Stream > lastStreamSeq+1 {
				im.gap = md.Sequence.Stream - lastStreamSeq - 1
			}
			if md.Sequence.Stream > lastStreamSeq {
				lastStreamSeq = md.Sequence.Stream
			}
		}
		if !in.deliver(ctx, im) || im.err != nil {
			return
		}
	}
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
func (in *input) parse(m jetstream.Msg) inMsg {
	im := inMsg{msg: m}
	h := m.Headers()
	if v := h.Get(codec.EndHeader); v != "" {
		im.end = true
		return im
	}
	data := m.Data()
	if v := h.Get(codec.BatchHeader); v != "" {
		n, _ := strconv.Atoi(v)
		im.blocks = make([]codec.Block, 0, n)
		err := codec.SplitBatch(data, in.pipe.HeadSize, func(b codec.Block) error {
			im.blocks = append(im.blocks, b)
			return nil
		})
		if err != nil {
			im.err = fmt.Errorf("input pipe %d: malformed batch: %w", in.pipe.ID, err)
		}
		return im
	}
	b, err := codec.DecodeBlock(data, in.pipe.HeadSize)
	if err != nil {
		im.err = fmt.Errorf("input pipe %d: malformed block: %w", in.pipe.ID, err)
		return im
	}
	im.blocks = []codec.Block{b}
	return im
}

// next returns the input's next block, waiting for one; ok is false once the input has ended.
func (in *input) next(ctx context.Context, st *stats) (codec.Block, bool, error) {
	for {
		if in.ended {
			return codec.Block{}, false, nil
		}
		if in.cur.msg != nil && in.pos < len(in.cur.blocks) {
			b := in.cur.blocks[in.pos]
			in.pos++
			if in.pos == len(in.cur.blocks) {
				in.done = append(in.done, in.cur.msg)
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
			st.queueDrops.Add(m.gap)
			in.cur, in.pos = m, 0
			if m.end {
				in.done = append(in.done, m.msg)
				in.ended = true
			} else if len(m.blocks) == 0 {
				in.done = append(in.done, m.msg)
			}
		case <-ctx.Done():
			return codec.Block{}, false, ctx.Err()
		}
	}
}

// nextRound assembles this input's next complete round at or after minRound: block_count blocks
// whose SQNs lie in bc·(r−1)+1 … bc·r. Late, duplicate and incomplete blocks are dropped and
// counted. It returns the round number, or ok false when the input has ended.
func (in *input) nextRound(ctx context.Context, minRound uint64, st *stats) (uint64, bool, error) {
	bc := uint64(max(in.pipe.BlockCount, 1))
	if len(in.roundBlock) == int(bc) && in.round >= minRound {
		return in.round, true, nil
	}
	if len(in.roundBlock) == int(bc) {
		st.stale.Add(bc) // a complete round the other inputs have passed
		in.roundBlock = in.roundBlock[:0]
	}
	for {
		b, ok, err := in.next(ctx, st)
		if err != nil || !ok {
			return 0, false, err
		}
		st.blocksIn.Add(1)
		_, reset, _ := codec.Flags(b.Head, in.pipe.HeadSize)
		if reset {
			in.lastSQN = 0
		}
		if b.SQN <= in.lastSQN || b.SQN == 0 {
			st.stale.Add(1)
			continue
		}
		in.lastSQN = b.SQN
		r := (b.SQN + bc - 1) / bc
		if r < minRound {
			st.stale.Add(1)
			continue
		}
		if r != in.round {
			st.stale.Add(uint64(len(in.roundBlock)))
			in.round, in.roundBlock = r, in.roundBlock[:0]
		}
		in.roundBlock = append(in.roundBlock, b)
		if len(in.roundBlock) == int(bc) {
			return r, true, nil
		}
	}
}

// takeRound hands over the assembled round and clears it.
func (in *input) takeRound() []codec.Block {
	blocks := in.roundBlock
	in.roundBlock = nil
	return blocks
}
