package pipeline

import (
	"errors"
	"fmt"
	"testing"
)

// h12 is the H of SPEC §9.2: Head(12, 1) = 00001100.
var h12 = NewHead(12, 1)

// SPEC HEAD1: head_size takes a delta: +1 → size 2, value 3072; −1 → size 1, value 12; −4 → size 1,
// value 12.
func TestResizingAHeadAddsOrDropsLowBytesWithinOneToFourBytes(t *testing.T) {
	steps := []struct {
		delta       int
		size, value int
	}{{+1, 2, 3072}, {-1, 1, 12}, {-4, 1, 12}}
	h := h12
	for _, s := range steps {
		h = h.Resize(s.delta)
		if h.Size != s.size || h.Value != uint32(s.value) {
			t.Fatalf("Resize(%+d) = size %d value %d, want size %d value %d", s.delta, h.Size, h.Value, s.size, s.value)
		}
	}
	// Beyond 4 bytes nothing changes; shrinking keeps the most significant bytes.
	if got := NewHead(0x80, 1).Resize(4); got != NewHead(0x80, 1) {
		t.Errorf("Resize(+4) of a 1-byte head = %v, want unchanged", got)
	}
	if got := NewHead(0x81020304, 4).Resize(-2); got != NewHead(0x8102, 2) {
		t.Errorf("Resize(-2) of 0x81020304 = %#x size %d, want 0x8102 size 2", got.Value, got.Size)
	}
	if got := NewHead(0x8102, 2).Resize(0); got != NewHead(0x8102, 2) {
		t.Errorf("Resize(0) changed the head: %v", got)
	}
}

// SPEC HEAD2: slices of H; each compares equal to the int and to Head(int, 1).
func TestHeadSlicesFollowPythonSliceRulesAndStayOneByte(t *testing.T) {
	for _, tc := range []struct {
		py                string
		start, stop, step int
		want              uint32
	}{
		{"[0:7]", 0, 7, Omit, 6},
		{"[0:3]", 0, 3, Omit, 0},
		{"[0:7:2]", 0, 7, 2, 2},
		{"[5:]", 5, Omit, Omit, 4},
		{"[::-1]", Omit, Omit, -1, 48},
		{"[-2:-8:-2]", -2, -8, -2, 2},
		// Python's clamping of out-of-range bounds.
		{"[-100:100]", -100, 100, 1, 12},
		{"[100:0:-1]", 100, 0, -1, 24},
		{"[3:1]", 3, 1, 1, 0},
	} {
		got := h12.Slice(tc.start, tc.stop, tc.step)
		if !got.EqualInt(tc.want) || !got.Equal(NewHead(tc.want, 1)) || got.Size != 1 {
			t.Errorf("H%s = %v (size %d), want %d", tc.py, got, got.Size, tc.want)
		}
	}
}

func TestHeadSliceZeroStepPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Slice with step 0 did not panic")
		}
	}()
	h12.Slice(0, 8, 0)
}

// SPEC HEAD3: index reads, negative indexes counting from the least significant bit.
func TestHeadIndexesCountFromTheMostSignificantBitAndNegativeOnesFromTheLeast(t *testing.T) {
	for i, want := range map[int]bool{0: false, 5: true, -1: false, -3: true, -4: true, -5: false, -8: false} {
		if got := h12.Bit(i); got != want {
			t.Errorf("H[%d] = %v, want %v", i, got, want)
		}
	}
}

// SPEC HEAD4: [-8]=1 → 140; then [7]=1 → 141; then [-3]=0 → 137.
func TestSettingAHeadBitByIndexChangesOnlyThatBit(t *testing.T) {
	h := h12
	for _, s := range []struct {
		index int
		v     bool
		want  uint32
	}{{-8, true, 140}, {7, true, 141}, {-3, false, 137}} {
		var err error
		if h, err = h.With(s.index, s.v); err != nil || h.Value != s.want {
			t.Fatalf("H[%d]=%v gave %d, %v; want %d", s.index, s.v, h.Value, err, s.want)
		}
	}
}

