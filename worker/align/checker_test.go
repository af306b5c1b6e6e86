package align

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
)

// The tests of SPEC §9.3 use 3 inputs of block size 1 carrying 8-byte data, as the original's
// test_remote_synchronization.py. The original's "outgoing queue" of input k is trace(rounds, k);
// its "connection queue" entries (SQN, HEAD) are the rounds' (SQN, Head): the checker pushed one
// entry per round, here Next returns one Round per round.

// SPEC SQN1: every input carries 1…99 with head 0: the outputs equal the inputs exactly, nothing
// extra is emitted.
func TestCompleteInputsComeOutAsTheirRoundsUnchangedWithNothingExtra(t *testing.T) {
	var ins [][]codec.Block
	for k := range 3 {
		ins = append(ins, blocks(bases[k], span(1, 99), nil))
	}
	c := mustNew(t, fixed(3), 1)
	rounds := drain(t, c, newFeed(t, ins...))
	if len(rounds) != 99 {
		t.Fatalf("%d rounds, want 99", len(rounds))
	}
	for i, r := range rounds {
		for k := range 3 {
			if len(r.Blocks[k]) != 1 || r.Dummy[k][0] || !sameBlock(r.Blocks[k][0], ins[k][i]) {
				t.Fatalf("round %d input %d: %+v, want %+v", i+1, k, r.Blocks[k], ins[k][i])
			}
		}
	}
	for k, s := range c.Stats().Inputs {
		if s != (InputStats{Blocks: 99}) {
			t.Errorf("input %d stats %+v", k, s)
		}
	}
}

func sameBlock(a, b codec.Block) bool {
	return a.SQN == b.SQN && a.Head == b.Head && bytes.Equal(a.Payload, b.Payload)
}

// SPEC SQN2: random loss per input. Each emitted block is the next real block not yet emitted (in
// order) or a dummy whose SQN is its 1-based position, head 0x80, one zero byte; nothing else. The
// 10 % case (seed 7) has SQN 1 with the reset bit on every input and loses later blocks; the 50 %
// case (seed 5) has no reset bit, may lose any of 1…99, and ends with 100 on every input. The seeds
// drive Go's PCG, so the lost blocks differ from the original's; the property is the same.
func TestUnderRandomLossEachSlotIsTheNextRealBlockOrADummyAtItsPosition(t *testing.T) {
	for _, tc := range []struct {
		name       string
		seed       uint64
		loss       float64
		resetFirst bool
	}{
		{"10% loss, seed 7", 7, 10, true},
		{"50% loss, seed 5", 5, 50, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sent := lossy(tc.seed, tc.loss, tc.resetFirst)
			rounds := drain(t, mustNew(t, fixed(3), 1), newFeed(t, sent...))
			last := uint64(1 << 63) // rounds end with the shortest input
			for _, s := range sent {
				last = min(last, s[len(s)-1].SQN)
			}
			if uint64(len(rounds)) != last {
				t.Fatalf("%d rounds, want %d", len(rounds), last)
			}
			for k := range sent {
				checkLossy(t, rounds, k, sent[k], last)
			}
		})
	}
}

// lossy makes the three inputs of SQN-2.
func lossy(seed uint64, loss float64, resetFirst bool) [][]codec.Block {
	rng := rand.New(rand.NewPCG(seed, seed))
	sent := make([][]codec.Block, 3)
	first := uint64(1)
	if resetFirst {
		for k := range sent {
			sent[k] = append(sent[k], codec.Block{SQN: 1, Head: hRst, Payload: data(bases[k], 1)})
		}
		first = 2
	}
	for i := first; i <= 99; i++ {
		for k := range sent {
			if !(rng.Float64()*100 < loss) {
				sent[k] = append(sent[k], codec.Block{SQN: i, Payload: data(bases[k], i)})
			}
		}
	}
	if !resetFirst {
		for k := range sent {
			sent[k] = append(sent[k], codec.Block{SQN: 100, Payload: data(bases[k], 100)})
		}
	}
	return sent
}

func checkLossy(t *testing.T, rounds []Round, k int, sent []codec.Block, last uint64) {
	t.Helper()
	next := 0
	for i, r := range rounds {
		pos := uint64(i + 1)
		b := r.Blocks[k][0]
		switch {
		case r.Dummy[k][0]:
			if b.SQN != pos || b.Head != hCor || !bytes.Equal(b.Payload, []byte{0}) {
				t.Fatalf("input %d position %d: bad dummy %+v", k, pos, b)
			}
		case next < len(sent) && sameBlock(b, sent[next]) && b.SQN == pos:
			next++
		default:
			t.Fatalf("input %d position %d: %+v is neither the next real block nor a dummy", k, pos, b)
		}
	}
	for next < len(sent) && sent[next].SQN <= last {
		t.Fatalf("input %d: real block %d never emitted", k, sent[next].SQN)
	}
}

