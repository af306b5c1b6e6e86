// Package cacheline keeps memory that one goroutine writes on every block off the cache lines of
// other memory.
//
// The jobs of a chain run on several cores at once, and each writes a few small objects on every
// round: its heads, its output buffers, its checker's round, its publisher's batch. Go's
// allocator packs small objects of one size class side by side (objects under 16 bytes without
// pointers even share one 16-byte block), so the objects of two jobs started together often
// share a cache line, and every round of each then takes that line from the other core: the
// chained 64 B line spent a fifth of its CPU on one load in job.Context.BeginBlock in one run,
// and nothing in another, as the layout fell (docs/performance.md, session 15). Padding such
// memory makes its cost the same in every run.
package cacheline

import "unsafe"

// Size is the span kept free on each side of padded memory: two 64-byte lines, since x86's
// spatial prefetcher fetches lines in pairs and arm64 machines have 128-byte lines.
const Size = 128

// Pad is a field that keeps the fields after it off the cache lines of what precedes it: put one
// first and one last in a struct whose fields are written on every block.
type Pad [Size]byte

// Slice returns an empty slice of capacity n whose elements share no cache line with any other
// memory: it is cut from the middle of a larger allocation. Appending beyond n moves it to an
// allocation of its own, unpadded, so n must be the most it will hold.
func Slice[T any](n int) []T {
	pad := margin(int(unsafe.Sizeof(*new(T))))
	s := make([]T, n+2*pad)
	return s[pad : pad : pad+n]
}

// Make returns a slice of length n, padded as Slice's.
func Make[T any](n int) []T { return Slice[T](n)[:n] }

// margin is how many elements of size bytes cover Size bytes.
func margin(size int) int {
	if size == 0 {
		return 0
	}
	return (Size + size - 1) / size
}
