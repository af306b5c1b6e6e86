// Package align holds the synchronisation rules of a job's blocks, with no I/O and no goroutines:
// the input stage that aligns a job's inputs by sequence number (Checker, SPEC §4.4), the output
// stage's numbering and head rules (SourceSequencer and OutHead, §4.5) and the buffer of an
// optional pipe (Optional, §1.3). A max_queue pipe (§4.7) keeps its queue in its stream, where the
// oldest blocks are dropped; Checker.Rejoin skips ahead past them. The worker drives them from
// its own goroutines; everything here is deterministic and unit-tested against SPEC §9.
package align

import (
	"errors"
	"fmt"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/cacheline"
)

// Dummy modes: how a missing block is filled.
const (
	DummyZero = pipeline.DummyZero // the pipe's zero payload
	DummyPrev = pipeline.DummyPrev // the input's previous real payload
)

// ErrDummyMode is returned by New for a dummy mode other than zero or prev (SQN-13).
var ErrDummyMode = errors.New("dummy mode must be zero or prev")

// ErrNoSyncInput is returned by New when every input is async: such a job has nothing to align
// and is numbered like a source (SPEC §4.6).
var ErrNoSyncInput = errors.New("no synchronous input to align")

// Input describes one input pipe of a job, in the job's input order.
type Input struct {
	// Pipe is the pipe id, used in error messages only; 0 if unknown.
	Pipe int
	// BlockCount is the number of blocks of this input per round; 0 means 1.
	BlockCount int
	// Async inputs bypass alignment: the checker never takes from them and they add nothing to
	// the round's head.
	Async bool
	// HeadSize is the size of this pipe's heads (its source job's head size); 0 means the job's.
	HeadSize int
	// Dummy is DummyZero (the default when empty) or DummyPrev.
	Dummy string
	// ZeroPayload is a dummy's payload in zero mode (the codec's Zero), and in prev mode before
	// any real block (SPEC says "empty"; a zero-length payload is not a valid frame of any codec,
	// so the zero payload is used; a nil ZeroPayload gives the empty payload of SPEC).
	ZeroPayload []byte
	// ZeroLike, if set, gives a zero-mode dummy's payload once the input has had a real block:
	// the zero value shaped like that block (codec.ZeroLike). ZeroPayload is used before, and
	// where ZeroLike fails.
	ZeroLike func(prev []byte) ([]byte, error)
	// FixedSize is true for codecs with a fixed block size (bytes). Self-delimiting codecs (cbor,
	// json) have no "zero bytes of the block size", so their dummies repeat the previous block:
	// false forces prev mode for this input only (SQN-9, Go).
	FixedSize bool
}

// Round is one compute block: the blocks of every input for one step of the job.
//
// A Round returned by Next, and every slice in it, is owned by the Checker and valid until the
// next call to Next: the Checker reuses them so that a round costs no allocation. Clone keeps one.
type Round struct {
	// SQN is the round's sequence number, which the job's outputs carry: the input SQN where
	// every block count is 1, the round number where block counts are larger (round r covers
	// SQNs bc·(r−1)+1 … bc·r of an input with block count bc).
	SQN uint64
	// Head is the or of the heads of the round's synchronous blocks, in the job's head size;
	// a dummy contributes the corrupted bit. A block's head of another size is converted keeping
	// bit positions counted from the most significant bit (pipeline.Head.Resize).
	Head uint32
	// Blocks holds, per input, BlockCount blocks, oldest first; nil for async inputs. A dummy
	// has the expected SQN, a head with only the corrupted bit (in its input's head size) and
	// the zero or previous payload.
	Blocks [][]codec.Block
	// Dummy marks, per input and block, which blocks are dummies (a real block may also carry
	// the corrupted bit, when it was computed from a dummy upstream).
	Dummy [][]bool
}

// Clone returns a copy of r that the Checker will not reuse. Payloads are shared.
func (r Round) Clone() Round {
	c := Round{SQN: r.SQN, Head: r.Head, Blocks: make([][]codec.Block, len(r.Blocks)), Dummy: make([][]bool, len(r.Dummy))}
	for k := range r.Blocks {
		if r.Blocks[k] != nil {
			c.Blocks[k] = append([]codec.Block(nil), r.Blocks[k]...)
			c.Dummy[k] = append([]bool(nil), r.Dummy[k]...)
		}
	}
	return c
}

// InputStats counts what happened to one input's blocks.
type InputStats struct {
	Blocks  uint64 // real blocks delivered in rounds
	Dummies uint64 // dummies delivered in place of missing blocks
	Stale   uint64 // late or duplicate blocks dropped (and blocks with SQN 0)
	Resets  uint64 // blocks that restarted the sequence (reset bit, or SQN 1 out of step)
	Unused  uint64 // real blocks taken but never delivered because the checker ended first
}

