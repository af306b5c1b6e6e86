package benchkit

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// within reports whether got is within 1 % of want (exact below 128).
func within(got, want int64) bool {
	if want < subCount {
		return got == want
	}
	return math.Abs(float64(got-want)) <= float64(want)/100
}

func TestHistogramSmallValuesExact(t *testing.T) {
	h := NewHistogram()
	for v := int64(1); v <= 100; v++ {
		h.Record(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0, 1}, {1, 1}, {50, 50}, {99, 99}, {99.9, 100}, {100, 100}} {
		if got := h.Percentile(c.q); got != c.want {
			t.Errorf("p%v = %d, want %d", c.q, got, c.want)
		}
	}
	if h.Count() != 100 || h.Min() != 1 || h.Max() != 100 || h.Mean() != 50.5 {
		t.Errorf("count %d min %d max %d mean %v", h.Count(), h.Min(), h.Max(), h.Mean())
	}
}

func TestHistogramPercentilesOfKnownData(t *testing.T) {
	// 1..100000 µs in nanoseconds, shuffled: rank r holds r µs.
	const n = 100000
	vals := make([]int64, n)
	for i := range vals {
		vals[i] = int64(i+1) * 1000
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(n, func(i, j int) { vals[i], vals[j] = vals[j], vals[i] })
	h := NewHistogram()
	for _, v := range vals {
		h.Record(v)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{50, 50000e3}, {90, 90000e3}, {99, 99000e3}, {99.9, 99900e3}, {99.99, 99990e3}, {100, 100000e3}} {
		if got := h.Percentile(c.q); !within(got, c.want) {
			t.Errorf("p%v = %d, want %d ± 1%%", c.q, got, c.want)
		}
	}
	if h.Min() != 1000 || h.Max() != 100000e3 {
		t.Errorf("min %d max %d", h.Min(), h.Max())
	}
}

func TestHistogramAgainstSortedSample(t *testing.T) {
	// A long-tailed distribution, as latencies are: compare with exact order statistics.
	r := rand.New(rand.NewPCG(3, 4))
	h := NewHistogram()
	vals := make([]int64, 50000)
	for i := range vals {
		vals[i] = int64(math.Exp(r.NormFloat64()*1.5+12)) + 50
		h.Record(vals[i])
	}
	slices.Sort(vals)
	for _, q := range []float64{10, 50, 75, 99, 99.9} {
		rank := int(math.Ceil(q / 100 * float64(len(vals))))
		want := vals[rank-1]
		if got := h.Percentile(q); !within(got, want) {
			t.Errorf("p%v = %d, exact %d", q, got, want)
		}
	}
}

func TestHistogramEdges(t *testing.T) {
	h := NewHistogram()
	if h.Percentile(50) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Error("empty histogram is not all zero")
	}
	h.Record(-5) // counts as 0
	h.Record(1 << 50)
	if h.Min() != 0 || h.Max() != 1<<50 {
		t.Errorf("min %d max %d", h.Min(), h.Max())
	}
	if got := h.Percentile(100); got != 1<<50 {
		t.Errorf("p100 = %d, want the max (clamped bucket)", got)
	}
	if got := h.Percentile(50); got != 0 {
		t.Errorf("p50 = %d, want 0", got)
	}

	a, b := NewHistogram(), NewHistogram()
	for v := int64(1); v <= 50; v++ {
		a.Record(v)
		b.Record(v + 50)
	}
	a.Merge(b)
	a.Merge(nil)
	if a.Count() != 100 || a.Percentile(50) != 50 || a.Max() != 100 || a.Min() != 1 {
		t.Errorf("merged: count %d p50 %d min %d max %d", a.Count(), a.Percentile(50), a.Min(), a.Max())
	}
	a.Reset()
	if a.Count() != 0 || a.Percentile(99) != 0 {
		t.Error("reset histogram not empty")
	}
}

func TestHistogramBuckets(t *testing.T) {
	// Every bucket's range maps back onto it, the ranges tile the values without gaps, and no
	// bucket is wider than 1/128 of its smallest value.
	next := int64(0)
	for i := range numBuckets - 1 {
		low, width := bucketRange(i)
		if low != next {
			t.Fatalf("bucket %d starts at %d, want %d", i, low, next)
		}
		if bucketOf(low) != i || bucketOf(low+width-1) != i {
			t.Fatalf("bucket %d [%d, %d) does not map back", i, low, low+width)
		}
		if low >= subCount && width*subCount > low {
			t.Fatalf("bucket %d: width %d at %d", i, width, low)
		}
		next = low + width
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := NewHistogram()
	v := int64(1)
	if n := testing.AllocsPerRun(1000, func() { h.Record(v); v = v*3 + 7 }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}
