package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/marvelo/marvelo/codec"
)

// Head is the head of a block: Size bytes (1 to 4) of flags, bit 0 being the most significant bit
// of the first byte. Bits 0, 1 and 2 are reserved (corrupted, reset, finished); the rest belong
// to the user. Every mask derives from Size: nothing assumes one byte.
//
// Head is a value: every operation returns a new Head of the receiver's size, masked to its width
// (the original's ~ and << were not, so ~Head(0,1) was -1; here it is 255). Two Heads compare
// strictly with ==; Equal compares values only, like the original's ==.
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

// ErrHeadSize is returned for a head value or byte string that does not fit the head size.
var ErrHeadSize = errors.New("header has unexpected size")

// Omit stands for an omitted slice bound or step, as the empty places in Python's h[5:] or h[::-1].
const Omit = math.MinInt

// NewHead returns a head of size bytes holding value, masked to the width. A size outside 1..4 is
// clamped; use HeadOf to have a value that does not fit reported instead.
func NewHead(value uint32, size int) Head {
	size = clampSize(size)
	return Head{Value: value & codec.HeadLimit(size), Size: size}
}

// HeadOf returns a head of size bytes holding value, or ErrHeadSize if value needs more bits than
// the head has (PKT-2: 256 does not fit one byte).
func HeadOf(value uint64, size int) (Head, error) {
	if size < 1 || size > codec.MaxHeadSize {
		return Head{}, fmt.Errorf("head size %d out of range 1..%d", size, codec.MaxHeadSize)
	}
	if value > uint64(codec.HeadLimit(size)) {
		return Head{}, fmt.Errorf("%w: %d does not fit %d byte(s)", ErrHeadSize, value, size)
	}
	return Head{Value: uint32(value), Size: size}, nil
}

// ParseHead reads a head of size bytes from b, big-endian; b must hold exactly size bytes.
func ParseHead(b []byte, size int) (Head, error) {
	if size < 1 || size > codec.MaxHeadSize {
		return Head{}, fmt.Errorf("head size %d out of range 1..%d", size, codec.MaxHeadSize)
	}
	if len(b) != size {
		return Head{}, fmt.Errorf("%w: %d byte(s) for a %d-byte head", ErrHeadSize, len(b), size)
	}
	var v uint32
	for _, c := range b {
		v = v<<8 | uint32(c)
	}
	return Head{Value: v, Size: size}, nil
}

func clampSize(size int) int {
	return min(max(size, 1), codec.MaxHeadSize)
}

func (h Head) size() int { return clampSize(h.Size) }

// limit is the mask of every bit of the head.
func (h Head) limit() uint32 { return codec.HeadLimit(h.size()) }

// with returns a head of h's size holding v, masked.
func (h Head) with(v uint32) Head { return Head{Value: v & h.limit(), Size: h.size()} }

// Bits is the number of bits in the head.
func (h Head) Bits() int { return 8 * h.size() }

// Bytes returns the head in its wire form: Size bytes, big-endian.
func (h Head) Bytes() []byte { return codec.AppendHead(nil, h.Value, h.size()) }

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

// bit reads the bit at position p from the most significant bit; p must be in range.
func (h Head) bit(p int) bool { return h.Value&codec.HeadMask(h.size(), p) != 0 }

// Bit reports whether bit i is set. It panics on an index out of range, like a slice.
func (h Head) Bit(i int) bool {
	p, err := h.index(i)
	if err != nil {
		panic(err)
	}
	return h.bit(p)
}

// With returns the head with bit i set to v. Setting the reset bit is ErrReservedBit (clearing it
// is allowed); an index out of range is an error.
func (h Head) With(i int, v bool) (Head, error) {
	p, err := h.index(i)
	if err != nil {
		return h, err
	}
	mask := codec.HeadMask(h.size(), p)
	if !v {
		return h.with(h.Value &^ mask), nil
	}
	if p == BitReset {
		return h, ErrReservedBit
	}
	return h.with(h.Value | mask), nil
}

// Corrupted reports the corrupted (dummy) bit.
func (h Head) Corrupted() bool { return h.Bit(BitCorrupted) }

// Reset reports the reset bit.
func (h Head) Reset() bool { return h.Bit(BitReset) }

// Finished reports the finished bit.
func (h Head) Finished() bool { return h.Bit(BitFinished) }

