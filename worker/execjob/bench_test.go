//go:build linux

package execjob

import (
	"context"
	"fmt"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// BenchmarkAdapter measures the adapter alone: blocks fed from memory with WriteRound, through a
// cat-like C program (CatC, compiled here), drained to memory with ReadOutput, in fifo and fd
// mode; "raw" is the machine's ceiling in the same run: Go writes the same bytes to a named pipe
// read by the system's cat, and reads them back through another named pipe.
//
//	go test -run '^$' -bench Adapter -benchtime 20000x ./worker/execjob/
func BenchmarkAdapter(b *testing.B) {
	if _, err := BuildCatOnce(b); err != nil {
		b.Skip(err)
	}
	for _, size := range []int{4096, 64} {
		for _, mode := range []string{BenchRaw, pipeline.ModeFIFO, pipeline.ModeFD} {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				prog, _ := BuildCatOnce(b)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				// A cancellable context, as the worker's job context is.
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				b.ResetTimer()
				r, err := Bench(ctx, BenchOptions{
					Mode: mode, Program: prog, BlockSize: size, Blocks: b.N, WorkDir: b.TempDir(),
				})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.BlocksPerSec, "blocks/s")
				b.ReportMetric(r.MBPerSec, "payload-MB/s")
			})
		}
	}
}

// BuildCatOnce compiles CatC once per test binary.
func BuildCatOnce(tb testing.TB) (string, error) {
	catOnce.Do(func() { catBin, catErr = BuildCat(buildDir) })
	return catBin, catErr
}

// TestBench runs Bench briefly in every mode, so the benchmark code stays working.
func TestBench(t *testing.T) {
	prog, err := BuildCatOnce(t)
	if err != nil {
		t.Skip(err)
	}
	for _, mode := range []string{BenchRaw, pipeline.ModeFIFO, pipeline.ModeFD} {
		r, err := Bench(context.Background(), BenchOptions{Mode: mode, Program: prog, BlockSize: 4096, Blocks: 500, WorkDir: t.TempDir()})
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if r.Blocks != 500 || r.MBPerSec <= 0 || r.BlocksPerSec <= 0 {
			t.Errorf("%s: %+v", mode, r)
		}
		t.Log(r)
	}
}
