package codec

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// SPEC PKT1: raw bytes SQN=2 (8 bytes BE) ‖ 0b11100000 ‖ 16 data bytes.
func TestABlockOfSQNHeadAndPayloadDecodesWithItsFlagsAndReencodesToTheSameBytes(t *testing.T) {
	data := []byte("0123456789abcdef")
	raw := append([]byte{0, 0, 0, 0, 0, 0, 0, 2, 0b11100000}, data...)
	b, err := DecodeBlock(raw, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b.SQN != 2 || b.Head != 224 || !bytes.Equal(b.Payload, data) {
		t.Errorf("PKT-1 decoded to %+v", b)
	}
	if c, r, f := Flags(b.Head, 1); !c || !r || !f {
		t.Errorf("PKT-1 flags %v %v %v, want all set", c, r, f)
	}
	if again := AppendBlock(nil, b, 1); !bytes.Equal(again, raw) {
		t.Errorf("PKT-1 re-encoded to %x, want %x", again, raw)
	}
}

func TestHeadMasks(t *testing.T) {
	want := map[int][3]uint32{
		1: {0x80, 0x40, 0x20},
		2: {0x8000, 0x4000, 0x2000},
		3: {0x800000, 0x400000, 0x200000},
		4: {0x80000000, 0x40000000, 0x20000000},
	}
	for size, masks := range want {
		for bit, m := range masks {
			if got := HeadMask(size, bit); got != m {
				t.Errorf("HeadMask(%d, %d) = %#x, want %#x", size, bit, got, m)
			}
		}
		if got, lim := HeadLimit(size), uint32(1<<(8*size)-1); got != lim {
			t.Errorf("HeadLimit(%d) = %#x, want %#x", size, got, lim)
		}
		c, r, f := Flags(masks[BitReset], size)
		if c || !r || f {
			t.Errorf("Flags(reset only, %d) = %v %v %v", size, c, r, f)
		}
	}
}

func TestBlockRoundTrip(t *testing.T) {
	for size := 1; size <= MaxHeadSize; size++ {
		for _, b := range []Block{
			{SQN: 0, Head: 0, Payload: []byte{}},
			{SQN: 1<<64 - 1, Head: HeadLimit(size), Payload: []byte("x")},
			{SQN: 42, Head: HeadMask(size, BitFinished) | 1, Payload: bytes.Repeat([]byte{7}, 300)},
		} {
			wire := AppendBlock([]byte("pre"), b, size)
			if len(wire) != 3+BlockOverhead(size)+len(b.Payload) {
				t.Errorf("head %d: wire length %d", size, len(wire))
			}
			got, err := DecodeBlock(wire[3:], size)
			if err != nil || !reflect.DeepEqual(got, b) {
				t.Errorf("head %d: %+v decoded to %+v, %v", size, b, got, err)
			}
		}
	}
}

func TestDecodeBlockErrors(t *testing.T) {
	if _, err := DecodeBlock(make([]byte, 8), 1); !errors.Is(err, ErrShortBlock) {
		t.Errorf("8 bytes with head 1: %v", err)
	}
	if b, err := DecodeBlock(make([]byte, 9), 1); err != nil || len(b.Payload) != 0 {
		t.Errorf("9 bytes with head 1: %+v, %v", b, err)
	}
	for _, size := range []int{0, -1, 5} {
		if _, err := DecodeBlock(make([]byte, 20), size); err == nil {
			t.Errorf("head size %d accepted", size)
		}
	}
}

func TestBatchRoundTrip(t *testing.T) {
	for size := 1; size <= MaxHeadSize; size++ {
		var blocks []Block
		var batch []byte
		for i := range 10 {
			b := Block{SQN: uint64(100 + i), Head: uint32(i) & HeadLimit(size), Payload: bytes.Repeat([]byte{byte(i)}, i)}
			blocks = append(blocks, b)
			batch = AppendBatchEntry(batch, b, size)
		}
		var got []Block
		err := SplitBatch(batch, size, func(b Block) error {
			got = append(got, b)
			return nil
		})
		if err != nil || !reflect.DeepEqual(got, blocks) {
			t.Errorf("head %d: batch gave %+v, %v", size, got, err)
		}
	}
	if err := SplitBatch(nil, 1, func(Block) error { return errors.New("called") }); err != nil {
		t.Errorf("empty batch: %v", err)
	}
	stop := errors.New("stop")
	batch := AppendBatchEntry(AppendBatchEntry(nil, Block{SQN: 1}, 1), Block{SQN: 2}, 1)
	calls := 0
	if err := SplitBatch(batch, 1, func(Block) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("callback error: %v after %d calls", err, calls)
	}
}

func TestSplitBatchErrors(t *testing.T) {
	good := AppendBatchEntry(nil, Block{SQN: 1, Payload: []byte("ab")}, 1)
	for _, tc := range []struct {
		what  string
		batch []byte
		msg   string
	}{
		{"truncated length", append(append([]byte{}, good...), 0, 0), "truncated length at byte 15"},
		{"long claim", append(append([]byte{}, good...), 0, 0, 0, 50, 1), "block at byte 15 claims 50 bytes, 1 remain"},
		{"short block", append(append([]byte{}, good...), 0, 0, 0, 2, 1, 2), "block at byte 15"},
	} {
		err := SplitBatch(tc.batch, 1, func(Block) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %v, want %q", tc.what, err, tc.msg)
		}
	}
}

func TestBeginsRestartIsTheResetBitOrSQN1(t *testing.T) {
	for _, c := range []struct {
		b    Block
		size int
		want bool
	}{
		{Block{SQN: 1}, 1, true},
		{Block{SQN: 5, Head: HeadMask(1, BitReset)}, 1, true},
		{Block{SQN: 5, Head: HeadMask(2, BitReset)}, 2, true},
		{Block{SQN: 5, Head: HeadMask(1, BitCorrupted) | HeadMask(1, BitFinished)}, 1, false},
		{Block{SQN: 5}, 1, false},
	} {
		if got := BeginsRestart(c.b, c.size); got != c.want {
			t.Errorf("BeginsRestart(%+v, %d) = %v, want %v", c.b, c.size, got, c.want)
		}
	}
}
