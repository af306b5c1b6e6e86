package align

import (
	"sync"
	"time"

	"github.com/marvelo/marvelo/codec"
)

// SourceSequencer numbers the blocks of a source (or of an all-async job, SPEC §4.6): SQNs from 1,
// the reset bit on the first block, and a restart at 1 with the reset bit after Reset (SPEC §4.5,
// source mode). It never sleeps: Next tells the caller how long to wait. Reset may be called from
// any goroutine; Next from the job's.
type SourceSequencer struct {
	mu       sync.Mutex
	sqn      uint64
	pending  bool      // a reset applies to the next block
	at       time.Time // not before this time (zero: at once)
	restarts uint64    // the resets begun so far, the first block's included
}

// NewSourceSequencer returns a sequencer whose first block is SQN 1 with the reset bit.
func NewSourceSequencer() *SourceSequencer { return &SourceSequencer{pending: true} }

// Step is how the output stage stamps one block of a source.
type Step struct {
	SQN   uint64
	Reset bool
	// Restart numbers the restart the step's sequence began with among this sequencer's
	// restarts, from 1 (the step with Reset and every step after it, up to the next reset); 0
	// before the first, in a sequence resumed from a checkpoint. With the job and its instance
	// it names the restart the step's block counts from (codec.RestartHeader).
	Restart uint64
	// Wait is how long the caller must wait, from the now given to Next, before sending the
	// block: a reset requested for a future time takes effect then.
	Wait time.Duration
}

// Head is the step's contribution to the block head: the reset bit or nothing, for OutHead.
func (s Step) Head(size int) uint32 {
	if s.Reset {
		return codec.HeadMask(size, codec.BitReset)
	}
	return 0
}

// Reset asks for the sequence to restart: the block begun by the next call to Next has SQN 1 and
// the reset bit, and is sent no earlier than at (the zero time: at once). A block already begun
// is not affected (SB-3: a reset that arrives while block 5 is produced gives 1,2,3,4,5,1,2,…).
// The latest request wins.
func (s *SourceSequencer) Reset(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending, s.at = true, at
}

// Resume continues a sequence that reached sqn before (a source restored from its checkpoint):
// the next block is sqn+1, without the reset bit, unless a reset is requested meanwhile.
func (s *SourceSequencer) Resume(sqn uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sqn, s.pending, s.at = sqn, false, time.Time{}
}

// NextNow is Next with the current time, read only when a reset is pending: reading the clock
// for every block would cost more than the rest of the numbering.
func (s *SourceSequencer) NextNow() Step {
	s.mu.Lock()
	pending := s.pending && !s.at.IsZero()
	s.mu.Unlock()
	if pending {
		return s.Next(time.Now())
	}
	return s.Next(time.Time{})
}

// Next begins a block: call it before the job produces the block (with an emit callback, right
// after the previous block was written, and once before the first), so that a reset requested
// during the production applies to the following block, as in the original's check of the
// command queue before its blocking read.
func (s *SourceSequencer) Next(now time.Time) Step {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Step
	if s.pending {
		s.sqn, st.Reset = 0, true
		s.restarts++
		if s.at.After(now) {
			st.Wait = s.at.Sub(now)
		}
		s.pending, s.at = false, time.Time{}
	}
	s.sqn++
	st.SQN, st.Restart = s.sqn, s.restarts
	return st
}

// OutHead is the head written on an output (SPEC §4.5). jobHead is the head the job asked for
// (job.Context.OutHead: with Finish it carries the finished bit whether or not the job sees
// heads); inHead is the system's side: for a connector the round's head, for a source Step.Head.
// size is the head size of both and of the result.
//
// The job never sets or clears the reset bit: it is forced from inHead (the input's reset for a
// connector, the sequencer's for a source). For a connector, corrupted and finished are the or of
// job and input (SB-4). A job that does not see heads contributes only the finished bit of its
// Finish: a connector's out head is then the round head (SB-5), a source's is the reset bit
// (SB-1). A source that sees heads passes its corrupted and finished bits through (SB-2).
func OutHead(jobHead, inHead uint32, size int, connector, jobSeesHead bool) uint32 {
	cor := codec.HeadMask(size, codec.BitCorrupted)
	rst := codec.HeadMask(size, codec.BitReset)
	fin := codec.HeadMask(size, codec.BitFinished)
	h := jobHead &^ rst
	if !jobSeesHead {
		h = jobHead & fin
	}
	switch {
	case connector && jobSeesHead:
		h |= inHead & (cor | rst | fin)
	case connector:
		h |= inHead
	default:
		h |= inHead & rst
	}
	return h & codec.HeadLimit(size)
}
