package align

import (
	"encoding/binary"
	"fmt"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
)

// Heads of SPEC §9, 1-byte.
const (
	hCor = 0x80
	hRst = 0x40
	hFin = 0x20
)

// feed plays the inputs of a job: take(k) hands out input k's blocks in order and then reports
// its end, with endHint[k] as the end marker's SQN if set.
type feed struct {
	t       *testing.T
	blocks  [][]codec.Block
	pos     []int
	endHint []uint64
}

func newFeed(t *testing.T, inputs ...[]codec.Block) *feed {
	return &feed{t: t, blocks: inputs, pos: make([]int, len(inputs)), endHint: make([]uint64, len(inputs))}
}

func (f *feed) take(k int) (codec.Block, bool, error) {
	if f.blocks[k] == nil {
		f.t.Fatalf("take(%d) called for an input the checker must not read", k)
	}
	if f.pos[k] >= len(f.blocks[k]) {
		return codec.Block{SQN: f.endHint[k]}, false, nil
	}
	b := f.blocks[k][f.pos[k]]
	f.pos[k]++
	return b, true, nil
}

// data is the 8-byte payload of SPEC §9.3's tests: a per-input base plus the SQN, so that a prev
// dummy shows which block it repeats.
func data(base, sqn uint64) []byte { return binary.BigEndian.AppendUint64(nil, base+sqn) }

// blocks returns blocks with the given SQNs on input base, head 0 except for heads[sqn].
func blocks(base uint64, sqns []uint64, heads map[int]uint32) []codec.Block {
	out := make([]codec.Block, len(sqns))
	for i, s := range sqns {
		out[i] = codec.Block{SQN: s, Head: heads[i], Payload: data(base, s)}
	}
	return out
}

// span returns from, from+1, …, to.
func span(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func cat(parts ...[]uint64) []uint64 {
	var s []uint64
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

// bases of the three inputs, as in the original test (1234, 12345, 123456).
var bases = []uint64{1234, 12345, 123456}

// fixed returns n synchronous inputs of block size 1 (the original's BasePipe): zero dummies of
// one zero byte.
func fixed(n int) []Input {
	in := make([]Input, n)
	for k := range in {
		in[k] = Input{Pipe: k + 1, FixedSize: true, ZeroPayload: []byte{0}}
	}
	return in
}

// drain runs the checker until it ends and returns clones of every round.
func drain(t *testing.T, c *Checker, f *feed) []Round {
	t.Helper()
	var rounds []Round
	for {
		r, ok, err := c.Next(f.take)
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if !ok {
			return rounds
		}
		rounds = append(rounds, r.Clone())
		if len(rounds) > 10000 {
			t.Fatal("checker does not end")
		}
	}
}

func mustNew(t *testing.T, inputs []Input, headSize int) *Checker {
	t.Helper()
	c, err := New(inputs, headSize)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// trace shows input k's blocks over the rounds: "1 2 D3 4", D marking dummies.
func trace(rounds []Round, k int) string {
	var parts []string
	for _, r := range rounds {
		for i, b := range r.Blocks[k] {
			p := fmt.Sprint(b.SQN)
			if r.Dummy[k][i] {
				p = "D" + p
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// roundSQNs shows the rounds' SQNs: "1 2 3".
func roundSQNs(rounds []Round) string {
	parts := make([]string, len(rounds))
	for i, r := range rounds {
		parts[i] = fmt.Sprint(r.SQN)
	}
	return strings.Join(parts, " ")
}

// roundHeads shows the rounds' heads in hex: "40 0 80".
func roundHeads(rounds []Round) string {
	parts := make([]string, len(rounds))
	for i, r := range rounds {
		parts[i] = fmt.Sprintf("%x", r.Head)
	}
	return strings.Join(parts, " ")
}

// str joins SQNs as trace writes real blocks: "1 2 3".
func str(sqns []uint64) string {
	parts := make([]string, len(sqns))
	for i, s := range sqns {
		parts[i] = fmt.Sprint(s)
	}
	return strings.Join(parts, " ")
}
