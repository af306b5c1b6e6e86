package align

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/codec"
)

// source stamps n blocks of a source whose job writes jobHead each time, as the worker does.
func source(seq *SourceSequencer, n int, jobHead uint32, seesHead bool) []codec.Block {
	now := time.Unix(1000, 0)
	out := make([]codec.Block, n)
	for i := range out {
		st := seq.Next(now)
		out[i] = codec.Block{SQN: st.SQN, Head: OutHead(jobHead, st.Head(1), 1, false, seesHead), Payload: fmt.Appendf(nil, "d%d", i)}
	}
	return out
}

// SPEC SB1: a source without HEAD, blocks d0…d5: SQNs 1…6, the first with the reset bit, the rest
// 0; data unchanged. A head the job did not ask for (its reduced head) does not leak through.
func TestASourceWithoutHeadNumbersFrom1AndSetsResetOnlyOnItsFirstBlock(t *testing.T) {
	for _, jobHead := range []uint32{0, 0b00011000} {
		for i, b := range source(NewSourceSequencer(), 6, jobHead, false) {
			want := codec.Block{SQN: uint64(i + 1), Payload: fmt.Appendf(nil, "d%d", i)}
			if i == 0 {
				want.Head = hRst
			}
			if !sameBlock(b, want) {
				t.Errorf("job head %#x, block %d: %+v, want %+v", jobHead, i, b, want)
			}
		}
	}
}

// SPEC SB2: a source with HEAD writing 11100000 before every block: the first packet has 11100000,
// later ones 10100000 (reset forced off; corrupted and finished from the job remain).
func TestASourceWithHeadKeepsItsCorruptedAndFinishedBitsButResetOnlyOnItsFirstBlock(t *testing.T) {
	for i, b := range source(NewSourceSequencer(), 4, 0b11100000, true) {
		want := uint32(0b10100000)
		if i == 0 {
			want = 0b11100000
		}
		if b.Head != want {
			t.Errorf("block %d: head %08b, want %08b", i, b.Head, want)
		}
	}
	// Without HEAD, Finish still reaches the wire (Go: end of stream without relying on HEAD).
	if h := OutHead(hFin|0x01, 0, 1, false, false); h != hFin {
		t.Errorf("source without HEAD after Finish: %08b, want 00100000", h)
	}
}

// SPEC SB3: a reset queued while block 5 is produced gives 1,2,3,4,5,1(rst),2,…; a reset for a time
// 0.3 s ahead makes the next block SQN 1 with reset, to be sent 0.3 s later.
func TestAResetRequestRestartsTheSourceAtSQN1OnItsNextBlockAtTheRequestedTime(t *testing.T) {
	seq := NewSourceSequencer()
	now := time.Unix(1000, 0)
	var got []string
	for i := 1; i <= 8; i++ {
		st := seq.Next(now) // the block begins
		if i == 5 {
			seq.Reset(time.Time{}) // arrives while block 5 is produced
		}
		got = append(got, stepString(st))
	}
	if got, want := strings.Join(got, " "), "1r 2 3 4 5 1r 2 3"; got != want {
		t.Errorf("SQNs %s, want %s", got, want)
	}
	seq.Reset(now.Add(300 * time.Millisecond))
	if st := seq.Next(now); st.SQN != 1 || !st.Reset || st.Wait != 300*time.Millisecond {
		t.Errorf("timed reset: %+v, want SQN 1, reset, wait 300ms", st)
	}
	if st := seq.Next(now); st.SQN != 2 || st.Reset || st.Wait != 0 {
		t.Errorf("after the timed reset: %+v", st)
	}
	// A time already past resets at once; the latest request wins.
	seq.Reset(now.Add(time.Hour))
	seq.Reset(now.Add(-time.Second))
	if st := seq.Next(now); st.SQN != 1 || !st.Reset || st.Wait != 0 {
		t.Errorf("past reset: %+v", st)
	}
}

func stepString(st Step) string {
	if st.Reset {
		return fmt.Sprintf("%dr", st.SQN)
	}
	return fmt.Sprint(st.SQN)
}

// Reset and Next may run on different goroutines (a command handler and the job's loop).
func TestSourceSequencerConcurrentReset(t *testing.T) {
	seq := NewSourceSequencer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			seq.Reset(time.Time{})
		}
	}()
	now := time.Now()
	for range 100 {
		if st := seq.Next(now); st.SQN == 0 {
			t.Fatal("SQN 0")
		}
	}
	<-done
}