// SPEC SQN3: a gap 1,3,4 gives 1, dummy 2 (head 0x80, block-size zeros), 3, 4; the connection
// entries are (1,0), (2,0x80), (3,0), (4,0).
func TestAGapIsFilledByACorruptedDummyOfZerosWithTheMissingSQN(t *testing.T) {
	f := newFeed(t, blocks(bases[0], []uint64{1, 3, 4}, nil), blocks(bases[1], span(1, 4), nil), blocks(bases[2], span(1, 4), nil))
	rounds := drain(t, mustNew(t, fixed(3), 1), f)
	if got := trace(rounds, 0); got != "1 D2 3 4" {
		t.Errorf("input 0: %s", got)
	}
	if d := rounds[1].Blocks[0][0]; d.Head != hCor || !bytes.Equal(d.Payload, []byte{0}) {
		t.Errorf("dummy %+v, want head 0x80 and one zero byte", d)
	}
	if got := roundSQNs(rounds) + " / " + roundHeads(rounds); got != "1 2 3 4 / 0 80 0 0" {
		t.Errorf("connection entries %s", got)
	}
}

// SPEC SQN4: a late join: first SQN 5, then 6 and 8 → 5, 6, dummy 7, 8; connection SQNs 5…8.
func TestALateJoinStartsAtTheFirstSQNOfferedAndFillsLaterGaps(t *testing.T) {
	var ins [][]codec.Block
	for k := range 3 {
		ins = append(ins, blocks(bases[k], []uint64{5, 6, 8}, nil))
	}
	rounds := drain(t, mustNew(t, fixed(3), 1), newFeed(t, ins...))
	for k := range 3 {
		if got := trace(rounds, k); got != "5 6 D7 8" {
			t.Errorf("input %d: %s", k, got)
		}
	}
	if got := roundSQNs(rounds); got != "5 6 7 8" {
		t.Errorf("connection SQNs %s", got)
	}
}

// SPEC SQN5: a stale duplicate 1,2,3,2,4,5 gives 1,2,3,4,5: the 2 is dropped and 4 is not lost (the
// original lost it). Also when only one input repeats, and when several stale blocks follow.
func TestAStaleDuplicateIsDroppedAndTheBlockAfterItIsKept(t *testing.T) {
	for _, tc := range []struct {
		name string
		sqns [3][]uint64
	}{
		{"every input", [3][]uint64{{1, 2, 3, 2, 4, 5}, {1, 2, 3, 2, 4, 5}, {1, 2, 3, 2, 4, 5}}},
		{"one input", [3][]uint64{span(1, 5), {1, 2, 3, 2, 4, 5}, span(1, 5)}},
		{"a run of stale blocks", [3][]uint64{span(1, 5), {1, 2, 3, 2, 3, 2, 3, 4, 5}, span(1, 5)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ins [][]codec.Block
			for k := range 3 {
				ins = append(ins, blocks(bases[k], tc.sqns[k], nil))
			}
			c := mustNew(t, fixed(3), 1)
			rounds := drain(t, c, newFeed(t, ins...))
			for k := range 3 {
				if got := trace(rounds, k); got != "1 2 3 4 5" {
					t.Errorf("input %d: %s", k, got)
				}
				if s := c.Stats().Inputs[k]; s.Stale != uint64(len(tc.sqns[k])-5) {
					t.Errorf("input %d: %d stale, want %d", k, s.Stale, len(tc.sqns[k])-5)
				}
			}
		})
	}
}