// Slice returns the bits start, start+step, ... up to but excluding stop, read as a big-endian
// number, in a head of h's size: Python's h[start:stop:step]. Negative bounds count from the end,
// bounds beyond the head are clamped, and Omit stands for an omitted bound or step (step Omit is
// 1). A step of 0 panics, as it raises in Python.
//
//	h.Slice(0, 7, 1)        // h[0:7]
//	h.Slice(5, Omit, Omit)  // h[5:]
//	h.Slice(Omit, Omit, -1) // h[::-1]
func (h Head) Slice(start, stop, step int) Head {
	if step == Omit {
		step = 1
	}
	if step == 0 {
		panic("pipeline.Head.Slice: step must not be zero")
	}
	start, stop = sliceBounds(h.Bits(), start, stop, step)
	var v uint32
	for i := start; (step > 0 && i < stop) || (step < 0 && i > stop); i += step {
		v <<= 1
		if h.bit(i) {
			v |= 1
		}
	}
	return h.with(v)
}

// sliceBounds normalises slice bounds for a sequence of n items the way Python's slice.indices
// does: negative bounds count from the end and are clamped; omitted ones depend on the step's sign.
func sliceBounds(n, start, stop, step int) (int, int) {
	lower, upper := 0, n
	if step < 0 {
		lower, upper = -1, n-1
	}
	norm := func(i, omitted int) int {
		switch {
		case i == Omit:
			return omitted
		case i < 0:
			return max(i+n, lower)
		default:
			return min(i, upper)
		}
	}
	if step < 0 {
		return norm(start, upper), norm(stop, lower)
	}
	return norm(start, lower), norm(stop, upper)
}

// And returns the bitwise and of h and o, in h's size.
func (h Head) And(o Head) Head { return h.with(h.Value & o.Value) }

// Or returns the bitwise or of h and o, in h's size.
func (h Head) Or(o Head) Head { return h.with(h.Value | o.Value) }

// Xor returns the bitwise exclusive or of h and o, in h's size.
func (h Head) Xor(o Head) Head { return h.with(h.Value ^ o.Value) }

// AndInt returns the bitwise and of h and v, masked to h's width.
func (h Head) AndInt(v uint32) Head { return h.with(h.Value & v) }

// OrInt returns the bitwise or of h and v, masked to h's width.
func (h Head) OrInt(v uint32) Head { return h.with(h.Value | v) }

// XorInt returns the bitwise exclusive or of h and v, masked to h's width.
func (h Head) XorInt(v uint32) Head { return h.with(h.Value ^ v) }

// Not returns h with every bit inverted, masked to its width: Not of a zero 1-byte head is 255.
func (h Head) Not() Head { return h.with(^h.Value) }

// Shl shifts h left by n bits; bits shifted past the width are lost. A negative n panics, like
// Go's shift operators.
func (h Head) Shl(n int) Head {
	if n < 0 {
		panic("pipeline.Head.Shl: negative shift count")
	}
	if n >= 32 {
		return h.with(0)
	}
	return h.with(h.Value << uint(n))
}

// Shr shifts h right by n bits. A negative n panics, like Go's shift operators.
func (h Head) Shr(n int) Head {
	if n < 0 {
		panic("pipeline.Head.Shr: negative shift count")
	}
	if n >= 32 {
		return h.with(0)
	}
	return h.with(h.Value >> uint(n))
}

// Equal reports whether h and o hold the same value, whatever their sizes (the original's ==).
func (h Head) Equal(o Head) bool { return h.Value == o.Value }

// EqualInt reports whether h holds the value v.
func (h Head) EqualInt(v uint32) bool { return h.Value == v }

// IsZero is the truth test by value: a head is false when no bit is set. (The original's Head
// objects were always true, so `if self.head & 1` never failed.)
func (h Head) IsZero() bool { return h.Value == 0 }

// Resize returns the head grown or shrunk by delta bytes, keeping bit positions counted from the
// most significant bit (the original's head_size setter, which takes a delta): +n appends n zero
// bytes, or changes nothing if the head would exceed 4 bytes; -n drops the n last bytes, keeping
// at least the first one; 0 changes nothing.
func (h Head) Resize(delta int) Head {
	size := h.size()
	switch {
	case delta > 0 && size+delta <= codec.MaxHeadSize:
		return Head{Value: h.Value << (8 * uint(delta)), Size: size + delta}
	case delta < 0:
		to := max(size+delta, 1)
		return Head{Value: h.Value >> (8 * uint(size-to)), Size: to}
	}
	return h.with(h.Value)
}

// String shows the head's bits, most significant first: "HEAD: 00001100".
func (h Head) String() string {
	var b strings.Builder
	b.WriteString("HEAD: ")
	for i := 0; i < h.Bits(); i++ {
		if h.bit(i) {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}