// Stats are the checker's counters.
type Stats struct {
	Rounds uint64
	Inputs []InputStats // per input, in the job's order; zero for async inputs
}

// TakeFunc returns the next block of input k, waiting until there is one. ok false means that
// input k has ended; the block returned with it may carry, in SQN, the last SQN its upstream
// produced (an end-of-stream marker's), 0 if unknown: slots up to that SQN then become dummies
// instead of being cut off. Payloads must stay valid while the Checker may use them: it keeps the
// last real payload of each input for prev-mode dummies.
type TakeFunc func(k int) (b codec.Block, ok bool, err error)

// Checker is the input stage of a job with synchronous inputs: it assembles rounds in which every
// synchronous input has exactly its block count of blocks with the expected SQNs, making dummies
// for missing blocks, dropping late and duplicate ones, and realigning after resets. It is the
// normative checker of SPEC §4.4 with every Go fix. A Checker is used by one goroutine.
//
// The rules, per synchronous input and slot with expected SQN E = bc·(r−1)+j+1 in round r:
//   - Start: the checker takes the first block of every synchronous input and joins at the
//     earliest round any of them belongs to (SQN 1 gives round 1, a late join at SQN 5 round 5);
//     inputs that start later get dummies until their blocks come due, so no block is lost to
//     the order of the inputs.
//   - A block with SQN E is delivered; a block with a higher SQN is held and a dummy takes its
//     slot until it comes due; late and duplicate blocks (SQN < E) are dropped and the next
//     block is judged in the same slot (SQN-5: 1,2,3,2,4,5 gives 1,2,3,4,5).
//   - Reset: a block with the reset bit, or with SQN 1, that is not the expected one restarts its
//     sequence. It is held and the input gets dummies until every synchronous input has reset;
//     the next round then starts again from the held blocks (1,2,3,[rst]1,2 on every input gives
//     1,2,3,D4,1,2: a reset costs one dummy round).
//   - End: when input k ends, rounds continue as long as k's stream reaches them (its last SQN,
//     or the SQN its end marker names): the slots it cannot fill become dummies, so a last round
//     that k only partly filled (block count > 1) is still delivered. The first round beyond the
//     end of any input is not delivered and Next reports the end. The outcome therefore does not
//     depend on the order of the inputs: a job on streams of 20 and 30 blocks runs 20 rounds
//     whichever is first. Real blocks of other inputs taken for that round are counted Unused.
type Checker struct {
	_        cacheline.Pad // written every round (cacheline)
	in       []inputState
	sync     []int // indexes of the synchronous inputs, in order
	headSize int

	cur      uint64 // round being assembled; 0 = not synchronised (start, or after a reset)
	ending   bool   // an input has ended; endRound is the last round its stream reaches
	endRound uint64
	done     bool
	err      error // sticky: once Next fails it keeps failing the same way

	round  Round
	rounds uint64
	// floor, after Rejoin, is the first round the next join may start at (0: any).
	floor uint64
	// single is the one synchronous input when the job has one, of block count 1 (-1 else): the
	// input Usual takes from. back is a block Usual took that was not the usual one, for the
	// next take of Next (hasBack).
	single  int
	back    taken
	hasBack bool
	_       cacheline.Pad
}

// taken is what a TakeFunc returned.
type taken struct {
	b   codec.Block
	ok  bool
	err error
}

// inputState is the checker's view of one input.
type inputState struct {
	name     string
	bc       uint64
	size     int // head size of this input's blocks
	async    bool
	prevMode bool
	zero     []byte
	zeroLike func(prev []byte) ([]byte, error)
	// shaped is the zero dummy shaped like the last real block (prev), made when first needed.
	shaped   []byte
	hasShape bool

	held      codec.Block // a block waiting for its slot (hasHeld)
	hasHeld   bool
	resetSeen bool   // held is a reset: waiting for every input to reset
	prev      []byte // payload of the last real block delivered
	hasPrev   bool
	last      uint64 // SQN of the last real block taken, or the end marker's
	ended     bool

	stats InputStats
}