// SPEC SQN6: a reset on every input in the same round: 1…9, [rst]1, 2…10 → each output 1…10 (10 a
// dummy), then 1…10. The reset costs one dummy round; the round after it carries the reset bit.
func TestAResetOnEveryInputAtOnceCostsOneDummyRoundAndTheNextRoundCarriesTheResetBit(t *testing.T) {
	var ins [][]codec.Block
	for k := range 3 {
		ins = append(ins, blocks(bases[k], cat(span(1, 9), []uint64{1}, span(2, 10)), map[int]uint32{9: hRst}))
	}
	c := mustNew(t, fixed(3), 1)
	rounds := drain(t, c, newFeed(t, ins...))
	want := str(span(1, 9)) + " D10 " + str(span(1, 10))
	for k := range 3 {
		if got := trace(rounds, k); got != want {
			t.Errorf("input %d: %s\nwant %s", k, got, want)
		}
		if s := c.Stats().Inputs[k]; s.Resets != 1 || s.Dummies != 1 {
			t.Errorf("input %d stats %+v", k, s)
		}
	}
	if got := roundSQNs(rounds); got != str(span(1, 10))+" "+str(span(1, 10)) {
		t.Errorf("round SQNs %s", got)
	}
	if got := roundHeads(rounds); got != "0 0 0 0 0 0 0 0 0 80 40 0 0 0 0 0 0 0 0 0" {
		t.Errorf("round heads %s", got)
	}
}

// SPEC SQN7: resets in different rounds: input 0 resets at round 10 while inputs 1 and 2 send 10
// and then reset → each output gives SQNs 1…11, then 1…9.
func TestResetsInDifferentRoundsRestartTheRoundsTogetherAfterDummies(t *testing.T) {
	f := newFeed(t,
		blocks(bases[0], cat(span(1, 9), []uint64{1}, span(2, 9)), map[int]uint32{9: hRst}),
		blocks(bases[1], cat(span(1, 10), []uint64{1}, span(2, 9)), map[int]uint32{10: hRst}),
		blocks(bases[2], cat(span(1, 10), []uint64{1}, span(2, 9)), map[int]uint32{10: hRst}),
	)
	rounds := drain(t, mustNew(t, fixed(3), 1), f)
	want := []string{
		str(span(1, 9)) + " D10 D11 " + str(span(1, 9)),
		str(span(1, 10)) + " D11 " + str(span(1, 9)),
		str(span(1, 10)) + " D11 " + str(span(1, 9)),
	}
	for k := range 3 {
		if got := trace(rounds, k); got != want[k] {
			t.Errorf("input %d: %s\nwant %s", k, got, want[k])
		}
	}
	if got := roundSQNs(rounds); got != str(span(1, 11))+" "+str(span(1, 9)) {
		t.Errorf("round SQNs %s", got)
	}
}

// When only one input resets, it gets dummies every round until the others reset too; here they
// never do.
func TestResetOfOneInput(t *testing.T) {
	f := newFeed(t,
		blocks(bases[0], cat(span(1, 3), span(1, 5)), map[int]uint32{3: hRst}),
		blocks(bases[1], span(1, 8), nil),
	)
	c := mustNew(t, fixed(2), 1)
	rounds := drain(t, c, f)
	if got := trace(rounds, 0); got != "1 2 3 D4 D5 D6 D7 D8" {
		t.Errorf("input 0: %s", got)
	}
	if got := trace(rounds, 1); got != str(span(1, 8)) {
		t.Errorf("input 1: %s", got)
	}
	// The held reset block is never delivered; input 1 ended the rounds.
	if s := c.Stats().Inputs[0]; s.Resets != 1 || s.Dummies != 5 || s.Unused != 1 {
		t.Errorf("input 0 stats %+v", s)
	}
}

// An SQN 1 out of step restarts the sequence even without the reset bit (the original does so
// after a stale block); in step it is an ordinary first block.
func TestSQNOneRestarts(t *testing.T) {
	var ins [][]codec.Block
	for k := range 2 {
		ins = append(ins, blocks(bases[k], cat(span(1, 4), span(1, 3)), nil))
	}
	rounds := drain(t, mustNew(t, fixed(2), 1), newFeed(t, ins...))
	for k := range 2 {
		if got := trace(rounds, k); got != "1 2 3 4 D5 1 2 3" {
			t.Errorf("input %d: %s", k, got)
		}
	}
}

// SPEC SQN8: prev mode, input 0 missing 3, input 1 missing 5, input 2 missing 7: each missing slot
// is a block with that SQN, head 0x80 and the previous block's data.
func TestPrevDummiesCarryThePreviousBlocksDataAndTheCorruptedBit(t *testing.T) {
	miss := []uint64{3, 5, 7}
	var ins [][]codec.Block
	inputs := fixed(3)
	for k := range 3 {
		var sqns []uint64
		for s := uint64(1); s <= 9; s++ {
			if s != miss[k] {
				sqns = append(sqns, s)
			}
		}
		ins = append(ins, blocks(bases[k], sqns, map[int]uint32{0: hRst}))
		inputs[k].Dummy = DummyPrev
	}
	rounds := drain(t, mustNew(t, inputs, 1), newFeed(t, ins...))
	if len(rounds) != 9 {
		t.Fatalf("%d rounds, want 9", len(rounds))
	}
	for k := range 3 {
		d := rounds[miss[k]-1].Blocks[k][0]
		want := codec.Block{SQN: miss[k], Head: hCor, Payload: data(bases[k], miss[k]-1)}
		if !rounds[miss[k]-1].Dummy[k][0] || !sameBlock(d, want) {
			t.Errorf("input %d: slot %d is %+v, want dummy %+v", k, miss[k], d, want)
		}
	}
}

