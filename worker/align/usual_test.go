package align

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/marvelo/marvelo/codec"
)

// TestUsualThenNextGivesTheRoundsAndCountsOfNextAlone plays random streams — gaps, duplicates,
// late blocks, resets, SQN 0, corrupted and finished heads, an end marker or an error — to two
// checkers of one job: one assembles every round with Next, the other asks Usual first and
// calls Next only when the round is not the usual one, as the worker does. Both must give the
// same rounds (SQN, head, blocks, dummies), the same counters, the same held block after every
// round and the same end.
func TestUsualThenNextGivesTheRoundsAndCountsOfNextAlone(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 15))
		inputs := []Input{{Pipe: 1, FixedSize: rng.IntN(2) == 0, ZeroPayload: []byte{0}, HeadSize: 1 + rng.IntN(2)}}
		if rng.IntN(3) == 0 {
			inputs[0].Dummy = DummyPrev
		}
		if rng.IntN(3) == 0 { // an async input beside it: never taken, no part of the round
			inputs = append(inputs, Input{Pipe: 2, Async: true})
		}
		stream, end := randomStream(rng)
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			alone, usual := mustNew(t, inputs, 1), mustNew(t, inputs, 1)
			fa, fu := newStreamFeed(stream, end), newStreamFeed(stream, end)
			for i := 0; ; i++ {
				want, wantOK, wantErr := alone.Next(fa.take)
				got, gotOK, gotErr := usualRound(usual, fu.take)
				if gotOK != wantOK || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("round %d: Usual then Next gave ok %v, error %v; Next alone ok %v, error %v", i, gotOK, gotErr, wantOK, wantErr)
				}
				if !wantOK {
					break
				}
				if !reflect.DeepEqual(got, want.Clone()) {
					t.Fatalf("round %d: Usual then Next gave %+v, Next alone %+v", i, got, want)
				}
				wantHeld, wantHas := alone.Held(0)
				gotHeld, gotHas := usual.Held(0)
				if gotHas != wantHas || !reflect.DeepEqual(gotHeld, wantHeld) {
					t.Fatalf("round %d: held %v %+v, Next alone held %v %+v", i, gotHas, gotHeld, wantHas, wantHeld)
				}
				if !reflect.DeepEqual(usual.Stats(), alone.Stats()) {
					t.Fatalf("round %d: counters %+v, Next alone %+v", i, usual.Stats(), alone.Stats())
				}
			}
			if !reflect.DeepEqual(usual.Stats(), alone.Stats()) || fu.pos != fa.pos {
				t.Fatalf("at the end: counters %+v, taken %d; Next alone %+v, taken %d", usual.Stats(), fu.pos, alone.Stats(), fa.pos)
			}
		})
	}
}

// usualRound is a round as the worker gets it: Usual's, made into a Round, or else Next's.
func usualRound(c *Checker, take TakeFunc) (Round, bool, error) {
	if b, head, ok := c.Usual(take); ok {
		r := Round{SQN: b.SQN, Head: head, Blocks: make([][]codec.Block, len(c.in)), Dummy: make([][]bool, len(c.in))}
		r.Blocks[c.single], r.Dummy[c.single] = []codec.Block{b}, []bool{false}
		return r, true, nil
	}
	r, ok, err := c.Next(take)
	if !ok || err != nil {
		return Round{}, ok, err
	}
	return r.Clone(), true, nil
}

// randomStream returns a stream of mostly consecutive blocks with every kind of disorder, and
// how it ends: an end marker's SQN (0: none), or an error.
func randomStream(rng *rand.Rand) ([]codec.Block, streamEnd) {
	var s []codec.Block
	sqn := uint64(1 + rng.IntN(3)) // a late join, sometimes
	for range 20 + rng.IntN(200) {
		b := codec.Block{SQN: sqn, Payload: []byte{byte(sqn), byte(rng.IntN(256))}}
		switch r := rng.IntN(100); {
		case r < 5: // a gap
			b.SQN += uint64(1 + rng.IntN(4))
		case r < 9: // a duplicate or late block
			b.SQN -= uint64(min(int(sqn)-1, rng.IntN(3)))
		case r < 11: // a reset, with the bit or with SQN 1
			if rng.IntN(2) == 0 {
				b.Head |= hRst
			}
			b.SQN = 1
		case r < 12:
			b.SQN = 0
		case r < 15:
			b.Head |= hCor
		case r < 16:
			b.Head |= hFin
		}
		s = append(s, b)
		sqn = max(b.SQN, 1) + 1
	}
	var end streamEnd
	switch rng.IntN(3) {
	case 0:
		end.sqn = sqn + uint64(rng.IntN(3))
	case 1:
		end.err = errors.New("the pipe failed")
	}
	return s, end
}

// streamEnd is how a random stream ends.
type streamEnd struct {
	sqn uint64
	err error
}

// streamFeed hands out one input's stream, then its end.
type streamFeed struct {
	blocks []codec.Block
	end    streamEnd
	pos    int
}

func newStreamFeed(blocks []codec.Block, end streamEnd) *streamFeed {
	return &streamFeed{blocks: blocks, end: end}
}

func (f *streamFeed) take(k int) (codec.Block, bool, error) {
	if k != 0 {
		return codec.Block{}, false, fmt.Errorf("take(%d): only input 0 is synchronous", k)
	}
	if f.pos >= len(f.blocks) {
		f.pos++
		if f.end.err != nil {
			return codec.Block{}, false, f.end.err
		}
		return codec.Block{SQN: f.end.sqn}, false, nil
	}
	f.pos++
	return f.blocks[f.pos-1], true, nil
}
