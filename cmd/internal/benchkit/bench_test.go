package benchkit

import (
	"context"
	"fmt"
	"testing"
)

// Go benchmarks of the bench's own machinery and of the ceilings: `go test -run '^$' -bench .
// ./cmd/internal/benchkit/`. The relay benchmarks report msgs/s (b.N messages per publisher).

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	v := int64(12345)
	b.ReportAllocs()
	for b.Loop() {
		h.Record(v)
		v = (v*7 + 13) & (1<<30 - 1)
	}
}

func BenchmarkHistogramPercentile(b *testing.B) {
	h := NewHistogram()
	for v := int64(0); v < 100000; v++ {
		h.Record(v * 997)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Percentile(99.9)
	}
}

func BenchmarkNow(b *testing.B) {
	var s int64
	for b.Loop() {
		s += Now()
	}
	_ = s
}

func BenchmarkStampRoundTrip(b *testing.B) {
	buf := make([]byte, 64)
	var s int64
	for i := int64(0); b.Loop(); i++ {
		PutStamp(buf, i)
		s += Stamp(buf)
	}
	_ = s
}

func benchRelays(b *testing.B, run func(context.Context, RelayConfig) (RelayResult, error), topo Topology, size int) {
	s := startServer(b)
	b.SetBytes(int64(size))
	b.ResetTimer()
	res, err := run(context.Background(), RelayConfig{URL: s.URL(), Topology: topo, Size: size, Count: b.N})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSecond(), "msgs/s")
}

func BenchmarkCoreRelays(b *testing.B) {
	for _, size := range []int{64, 1024, 16384} {
		b.Run(fmt.Sprintf("linear2/%dB", size), func(b *testing.B) {
			benchRelays(b, CoreRelays, Topology{Sources: 1, Stages: 2}, size)
		})
	}
	b.Run("fanin3/64B", func(b *testing.B) { benchRelays(b, CoreRelays, Topology{Sources: 3, Stages: 1}, 64) })
}

func BenchmarkJetStreamRelays(b *testing.B) {
	b.Run("linear2/64B", func(b *testing.B) { benchRelays(b, JetStreamRelays, Topology{Sources: 1, Stages: 2}, 64) })
	b.Run("fanin3/64B", func(b *testing.B) { benchRelays(b, JetStreamRelays, Topology{Sources: 3, Stages: 1}, 64) })
}