// SPEC SQN9: a self-delimiting codec forces prev dummies, for that input only (the original
// switched every input). Before any real block, a prev dummy is the zero payload.
func TestASelfDelimitingCodecForcesPrevDummiesOnItsOwnInputOnly(t *testing.T) {
	inputs := fixed(3)
	inputs[1].FixedSize, inputs[1].ZeroPayload = false, []byte{0xf6} // cbor: its zero is null
	f := newFeed(t,
		blocks(bases[0], []uint64{1, 2, 4, 5, 6}, nil),
		blocks(bases[1], []uint64{2, 4, 5, 6}, nil),
		blocks(bases[2], []uint64{1, 2, 4, 6}, nil),
	)
	rounds := drain(t, mustNew(t, inputs, 1), f)
	for _, tc := range []struct {
		k    int
		sqn  uint64
		want []byte
	}{
		{0, 3, []byte{0}},
		{1, 1, []byte{0xf6}},
		{1, 3, data(bases[1], 2)},
		{2, 3, []byte{0}},
		{2, 5, []byte{0}},
	} {
		r := rounds[tc.sqn-1]
		if d := r.Blocks[tc.k][0]; !r.Dummy[tc.k][0] || d.SQN != tc.sqn || !bytes.Equal(d.Payload, tc.want) {
			t.Errorf("input %d slot %d: %+v (dummy %v), want payload %x", tc.k, tc.sqn, d, r.Dummy[tc.k][0], tc.want)
		}
	}
}

// SPEC SQN10: 99 rounds with a reset-flagged first round: the connection heads are 0x40 for round
// 1, then 0 — the or per round.
func TestOnlyTheFirstRoundOfAResetStreamCarriesTheResetBitInItsHead(t *testing.T) {
	var ins [][]codec.Block
	for k := range 3 {
		ins = append(ins, blocks(bases[k], span(1, 99), map[int]uint32{0: hRst}))
	}
	rounds := drain(t, mustNew(t, fixed(3), 1), newFeed(t, ins...))
	want := "40" + strings.Repeat(" 0", 98)
	if got := roundHeads(rounds); got != want {
		t.Errorf("heads %s", got)
	}
}

// SPEC SQN12: a finished bit (0x20) in a block. The original's sink checker set the finish event,
// its connector checker only passed the bit in the connection head. Here the checker never decides:
// the bit is in the head of the round that carries it, and the worker ends sinks and connectors
// alike after delivering that round (SPEC §4.8, Go). The checker itself goes on.
func TestAFinishedBitIsInTheHeadOfItsRoundAndTheCheckerGoesOn(t *testing.T) {
	f := newFeed(t,
		blocks(bases[0], span(1, 5), nil),
		blocks(bases[1], span(1, 5), map[int]uint32{2: hFin}),
		blocks(bases[2], span(1, 5), nil),
	)
	rounds := drain(t, mustNew(t, fixed(3), 1), f)
	if got := roundHeads(rounds); got != "0 0 20 0 0" {
		t.Errorf("heads %s", got)
	}
}

// SPEC SQN13: an unknown dummy mode is an error at construction, naming the input.
func TestAnUnknownDummyModeFailsConstructionNamingTheInput(t *testing.T) {
	inputs := fixed(3)
	inputs[1].Pipe, inputs[1].Dummy = 12, "test"
	_, err := New(inputs, 1)
	if !errors.Is(err, ErrDummyMode) || !strings.Contains(err.Error(), "input 1 (pipe 12)") {
		t.Errorf("error %v", err)
	}
}

// SPEC SQN14: heads accumulate by or: 128, 128 → 128; then 0 → 128; then 152 → 152.
func TestTheRoundHeadIsTheOrOfTheInputHeads(t *testing.T) {
	heads := []uint32{128, 128, 0, 152}
	want := []uint32{128, 128, 128, 152}
	for n := 1; n <= 4; n++ {
		var ins [][]codec.Block
		for k := range n {
			ins = append(ins, []codec.Block{{SQN: 1, Head: heads[k], Payload: []byte{1}}})
		}
		rounds := drain(t, mustNew(t, fixed(n), 1), newFeed(t, ins...))
		if rounds[0].Head != want[n-1] {
			t.Errorf("after %v: head %d, want %d", heads[:n], rounds[0].Head, want[n-1])
		}
	}
}

