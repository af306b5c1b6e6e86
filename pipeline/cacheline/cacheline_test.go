package cacheline

import (
	"testing"
	"unsafe"
)

// TestASliceSharesNoCacheLineWithOtherMemory checks that the elements kept free on each side of
// a padded slice cover at least Size bytes, for elements smaller and larger than a line, and that
// the slice holds n elements in place.
func TestASliceSharesNoCacheLineWithOtherMemory(t *testing.T) {
	for _, size := range []int{1, 4, 24, 40, 100, Size, 3 * Size} {
		if m := margin(size) * size; m < Size || m >= Size+size {
			t.Errorf("element of %d B: margin %d B, want at least %d and less than one element more", size, m, Size)
		}
	}
	for _, n := range []int{1, 3, 16} {
		s := Slice[uint32](n)
		if len(s) != 0 || cap(s) != n {
			t.Fatalf("Slice[uint32](%d): len %d cap %d, want 0 and %d", n, len(s), cap(s), n)
		}
		first := unsafe.SliceData(s[:1])
		for i := range n {
			s = append(s, uint32(i))
		}
		if unsafe.SliceData(s) != first {
			t.Errorf("Slice[uint32](%d) moved while filled to its capacity", n)
		}
	}
}

func TestMakeIsAPaddedSliceOfLengthN(t *testing.T) {
	s := Make[bool](3)
	if len(s) != 3 || cap(s) != 3 {
		t.Errorf("Make[bool](3): len %d cap %d, want 3 and 3", len(s), cap(s))
	}
}