// SPEC HEAD5: the reset bit cannot be set (by either index), only cleared; out-of-range indexes
// fail; or of two heads; ~Head(0,1) is 255 (Go correction: the original gives -1).
func TestTheResetBitCanBeClearedButNeverSetAndOutOfRangeIndexesFail(t *testing.T) {
	for _, i := range []int{1, -7} {
		if _, err := h12.With(i, true); !errors.Is(err, ErrReservedBit) {
			t.Errorf("H[%d]=1: error %v, want ErrReservedBit", i, err)
		}
	}
	if h, err := NewHead(0x40, 1).With(1, false); err != nil || h.Value != 0 {
		t.Errorf("H[1]=0 on a reset head: %v, %v; want 0, nil", h, err)
	}
	if _, err := h12.With(8, true); err == nil {
		t.Error("H[8]=1 accepted")
	}
	if _, err := h12.With(-9, false); err == nil {
		t.Error("H[-9]=0 accepted")
	}
	mustPanic(t, "H[8]", func() { h12.Bit(8) })
	mustPanic(t, "H[-9]", func() { h12.Bit(-9) })
	if got := NewHead(8, 1).Or(NewHead(1, 1)).String(); got != "HEAD: 00001001" {
		t.Errorf("Head(8,1) | Head(1,1) = %q", got)
	}
	if got := NewHead(0, 1).Not(); got.Value != 255 {
		t.Errorf("~Head(0,1) = %d, want 255", got.Value)
	}
	// In a 2-byte head the reset bit is 0x4000, its negative twin -15.
	h2 := NewHead(0, 2)
	for _, i := range []int{1, -15} {
		if _, err := h2.With(i, true); !errors.Is(err, ErrReservedBit) {
			t.Errorf("2-byte H[%d]=1: error %v, want ErrReservedBit", i, err)
		}
	}
	if h, err := h2.With(-7, true); err != nil || h.Value != 0x40 {
		t.Errorf("2-byte H[-7]=1 = %#x, %v; want 0x40 (a user bit)", h.Value, err)
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestHeadOperators(t *testing.T) {
	a := NewHead(0b11001010, 1)
	for _, tc := range []struct {
		what string
		got  Head
		want Head
	}{
		{"and", a.And(NewHead(0b10101010, 1)), NewHead(0b10001010, 1)},
		{"or", a.Or(NewHead(0b00000101, 1)), NewHead(0b11001111, 1)},
		{"xor", a.Xor(NewHead(0b11111111, 1)), NewHead(0b00110101, 1)},
		{"and int", a.AndInt(0x0F), NewHead(0b00001010, 1)},
		{"or int masked", a.OrInt(0x1FF), NewHead(0xFF, 1)},
		{"xor int", a.XorInt(0xFF), NewHead(0b00110101, 1)},
		{"shl masked", a.Shl(1), NewHead(0b10010100, 1)},
		{"shl past width", a.Shl(8), NewHead(0, 1)},
		{"shl 40", a.Shl(40), NewHead(0, 1)},
		{"shr", a.Shr(3), NewHead(0b00011001, 1)},
		{"shr 40", a.Shr(40), NewHead(0, 1)},
		{"not", a.Not(), NewHead(0b00110101, 1)},
		{"not 2 bytes", NewHead(0, 2).Not(), NewHead(0xFFFF, 2)},
		{"shl 2 bytes", NewHead(0x8001, 2).Shl(1), NewHead(0x0002, 2)},
		{"or keeps receiver size", a.Or(NewHead(0xFF00, 2)), a},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#b (size %d), want %#b (size %d)", tc.what, tc.got.Value, tc.got.Size, tc.want.Value, tc.want.Size)
		}
	}
	mustPanic(t, "Shl(-1)", func() { a.Shl(-1) })
	mustPanic(t, "Shr(-1)", func() { a.Shr(-1) })
}

func TestHeadTruthAndEquality(t *testing.T) {
	if !NewHead(0, 1).IsZero() || NewHead(0x80, 1).IsZero() {
		t.Error("IsZero is not by value")
	}
	// The original's pitfall: `if head & 1` must be false when bit 7 is clear.
	if !NewHead(0x80, 1).AndInt(1).IsZero() {
		t.Error("Head(0x80) & 1 is true")
	}
	// Equal compares values only (the original's ==); == is strict.
	if !NewHead(12, 1).Equal(NewHead(12, 2)) || NewHead(12, 1) == NewHead(12, 2) {
		t.Error("Equal should ignore size and == should not")
	}
}

func TestHeadString(t *testing.T) {
	for _, tc := range []struct {
		h    Head
		want string
	}{
		{h12, "HEAD: 00001100"},
		{NewHead(0x8001, 2), "HEAD: 1000000000000001"},
		{NewHead(0, 3), "HEAD: " + fmt.Sprintf("%024b", 0)},
	} {
		if got := tc.h.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

// SPEC PKT2 (the head setter of a packet): the byte 0x6F → 111, the int 255 → 255, and 256 or two
// bytes → "Header has unexpected size".
func TestAHeadParsesFromAByteOrAnIntAndAWiderValueIsRefused(t *testing.T) {
	if h, err := ParseHead([]byte{0x6F}, 1); err != nil || h.Value != 111 {
		t.Errorf("ParseHead(0x6F) = %v, %v; want 111", h, err)
	}
	if h, err := HeadOf(255, 1); err != nil || h.Value != 255 {
		t.Errorf("HeadOf(255) = %v, %v; want 255", h, err)
	}
	if _, err := HeadOf(256, 1); !errors.Is(err, ErrHeadSize) {
		t.Errorf("HeadOf(256, 1): %v, want ErrHeadSize", err)
	}
	if _, err := ParseHead([]byte{0, 1}, 1); !errors.Is(err, ErrHeadSize) {
		t.Errorf("ParseHead(2 bytes, 1): %v, want ErrHeadSize", err)
	}
	if h, err := ParseHead([]byte{0x12, 0x34}, 2); err != nil || h.Value != 0x1234 || string(h.Bytes()) != "\x12\x34" {
		t.Errorf("ParseHead(0x1234, 2) = %v, %v", h, err)
	}
	for _, size := range []int{0, 5} {
		if _, err := HeadOf(1, size); err == nil {
			t.Errorf("HeadOf(1, %d) accepted", size)
		}
		if _, err := ParseHead(make([]byte, size), size); err == nil {
			t.Errorf("ParseHead(%d bytes, %d) accepted", size, size)
		}
	}
}

// SPEC PKT3: with head 11100000, corrupted, finished and reset are all true; clearing each flag
// makes only that flag false. Checked for every head size: the masks derive from the size.
func TestClearingOneHeadFlagClearsOnlyThatFlagAtEveryHeadSize(t *testing.T) {
	for size := 1; size <= 4; size++ {
		all := NewHead(0b111<<(8*uint(size)-3), size)
		if !all.Corrupted() || !all.Reset() || !all.Finished() {
			t.Fatalf("size %d: %v does not show all three flags", size, all)
		}
		for bit := BitCorrupted; bit <= BitFinished; bit++ {
			h, err := all.With(bit, false)
			if err != nil {
				t.Fatal(err)
			}
			flags := []bool{h.Corrupted(), h.Reset(), h.Finished()}
			for b, set := range flags {
				if set != (b != bit) {
					t.Errorf("size %d, bit %d cleared: flags %v", size, bit, flags)
				}
			}
		}
	}
}