// SPEC SQN15: an async input after the synchronous ones gets no dummies, is never read by the
// checker, and the first round's SQN is 1 (the original gave 0 and a spurious dummy).
func TestAnAsyncInputGetsNoDummiesIsNeverReadAndRoundsStartAtSQN1(t *testing.T) {
	inputs := append(fixed(2), Input{Async: true, BlockCount: 3, Dummy: "ignored for async"})
	f := newFeed(t, blocks(bases[0], span(1, 3), map[int]uint32{0: hRst}), blocks(bases[1], span(1, 3), map[int]uint32{0: hRst}), nil)
	c := mustNew(t, inputs, 1)
	rounds := drain(t, c, f)
	if got := roundSQNs(rounds) + " / " + roundHeads(rounds); got != "1 2 3 / 40 0 0" {
		t.Errorf("rounds %s", got)
	}
	for _, r := range rounds {
		if r.Blocks[2] != nil || r.Dummy[2] != nil {
			t.Errorf("round %d has blocks for the async input", r.SQN)
		}
	}
	for k, s := range c.Stats().Inputs {
		if s.Dummies != 0 {
			t.Errorf("input %d: %d dummies", k, s.Dummies)
		}
	}
}

// SPEC SQN16: block count 2, SQNs 1…8 → rounds (1,2), (3,4), (5,6), (7,8) with SQNs 1…4 (the
// original lost 2 and 3). Missing slots become dummies; inputs may have different block counts;
// a late join may start in the middle of a round.
func TestABlockCountPutsThatManyBlocksInEachRoundAndRoundsCountUpByOne(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bc     [2]int
		sqns   [2][]uint64
		traces [2]string
		rounds string
	}{
		{"block count 2", [2]int{2, 2}, [2][]uint64{span(1, 8), span(1, 8)},
			[2]string{"1 2 3 4 5 6 7 8", "1 2 3 4 5 6 7 8"}, "1 2 3 4"},
		{"a gap", [2]int{2, 2}, [2][]uint64{{1, 2, 4, 5, 6, 7, 8}, {1, 2, 3, 4, 5, 7, 8}},
			[2]string{"1 2 D3 4 5 6 7 8", "1 2 3 4 5 D6 7 8"}, "1 2 3 4"},
		{"block counts 2 and 1", [2]int{2, 1}, [2][]uint64{span(1, 8), span(1, 4)},
			[2]string{"1 2 3 4 5 6 7 8", "1 2 3 4"}, "1 2 3 4"},
		{"late join in mid-round", [2]int{2, 2}, [2][]uint64{span(6, 8), span(6, 8)},
			[2]string{"D5 6 7 8", "D5 6 7 8"}, "3 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inputs := fixed(2)
			for k := range inputs {
				inputs[k].BlockCount = tc.bc[k]
			}
			f := newFeed(t, blocks(bases[0], tc.sqns[0], nil), blocks(bases[1], tc.sqns[1], nil))
			rounds := drain(t, mustNew(t, inputs, 1), f)
			for k := range 2 {
				if got := trace(rounds, k); got != tc.traces[k] {
					t.Errorf("input %d: %s, want %s", k, got, tc.traces[k])
				}
			}
			if got := roundSQNs(rounds); got != tc.rounds {
				t.Errorf("round SQNs %s, want %s", got, tc.rounds)
			}
			for _, r := range rounds {
				for k := range 2 {
					if len(r.Blocks[k]) != tc.bc[k] {
						t.Errorf("round %d input %d has %d blocks", r.SQN, k, len(r.Blocks[k]))
					}
				}
			}
		})
	}
}

