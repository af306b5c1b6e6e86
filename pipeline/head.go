package pipeline

import (
	"errors"
	"fmt"
	"strings"

	"github.com/marvelo/marvelo/codec"
)

// Head is the head of a block: Size bytes (1 to 4) of flags, bit 0 being the most significant bit
// of the first byte. Bits 0, 1 and 2 are reserved (corrupted, reset, finished); the rest belong
// to the user. Every mask derives from Size: nothing assumes one byte.
type Head struct {
	Value uint32
	Size  int
}

// Reserved bits.
const (
	BitCorrupted = codec.BitCorrupted
	BitReset     = codec.BitReset
	BitFinished  = codec.BitFinished
)

// ErrReservedBit is returned when a job tries to set the reset bit, which only the system sets.
var ErrReservedBit = errors.New("bit is not allowed to set: the reset bit belongs to the system")

// NewHead returns a head of size bytes holding value, masked to the width.
func NewHead(value uint32, size int) Head {
	if size < 1 {
		size = 1
	}
	if size > codec.MaxHeadSize {
		size = codec.MaxHeadSize
	}
	return Head{Value: value & codec.HeadLimit(size), Size: size}
}

func (h Head) size() int {
	if h.Size < 1 {
		return 1
	}
	return h.Size
}

// Bits is the number of bits in the head.
func (h Head) Bits() int { return 8 * h.size() }

// index turns a bit index (negative counts from the least significant bit: -1 is the last bit)
// into a position from the most significant bit.
func (h Head) index(i int) (int, error) {
	n := h.Bits()
	if i < -n || i >= n {
		return 0, fmt.Errorf("head bit %d out of range for a %d-byte head", i, h.size())
	}
	if i < 0 {
		i += n
	}
	return i, nil
}

// Bit reports whether bit i is set. It panics on an index out of range, like a slice.
func (h Head) Bit(i int) bool {
	p, err := h.index(i)
	if err != nil {
		panic(err)
	}
	return h.Value&codec.HeadMask(h.size(), p) != 0
}

// With returns the head with bit i set to v. Setting the reset bit is an error.
func (h Head) With(i int, v bool) (Head, error) {
	p, err := h.index(i)
	if err != nil {
		return h, err
	}
	mask := codec.HeadMask(h.size(), p)
	if !v {
		h.Value &^= mask
		return h, nil
	}
	if p == BitReset {
		return h, ErrReservedBit
	}
	h.Value |= mask
	return h, nil
}

// Corrupted reports the corrupted (dummy) bit.
func (h Head) Corrupted() bool { return h.Bit(BitCorrupted) }

// Reset reports the reset bit.
func (h Head) Reset() bool { return h.Bit(BitReset) }

// Finished reports the finished bit.
func (h Head) Finished() bool { return h.Bit(BitFinished) }

// Or returns the bitwise or of two heads of the same size.
func (h Head) Or(o Head) Head { return NewHead(h.Value|o.Value, h.size()) }

// IsZero is the truth test by value: a head is false when no bit is set.
func (h Head) IsZero() bool { return h.Value == 0 }

// String shows the head's bits, most significant first.
func (h Head) String() string {
	var b strings.Builder
	b.WriteString("HEAD: ")
	for i := 0; i < h.Bits(); i++ {
		if h.Bit(i) {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}