// SPEC SB4: a connector with HEAD, connection entry (SQN 10, h_in), job head h_job.
func TestAConnectorWithHeadWritesTheJobsHeadOrTheInputsSystemBitsButNeverTheJobsReset(t *testing.T) {
	for _, tc := range []struct {
		in, job, out uint32
		finish       bool
	}{
		{0b00000000, 0b11100000, 0b10100000, true},
		{0b10100000, 0b00000000, 0b10100000, true},
		{0b01000000, 0b00000000, 0b01000000, false},
		{0b00000000, 0b00000001, 0b00000001, false},
		{0b10000000, 0b00000011, 0b10000011, false},
	} {
		got := OutHead(tc.job, tc.in, 1, true, true)
		_, _, fin := codec.Flags(got, 1)
		if got != tc.out || fin != tc.finish {
			t.Errorf("in %08b job %08b: out %08b finish %v, want %08b %v", tc.in, tc.job, got, fin, tc.out, tc.finish)
		}
	}
}

// SPEC SB5: a connector without HEAD: the out head is the connection head, and its finished bit
// ends the job (the original never signalled it).
func TestAConnectorWithoutHeadWritesTheConnectionHeadAndEndsOnItsFinishedBit(t *testing.T) {
	for _, in := range []uint32{0b10100000, 0b01000000, 0b00011001, 0} {
		got := OutHead(in, in, 1, true, false) // the job's head is the reduced head it was given
		if got != in {
			t.Errorf("connection head %08b: out %08b", in, got)
		}
	}
	if _, _, fin := codec.Flags(OutHead(0, 0b10100000, 1, true, false), 1); !fin {
		t.Error("the finished bit of the connection head does not end the connector")
	}
	// Finish called by a job without HEAD reaches the wire too.
	if got := OutHead(hFin, 0, 1, true, false); got != hFin {
		t.Errorf("Finish without HEAD: %08b", got)
	}
}

// SPEC SB6 (its head rule): a connector's input head 10000000 and a job head 11000000 (trying to
// set reset) give 10000000; with the finished bit added, the finished bit. The scenario itself —
// SQNs passed through unchanged on ten outputs — runs through the engine in
// worker.TestAConnectorPassesEachRoundsSQNToTenOutputsAndCannotSetTheResetBit.
func TestAConnectorCannotSetTheResetBitButItsFinishedBitEndsIt(t *testing.T) {
	if h := OutHead(0b11000000, 0b10000000, 1, true, true); h != 0b10000000 {
		t.Fatalf("head %08b, want 10000000", h)
	}
	if _, _, fin := codec.Flags(OutHead(0b11100000, 0b10000000, 1, true, true), 1); !fin {
		t.Error("the finished variant does not end the job after round 0")
	}
}

// Every mask derives from the head size: the same rules with 2- and 4-byte heads.
func TestOutHeadSizes(t *testing.T) {
	for _, size := range []int{2, 4} {
		cor, rst, fin := codec.HeadMask(size, 0), codec.HeadMask(size, 1), codec.HeadMask(size, 2)
		user := uint32(1)
		if got := OutHead(cor|rst|fin|user, 0, size, true, true); got != cor|fin|user {
			t.Errorf("size %d connector: %#x", size, got)
		}
		if got := OutHead(user, rst, size, false, true); got != rst|user {
			t.Errorf("size %d source first block: %#x", size, got)
		}
		if got := (Step{Reset: true}).Head(size); got != rst {
			t.Errorf("size %d Step.Head: %#x", size, got)
		}
	}
	if got := OutHead(0xFFFF, 0, 1, true, true); got != 0xBF {
		t.Errorf("head wider than its size: %#x, want 0xbf", got)
	}
}

// Every step names the restart its sequence began with: the steps of a sequence resumed from a
// checkpoint none (0) until a reset, then each the number of the last reset.
func TestEveryStepNamesTheRestartItsSequenceBeganWith(t *testing.T) {
	seq := NewSourceSequencer()
	seq.Resume(7)
	now := time.Unix(1000, 0)
	var got []string
	for i := range 7 {
		if i == 2 || i == 5 {
			seq.Reset(time.Time{})
		}
		st := seq.Next(now)
		got = append(got, fmt.Sprintf("%d/%d", st.SQN, st.Restart))
	}
	if want := "8/0 9/0 1/1 2/1 3/1 1/2 2/2"; strings.Join(got, " ") != want {
		t.Errorf("steps (SQN/restart) %s, want %s", strings.Join(got, " "), want)
	}
}