// An input that loses every 7th block gives one round per SQN, with corrupted dummies exactly at
// the lost positions, and the stats count them.
func TestEverySeventhLost(t *testing.T) {
	var lossy []uint64
	for s := uint64(1); s <= 100; s++ {
		if s%7 != 0 {
			lossy = append(lossy, s)
		}
	}
	f := newFeed(t, blocks(bases[0], span(1, 100), nil), blocks(bases[1], lossy, nil), blocks(bases[2], span(1, 100), nil))
	c := mustNew(t, fixed(3), 1)
	rounds := drain(t, c, f)
	if len(rounds) != 100 {
		t.Fatalf("%d rounds, want 100", len(rounds))
	}
	for i, r := range rounds {
		sqn := uint64(i + 1)
		lost := sqn%7 == 0
		b := r.Blocks[1][0]
		if r.SQN != sqn || b.SQN != sqn || r.Dummy[1][0] != lost || (b.Head == hCor) != lost || (r.Head == hCor) != lost {
			t.Fatalf("round %d: %+v dummy %v head %#x", sqn, b, r.Dummy[1][0], r.Head)
		}
		if r.Dummy[0][0] || r.Dummy[2][0] {
			t.Fatalf("round %d: dummy on a complete input", sqn)
		}
	}
	st := c.Stats()
	want := []InputStats{{Blocks: 100}, {Blocks: 86, Dummies: 14}, {Blocks: 100}}
	for k := range want {
		if st.Inputs[k] != want[k] {
			t.Errorf("input %d stats %+v, want %+v", k, st.Inputs[k], want[k])
		}
	}
	if st.Rounds != 100 {
		t.Errorf("%d rounds counted", st.Rounds)
	}
}

// At the start the checker joins at the earliest round any input offers, whatever the order of
// the inputs: a late-starting input gets dummies, and no block of the others is lost.
func TestStartIsOrderIndependent(t *testing.T) {
	early := blocks(bases[0], span(1, 6), map[int]uint32{0: hRst})
	late := blocks(bases[1], span(3, 6), nil)
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		ins := [][]codec.Block{early, late}
		f := newFeed(t, ins[order[0]], ins[order[1]])
		rounds := drain(t, mustNew(t, fixed(2), 1), f)
		got := [2]string{trace(rounds, 0), trace(rounds, 1)}
		want := [2]string{"1 2 3 4 5 6", "D1 D2 3 4 5 6"}
		if got[order[0]] != want[0] || got[order[1]] != want[1] {
			t.Errorf("order %v: %q", order, got)
		}
	}
}

// The rounds end with the shortest input, whatever the order: streams of 20 and 30 blocks give
// 20 rounds, and the blocks taken for round 21 are counted unused.
func TestEndIsOrderIndependent(t *testing.T) {
	short := blocks(bases[0], span(1, 20), nil)
	long := blocks(bases[1], span(1, 30), nil)
	for _, order := range [][2]int{{0, 1}, {1, 0}} {
		ins := [][]codec.Block{short, long}
		f := newFeed(t, ins[order[0]], ins[order[1]])
		c := mustNew(t, fixed(2), 1)
		rounds := drain(t, c, f)
		if got := roundSQNs(rounds); got != str(span(1, 20)) {
			t.Errorf("order %v: rounds %s", order, got)
		}
		var unused uint64
		for _, s := range c.Stats().Inputs {
			unused += s.Unused
		}
		if unused > 1 {
			t.Errorf("order %v: %d unused blocks, want at most the one taken for round 21", order, unused)
		}
		if _, ok, err := c.Next(f.take); ok || err != nil {
			t.Errorf("Next after the end: %v, %v", ok, err)
		}
	}
}

// A last round that the ended input only partly filled (block count 2, 5 blocks) is delivered
// with a dummy in the missing slot, so that the last real block reaches the job.
func TestPartialLastRound(t *testing.T) {
	inputs := fixed(2)
	inputs[0].BlockCount, inputs[1].BlockCount = 2, 2
	f := newFeed(t, blocks(bases[0], span(1, 5), map[int]uint32{4: hFin}), blocks(bases[1], span(1, 8), nil))
	rounds := drain(t, mustNew(t, inputs, 1), f)
	if got := trace(rounds, 0) + " / " + trace(rounds, 1); got != "1 2 3 4 5 D6 / 1 2 3 4 5 6" {
		t.Errorf("traces %s", got)
	}
	if last := rounds[len(rounds)-1]; last.Head != hCor|hFin {
		t.Errorf("last round head %#x, want corrupted and finished", last.Head)
	}
	// With the ended input second, the other is not read past the last round: a live input
	// would block there.
	f = newFeed(t, blocks(bases[1], span(1, 8), nil), blocks(bases[0], span(1, 5), nil))
	rounds = drain(t, mustNew(t, inputs, 1), f)
	if got := trace(rounds, 0) + " / " + trace(rounds, 1); got != "1 2 3 4 5 6 / 1 2 3 4 5 D6" || f.pos[0] != 6 {
		t.Errorf("traces %s, input 0 read %d blocks, want 6", got, f.pos[0])
	}
}

