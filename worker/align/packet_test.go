package align

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
)

// SPEC §9.1, the block ("packet") wire format of DESIGN §6: SQN (8 bytes BE) | head | payload.

// SPEC PKT1: raw bytes SQN=2 ‖ 0b11100000 ‖ 16 data bytes: SQN 2, head 224, the 16 bytes, and the
// whole round-trips exactly.
func TestABlockDecodesToItsSQNHeadAndPayloadAndReencodesToTheSameBytes(t *testing.T) {
	payload := []byte("0123456789abcdef")
	raw := append([]byte{0, 0, 0, 0, 0, 0, 0, 2, 0b11100000}, payload...)
	b, err := codec.DecodeBlock(raw, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b.SQN != 2 || b.Head != 224 || !bytes.Equal(b.Payload, payload) {
		t.Errorf("decoded %+v", b)
	}
	if again := codec.AppendBlock(nil, b, 1); !bytes.Equal(again, raw) {
		t.Errorf("re-encoded %x, want %x", again, raw)
	}
}

// SPEC PKT2: setting the head of a block: the byte 0x6F → 111, the int 255 → 255, 256 or two bytes
// → "header has unexpected size"; the block then carries it on the wire.
func TestAHeadFromAByteOrAnIntIsWrittenOnTheWireAndAWiderOneIsRefused(t *testing.T) {
	b := codec.Block{SQN: 1}
	h, err := pipeline.ParseHead([]byte{0x6F}, 1)
	if err != nil || h.Value != 111 {
		t.Fatalf("0x6F: %v, %v", h, err)
	}
	b.Head = h.Value
	if wire := codec.AppendBlock(nil, b, 1); wire[8] != 0x6F {
		t.Errorf("wire head %#x", wire[8])
	}
	if h, err := pipeline.HeadOf(255, 1); err != nil || h.Value != 255 {
		t.Errorf("255: %v, %v", h, err)
	}
	for _, bad := range []func() error{
		func() error { _, err := pipeline.HeadOf(256, 1); return err },
		func() error { _, err := pipeline.ParseHead([]byte{0, 0}, 1); return err },
	} {
		if err := bad(); !errors.Is(err, pipeline.ErrHeadSize) || !strings.HasPrefix(err.Error(), "header has unexpected size") {
			t.Errorf("error %v", err)
		}
	}
}

// SPEC PKT3: with head 11100000 the three flags are set; clearing each clears only that one.
func TestClearingOneWireFlagClearsOnlyThatFlagAtEveryHeadSize(t *testing.T) {
	for size := 1; size <= codec.MaxHeadSize; size++ {
		all := codec.HeadMask(size, 0) | codec.HeadMask(size, 1) | codec.HeadMask(size, 2)
		if c, r, f := codec.Flags(all, size); !c || !r || !f {
			t.Fatalf("size %d: flags %v %v %v", size, c, r, f)
		}
		for bit := range 3 {
			c, r, f := codec.Flags(all&^codec.HeadMask(size, bit), size)
			if got := [3]bool{c, r, f}; got[bit] || got[(bit+1)%3] != true || got[(bit+2)%3] != true {
				t.Errorf("size %d, bit %d cleared: %v", size, bit, got)
			}
		}
	}
}

// SPEC PKT4: dummy(5, block size 0): SQN 5, empty data, corrupted but neither finished nor reset;
// dummy(10, 1000): 1000 zero bytes.
func TestADummyIsCorruptedNotResetNorFinishedWithZerosOfTheBlockSize(t *testing.T) {
	d := Dummy(5, 1, make([]byte, 0))
	c, r, f := codec.Flags(d.Head, 1)
	if d.SQN != 5 || len(d.Payload) != 0 || !c || r || f {
		t.Errorf("dummy(5, 0) = %+v, flags %v %v %v", d, c, r, f)
	}
	d = Dummy(10, 1, make([]byte, 1000))
	if d.SQN != 10 || !bytes.Equal(d.Payload, make([]byte, 1000)) {
		t.Errorf("dummy(10, 1000) payload %d bytes", len(d.Payload))
	}
	if wire := codec.AppendBlock(nil, d, 1); len(wire) != 8+1+1000 || wire[8] != hCor {
		t.Errorf("dummy on the wire: %d bytes, head %#x", len(wire), wire[8])
	}
	for size := 2; size <= codec.MaxHeadSize; size++ {
		if d := Dummy(1, size, nil); d.Head != codec.HeadMask(size, codec.BitCorrupted) {
			t.Errorf("size %d dummy head %#x", size, d.Head)
		}
	}
}