// New returns a checker for a job's inputs, in order; headSize is the job's head size.
func New(inputs []Input, headSize int) (*Checker, error) {
	if headSize < 1 || headSize > codec.MaxHeadSize {
		return nil, fmt.Errorf("head size %d out of range 1..%d", headSize, codec.MaxHeadSize)
	}
	// The round and the inputs' state are written every round: padded (cacheline).
	c := &Checker{headSize: headSize, in: cacheline.Make[inputState](len(inputs))}
	c.round.Blocks = cacheline.Make[[]codec.Block](len(inputs))
	c.round.Dummy = cacheline.Make[[]bool](len(inputs))
	var errs []error
	for k, in := range inputs {
		st, err := newInputState(k, in, headSize)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.in[k] = st
		if !st.async {
			c.sync = append(c.sync, k)
			c.round.Blocks[k] = cacheline.Slice[codec.Block](int(st.bc))
			c.round.Dummy[k] = cacheline.Slice[bool](int(st.bc))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(c.sync) == 0 {
		return nil, ErrNoSyncInput
	}
	c.single = -1
	if len(c.sync) == 1 && c.in[c.sync[0]].bc == 1 {
		c.single = c.sync[0]
	}
	return c, nil
}

func newInputState(k int, in Input, jobHeadSize int) (inputState, error) {
	st := inputState{name: fmt.Sprintf("input %d", k), async: in.Async}
	if in.Pipe > 0 {
		st.name = fmt.Sprintf("input %d (pipe %d)", k, in.Pipe)
	}
	if in.Async {
		return st, nil
	}
	switch {
	case in.BlockCount < 0:
		return st, fmt.Errorf("%s: block count %d must be at least 1", st.name, in.BlockCount)
	case in.HeadSize < 0 || in.HeadSize > codec.MaxHeadSize:
		return st, fmt.Errorf("%s: head size %d out of range 1..%d", st.name, in.HeadSize, codec.MaxHeadSize)
	case in.Dummy != "" && in.Dummy != DummyZero && in.Dummy != DummyPrev:
		return st, fmt.Errorf("%s: %w, got %q", st.name, ErrDummyMode, in.Dummy)
	}
	st.bc = uint64(max(in.BlockCount, 1))
	st.size = in.HeadSize
	if st.size == 0 {
		st.size = jobHeadSize
	}
	st.prevMode = in.Dummy == DummyPrev || !in.FixedSize
	st.zero = in.ZeroPayload
	st.zeroLike = in.ZeroLike
	return st, nil
}

// Next assembles the next round, taking blocks with take. ok is false once the rounds have ended
// (see Checker); an error from take ends the checker with that error, naming the input.
func (c *Checker) Next(take TakeFunc) (Round, bool, error) {
	if c.done {
		return Round{}, false, c.err
	}
	if c.hasBack {
		take = c.takeBackFirst(take)
	}
	ok, err := c.assemble(take)
	if err != nil || !ok {
		c.stop(err)
		return Round{}, false, err
	}
	c.rounds++
	return c.round, true, nil
}

// Usual gives the next round of a job with one synchronous input of block count 1 when that
// round is the usual one: the checker is synchronised and holds nothing, and the block taken is
// the one the round expects, as every block of a steady stream is (not its first, nor one after
// a gap, a reset or a late block). Usual then returns that block and the round's head (the
// block's, in the job's head size), the checker having moved on as Next would have, without
// assembling a Round: that assembly cost a chained job more than the rest of its round
// (docs/performance.md, session 15). Otherwise ok is false and the caller calls Next, which
// goes on from there: a block Usual took is Next's first.
func (c *Checker) Usual(take TakeFunc) (b codec.Block, head uint32, ok bool) {
	k := c.single
	if k < 0 || c.done || c.cur == 0 || c.ending || c.hasBack {
		return codec.Block{}, 0, false
	}
	st := &c.in[k]
	if st.hasHeld || st.resetSeen || st.ended {
		return codec.Block{}, 0, false
	}
	b, ok, err := take(k)
	if err != nil || !ok || b.SQN != c.cur {
		c.back, c.hasBack = taken{b: b, ok: ok, err: err}, true
		return codec.Block{}, 0, false
	}
	// What place does with the block the slot expects, and Next with the round.
	st.last = b.SQN
	st.delivered(b)
	c.cur++
	c.rounds++
	return b, convertHead(b.Head, st.size, c.headSize), true
}

// Single is the input Usual takes from, -1 when the job has more than one synchronous input, or
// one of block count above 1 (Usual then never gives a round).
func (c *Checker) Single() int { return c.single }

// takeBackFirst returns take, except that its first call returns the block Usual took back.
func (c *Checker) takeBackFirst(take TakeFunc) TakeFunc {
	return func(k int) (codec.Block, bool, error) {
		if c.hasBack && k == c.single {
			c.hasBack = false
			return c.back.b, c.back.ok, c.back.err
		}
		return take(k)
	}
}

// Rejoin forgets which round comes next: the next round joins anew at the earliest block the
// inputs hold or take next, as at the start. The worker calls it after blocks were dropped on
// purpose upstream (max_queue keeps the newest blocks): the job skips ahead instead of being
// handed a dummy for every dropped block. A round already handed out is not affected.
//
// The join never goes back: a block of a round already delivered (one delivered again, after its
// acknowledgement was late) is stale, unless it restarts the sequence (reset bit, or SQN 1).
func (c *Checker) Rejoin() {
	if !c.done && !c.ending {
		c.floor, c.cur = c.cur, 0
	}
}

// Stats returns a copy of the checker's counters.
func (c *Checker) Stats() Stats {
	s := Stats{Rounds: c.rounds, Inputs: make([]InputStats, len(c.in))}
	for k := range c.in {
		s.Inputs[k] = c.in[k].stats
	}
	return s
}

// Held returns the block input k took but has not delivered yet (it waits for its slot, or for
// the other inputs to reset). The worker must not acknowledge such a block's message before a
// round delivers it: a job that dies in between would otherwise lose it.
func (c *Checker) Held(k int) (codec.Block, bool) {
	if k < 0 || k >= len(c.in) || !c.in[k].hasHeld {
		return codec.Block{}, false
	}
	return c.in[k].held, true
}

// assemble fills c.round; false when there is no further round.
func (c *Checker) assemble(take TakeFunc) (bool, error) {
	c.clearRound()
	if c.allReset() {
		// Every input restarted its sequence: start again from the held reset blocks.
		for _, k := range c.sync {
			c.in[k].resetSeen = false
		}
		c.cur = 0
	}
	if c.cur == 0 {
		if ok, err := c.synchronise(take); !ok || err != nil {
			return false, err
		}
	}
	if c.ending && c.cur > c.endRound {
		return false, nil
	}
	for _, k := range c.sync {
		for j := range c.in[k].bc {
			if ok, err := c.fill(take, k, j); !ok || err != nil {
				return false, err
			}
		}
	}
	c.round.SQN = c.cur
	c.cur++
	return true, nil
}

func (c *Checker) clearRound() {
	c.round.SQN, c.round.Head = 0, 0
	for _, k := range c.sync {
		c.round.Blocks[k] = c.round.Blocks[k][:0]
		c.round.Dummy[k] = c.round.Dummy[k][:0]
	}
}

// allReset reports whether every synchronous input holds a reset block.
func (c *Checker) allReset() bool {
	for _, k := range c.sync {
		if !c.in[k].resetSeen {
			return false
		}
	}
	return true
}

// synchronise makes every synchronous input hold its first block (already held after a reset)
// and joins at the earliest round among them. It reports false when no input has a block.
func (c *Checker) synchronise(take TakeFunc) (bool, error) {
	for _, k := range c.sync {
		if err := c.holdFirst(take, k); err != nil {
			return false, err
		}
	}
	for _, k := range c.sync {
		st := &c.in[k]
		if r := roundOf(st.held.SQN, st.bc); st.hasHeld && (c.cur == 0 || r < c.cur) {
			c.cur = r
		}
	}
	c.floor = 0
	return c.cur > 0, nil
}

// holdFirst takes input k's first valid block and holds it, unless k holds one or has ended.
func (c *Checker) holdFirst(take TakeFunc, k int) error {
	st := &c.in[k]
	for !st.hasHeld && !st.ended {
		b, ok, err := take(k)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", st.name, err)
		case !ok:
			st.end(b)
		case b.SQN == 0, c.floor > 0 && roundOf(b.SQN, st.bc) < c.floor && !c.restarts(b, st):
			st.stats.Stale++
		default:
			st.hold(b)
		}
	}
	return nil
}

// restarts reports whether b restarts its input's sequence: the reset bit, or SQN 1.
func (c *Checker) restarts(b codec.Block, st *inputState) bool {
	return codec.BeginsRestart(b, st.size)
}

// fill fills slot j of input k in the current round; false when the checker must stop.
func (c *Checker) fill(take TakeFunc, k int, j uint64) (bool, error) {
	st := &c.in[k]
	want := st.bc*(c.cur-1) + j + 1
	if st.hasHeld {
		if st.held.SQN == want {
			c.deliver(k, st.release())
		} else {
			c.dummy(k, want)
		}
		return true, nil
	}
	for !st.ended {
		b, ok, err := take(k)
		if err != nil {
			return false, fmt.Errorf("%s: %w", st.name, err)
		}
		if !ok {
			st.end(b)
			break
		}
		if c.place(k, b, want) {
			return true, nil
		}
	}
	return c.fillEnded(k, want), nil
}

// place judges block b taken for the slot expecting SQN want. It reports false when b was
// dropped as stale and the slot still needs a block.
func (c *Checker) place(k int, b codec.Block, want uint64) bool {
	st := &c.in[k]
	_, reset, _ := codec.Flags(b.Head, st.size)
	switch {
	case b.SQN == 0:
		st.stats.Stale++
		return false
	case (reset || b.SQN == 1) && b.SQN != want:
		st.hold(b)
		st.resetSeen = true
		st.stats.Resets++
		c.dummy(k, want)
	case b.SQN < want:
		st.stats.Stale++
		return false
	case b.SQN > want:
		st.hold(b)
		c.dummy(k, want)
	default:
		st.last = b.SQN
		c.deliver(k, b)
	}
	return true
}

// fillEnded fills a slot of an ended input: a dummy while its stream reaches the current round,
// otherwise false (the round lies beyond its end and is not delivered).
func (c *Checker) fillEnded(k int, want uint64) bool {
	st := &c.in[k]
	last := roundOf(st.last, st.bc)
	if last < c.cur {
		return false
	}
	if !c.ending || last < c.endRound {
		c.ending, c.endRound = true, last
	}
	c.dummy(k, want)
	return true
}

// deliver puts a real block into the round.
func (c *Checker) deliver(k int, b codec.Block) {
	st := &c.in[k]
	c.round.Blocks[k] = append(c.round.Blocks[k], b)
	c.round.Dummy[k] = append(c.round.Dummy[k], false)
	c.round.Head |= convertHead(b.Head, st.size, c.headSize)
	st.delivered(b)
}

// delivered notes a real block delivered in a round: the payload prev dummies repeat, and the
// count.
func (st *inputState) delivered(b codec.Block) {
	st.prev, st.hasPrev, st.hasShape = b.Payload, true, false
	st.stats.Blocks++
}

// dummy puts a dummy with SQN sqn into input k's slot.
func (c *Checker) dummy(k int, sqn uint64) {
	st := &c.in[k]
	payload := st.zero
	switch {
	case st.prevMode && st.hasPrev:
		payload = st.prev
	case st.hasPrev && st.zeroLike != nil:
		if !st.hasShape {
			st.shaped, st.hasShape = st.zero, true
			if z, err := st.zeroLike(st.prev); err == nil {
				st.shaped = z
			}
		}
		payload = st.shaped
	}
	c.round.Blocks[k] = append(c.round.Blocks[k], Dummy(sqn, st.size, payload))
	c.round.Dummy[k] = append(c.round.Dummy[k], true)
	c.round.Head |= codec.HeadMask(c.headSize, codec.BitCorrupted)
	st.stats.Dummies++
}

// stop ends the checker, counting the real blocks it took but will never deliver: held ones and
// those already placed in the round that is not delivered.
func (c *Checker) stop(err error) {
	c.done, c.err = true, err
	for _, k := range c.sync {
		st := &c.in[k]
		if st.hasHeld {
			st.hasHeld = false
			st.stats.Unused++
		}
		for _, d := range c.round.Dummy[k] {
			if d {
				st.stats.Dummies--
			} else {
				st.stats.Blocks--
				st.stats.Unused++
			}
		}
	}
	c.clearRound()
}

func (st *inputState) hold(b codec.Block) {
	st.held, st.hasHeld, st.last = b, true, b.SQN
}

// release hands over the held block; a reset block released by its SQN no longer waits.
func (st *inputState) release() codec.Block {
	st.hasHeld, st.resetSeen = false, false
	return st.held
}

// end records that the input ended; b.SQN, if set, is the last SQN its upstream produced.
func (st *inputState) end(b codec.Block) {
	st.ended = true
	st.last = max(st.last, b.SQN)
}

// roundOf is the round an SQN belongs to for an input of block count bc.
func roundOf(sqn, bc uint64) uint64 { return (sqn + bc - 1) / bc }

// convertHead converts a head of size from to size to, keeping bit positions counted from the
// most significant bit (as pipeline.Head.Resize does).
func convertHead(h uint32, from, to int) uint32 {
	switch {
	case from < to:
		return h << (8 * uint(to-from))
	case from > to:
		return h >> (8 * uint(from-to))
	}
	return h
}

// Dummy returns a dummy block: SQN sqn, a head of headSize bytes with only the corrupted bit set,
// and payload (zero bytes of the block size, or the previous block's payload).
func Dummy(sqn uint64, headSize int, payload []byte) codec.Block {
	return codec.Block{SQN: sqn, Head: codec.HeadMask(headSize, codec.BitCorrupted), Payload: payload}
}