// An end marker naming the last SQN the upstream produced (9 and 10 were lost) makes dummies up
// to it instead of cutting the rounds short.
func TestEndMarkerSQN(t *testing.T) {
	f := newFeed(t, blocks(bases[0], span(1, 8), nil), blocks(bases[1], span(1, 12), nil))
	f.endHint[0] = 10
	rounds := drain(t, mustNew(t, fixed(2), 1), f)
	if got := trace(rounds, 0); got != "1 2 3 4 5 6 7 8 D9 D10" {
		t.Errorf("input 0: %s", got)
	}
}

// Inputs that end before their first block end the checker at once.
func TestNoBlocks(t *testing.T) {
	f := newFeed(t, []codec.Block{}, blocks(bases[1], span(1, 3), nil))
	c := mustNew(t, fixed(2), 1)
	if rounds := drain(t, c, f); len(rounds) != 0 {
		t.Errorf("%d rounds from an empty input", len(rounds))
	}
	if s := c.Stats().Inputs[1]; s.Unused != 1 {
		t.Errorf("input 1 stats %+v, want its held first block unused", s)
	}
}

// SQN 0 is never valid (sources number from 1): it is dropped as stale.
func TestSQNZeroIsStale(t *testing.T) {
	f := newFeed(t, blocks(bases[0], []uint64{0, 1, 2, 0, 3}, nil))
	c := mustNew(t, fixed(1), 1)
	rounds := drain(t, c, f)
	if got := trace(rounds, 0); got != "1 2 3" || c.Stats().Inputs[0].Stale != 2 {
		t.Errorf("trace %s, stats %+v", got, c.Stats().Inputs[0])
	}
}

// Heads of another size than the job's keep their bit positions from the most significant bit;
// dummies carry the corrupted bit of their own input's size, the round's head the job's.
func TestHeadSizes(t *testing.T) {
	inputs := fixed(2)
	inputs[0].HeadSize = 1 // the job's head is 2 bytes
	f := newFeed(t,
		[]codec.Block{{SQN: 1, Head: hRst | 0x01, Payload: []byte{1}}, {SQN: 3, Payload: []byte{3}}},
		[]codec.Block{{SQN: 1, Head: 0x4000 | 0x0100, Payload: []byte{1}}, {SQN: 2, Payload: []byte{2}}, {SQN: 3, Payload: []byte{3}}},
	)
	rounds := drain(t, mustNew(t, inputs, 2), f)
	if rounds[0].Head != 0x4100 {
		t.Errorf("round 1 head %#x, want 0x4100", rounds[0].Head)
	}
	if rounds[1].Head != 0x8000 || rounds[1].Blocks[0][0].Head != 0x80 {
		t.Errorf("round 2 head %#x, dummy head %#x; want 0x8000 and 0x80", rounds[1].Head, rounds[1].Blocks[0][0].Head)
	}
	// A 2-byte reset bit is 0x4000: a 0x40 in a 2-byte head is a user bit, not a reset.
	f = newFeed(t, []codec.Block{{SQN: 1, Payload: []byte{1}}, {SQN: 2, Head: 0x0040, Payload: []byte{2}}})
	rounds = drain(t, mustNew(t, fixed(1), 2), f)
	if got := trace(rounds, 0); got != "1 2" {
		t.Errorf("2-byte head 0x0040 taken as a reset: %s", got)
	}
}

// An error from take ends the checker with that error, naming the input, and keeps it.
func TestTakeError(t *testing.T) {
	boom := errors.New("boom")
	inputs := fixed(2)
	inputs[1].Pipe = 42
	c := mustNew(t, inputs, 1)
	take := func(k int) (codec.Block, bool, error) {
		if k == 1 {
			return codec.Block{}, false, boom
		}
		return codec.Block{SQN: 1, Payload: []byte{1}}, true, nil
	}
	for range 2 {
		_, ok, err := c.Next(take)
		if ok || !errors.Is(err, boom) || !strings.Contains(err.Error(), "input 1 (pipe 42)") {
			t.Errorf("Next = %v, %v", ok, err)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inputs   []Input
		headSize int
		msg      string
	}{
		{"head size", fixed(1), 0, "head size 0"},
		{"input head size", []Input{{HeadSize: 5}}, 1, "input 0: head size 5"},
		{"block count", []Input{{Pipe: 3, BlockCount: -1}}, 1, "input 0 (pipe 3): block count -1"},
		{"all async", []Input{{Async: true}, {Async: true}}, 1, ErrNoSyncInput.Error()},
		{"no inputs", nil, 1, ErrNoSyncInput.Error()},
		{"every error at once", []Input{{BlockCount: -1}, {Dummy: "x"}}, 1, "input 1: dummy mode"},
	} {
		if _, err := New(tc.inputs, tc.headSize); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.msg)
		}
	}
}

// The round and its slices are reused: a steady state costs no allocation.
func TestNextAllocations(t *testing.T) {
	c := mustNew(t, fixed(3), 1)
	take, _ := endless(3, 0)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, ok, err := c.Next(take); !ok || err != nil {
			t.Fatal(ok, err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round", allocs)
	}
}

// endless returns a take that numbers blocks from 1 forever on n inputs, losing every lossEvery-th
// block of input 1 if lossEvery > 0.
func endless(n int, lossEvery uint64) (TakeFunc, []uint64) {
	next := make([]uint64, n)
	payload := []byte("01234567")
	return func(k int) (codec.Block, bool, error) {
		next[k]++
		if lossEvery > 0 && k == 1 && next[k]%lossEvery == 0 {
			next[k]++
		}
		return codec.Block{SQN: next[k], Payload: payload}, true, nil
	}, next
}

func BenchmarkCheckerNext(b *testing.B) {
	for _, bc := range []struct {
		name      string
		inputs    int
		bc        int
		lossEvery uint64
	}{
		{"1 input", 1, 1, 0}, // a forward's, as in a chain
		{"3 inputs", 3, 1, 0},
		{"3 inputs, every 7th lost on one", 3, 1, 7},
		{"3 inputs, block count 4", 3, 4, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			inputs := fixed(bc.inputs)
			for k := range inputs {
				inputs[k].BlockCount = bc.bc
			}
			c, err := New(inputs, 1)
			if err != nil {
				b.Fatal(err)
			}
			take, _ := endless(bc.inputs, bc.lossEvery)
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := c.Next(take); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkCheckerUsual is BenchmarkCheckerNext's "1 input" as the worker runs it: Usual gives
// every round (each block is the one expected), Next none.
func BenchmarkCheckerUsual(b *testing.B) {
	c, err := New(fixed(1), 1)
	if err != nil {
		b.Fatal(err)
	}
	take, _ := endless(1, 0)
	if _, ok, err := c.Next(take); !ok || err != nil { // the first round synchronises
		b.Fatal(ok, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, ok := c.Usual(take); !ok {
			b.Fatal("not the usual round")
		}
	}
}

// Held shows the block waiting for its slot, so that the worker can hold back its acknowledgement.
func TestHeld(t *testing.T) {
	f := newFeed(t, blocks(bases[0], []uint64{1, 3}, nil), blocks(bases[1], span(1, 3), nil))
	c := mustNew(t, fixed(2), 1)
	for _, want := range []uint64{0, 3, 0} { // after rounds 1, 2, 3
		if _, ok, err := c.Next(f.take); !ok || err != nil {
			t.Fatal(ok, err)
		}
		b, held := c.Held(0)
		if held != (want != 0) || b.SQN != want {
			t.Errorf("Held(0) = %d, %v; want %d", b.SQN, held, want)
		}
	}
	if _, held := c.Held(5); held {
		t.Error("Held(5) of a 2-input job")
	}
}

// After Rejoin (max_queue dropped blocks) the join never goes back: a block of a round already
// delivered, delivered again because its acknowledgement was late, is stale — 5, 5, 6, 7 gives
// rounds 5, 6, 7 — while a reset still restarts the sequence.
func TestRejoinNeverGoesBack(t *testing.T) {
	f := newFeed(t, blocks(bases[0], []uint64{5, 5, 6, 7}, nil))
	c := mustNew(t, fixed(1), 1)
	var sqns []uint64
	for {
		r, ok, err := c.Next(f.take)
		if err != nil || !ok {
			break
		}
		sqns = append(sqns, r.SQN)
		c.Rejoin()
	}
	if got := str(sqns); got != "5 6 7" {
		t.Fatalf("rounds %s, want 5 6 7", got)
	}
	f = newFeed(t, blocks(bases[0], []uint64{5, 1, 2}, map[int]uint32{1: hRst}))
	c = mustNew(t, fixed(1), 1)
	sqns = nil
	for {
		r, ok, err := c.Next(f.take)
		if err != nil || !ok {
			break
		}
		sqns = append(sqns, r.SQN)
		c.Rejoin()
	}
	if got := str(sqns); got != "5 1 2" {
		t.Fatalf("rounds %s, want 5 1 2 (the reset restarts)", got)
	}
}
