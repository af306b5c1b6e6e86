package execjob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
)

// CatC is a cat-like C program for benchmarks: it copies its one input to its one output in
// chunks of whatever is available, whatever the framing, so a benchmark measures the adapter
// rather than the program. It takes the adapter's flags, -i IN -o OUT, with a path (fifo mode)
// or a descriptor number (fd mode); other arguments are ignored.
const CatC = `#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int stream(const char *v, int flags) {
	const char *p = v;
	while (*p >= '0' && *p <= '9') p++;
	if (*v && !*p) return atoi(v);
	return open(v, flags);
}
int main(int argc, char **argv) {
	int in = -1, out = -1;
	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "-i")) in = stream(argv[++i], O_RDONLY);
		else if (!strcmp(argv[i], "-o")) out = stream(argv[++i], O_WRONLY);
	}
	if (in < 0 || out < 0) return 2;
	static char buf[1 << 17];
	for (;;) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n == 0) return 0;
		if (n < 0) { if (errno == EINTR) continue; return 1; }
		for (ssize_t done = 0; done < n;) {
			ssize_t m = write(out, buf + done, n - done);
			if (m < 0) { if (errno == EINTR) continue; return 1; }
			done += m;
		}
	}
}
`

// BuildCat compiles CatC with the C compiler cc into dir and returns the program's path.
func BuildCat(dir string) (string, error) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		return "", errors.New("building the benchmark program needs a C compiler (cc) on PATH")
	}
	src := filepath.Join(dir, "marvelo-bench-cat.c")
	bin := filepath.Join(dir, "marvelo-bench-cat")
	if err := os.WriteFile(src, []byte(CatC), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command(cc, "-O2", "-o", bin, src).CombinedOutput(); err != nil {
		return "", fmt.Errorf("cc: %v: %s", err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// BenchRaw is the mode of Bench that measures the machine's ceiling without the adapter.
const BenchRaw = "raw"

// BenchOptions configures one Bench run.
type BenchOptions struct {
	// Mode is pipeline.ModeFIFO or pipeline.ModeFD (the adapter, running Program), or BenchRaw:
	// the same bytes written by Go to a named pipe read by the system's cat, whose output Go
	// reads back through another named pipe.
	Mode string
	// Program is a cat-like executable (BuildCat) for the adapter modes.
	Program   string
	BlockSize int // bytes per block (codec bytes)
	Blocks    int
	// WorkDir holds the named pipes; it must exist.
	WorkDir string
}

// BenchResult is the outcome of one Bench run. Elapsed runs from the first write to the last
// read; starting the program is not counted.
type BenchResult struct {
	Mode         string
	BlockSize    int
	Blocks       int
	Elapsed      time.Duration
	MBPerSec     float64 // payload megabytes (10^6 bytes) per second
	BlocksPerSec float64
}

func (r BenchResult) String() string {
	return fmt.Sprintf("%-4s %6d-byte blocks: %9.1f MB/s %12.0f blocks/s (%d blocks in %v)",
		r.Mode, r.BlockSize, r.MBPerSec, r.BlocksPerSec, r.Blocks, r.Elapsed.Round(time.Microsecond))
}

// Bench sends Blocks blocks of BlockSize bytes from memory through a cat-like program and back
// to memory, and measures the throughput: through the adapter (WriteRound, ReadOutput) in fifo
// or fd mode, or raw, for the ceiling of the machine.
func Bench(ctx context.Context, o BenchOptions) (BenchResult, error) {
	if o.BlockSize < 1 || o.Blocks < 1 {
		return BenchResult{}, errors.New("bench: BlockSize and Blocks must be positive")
	}
	var elapsed time.Duration
	var err error
	if o.Mode == BenchRaw {
		elapsed, err = benchRaw(ctx, o)
	} else {
		elapsed, err = benchAdapter(ctx, o)
	}
	if err != nil {
		return BenchResult{}, err
	}
	secs := elapsed.Seconds()
	return BenchResult{
		Mode: o.Mode, BlockSize: o.BlockSize, Blocks: o.Blocks, Elapsed: elapsed,
		MBPerSec:     float64(o.Blocks) * float64(o.BlockSize) / secs / 1e6,
		BlocksPerSec: float64(o.Blocks) / secs,
	}, nil
}

func benchAdapter(ctx context.Context, o BenchOptions) (time.Duration, error) {
	c, err := codec.New(codec.Bytes, o.BlockSize)
	if err != nil {
		return 0, err
	}
	spec := Spec{
		Pipeline: "bench", JobID: 1, WorkDir: o.WorkDir,
		Exec:   pipeline.Exec{Path: o.Program, Mode: o.Mode},
		Inputs: []Port{{Pipe: 1, Codec: c, BlockCount: 1}}, Outputs: []Port{{Pipe: 2, Codec: c, BlockCount: 1}},
	}
	p, err := Start(ctx, spec, nil)
	if err != nil {
		return 0, err
	}
	defer p.Stop(time.Second)
	var n int
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 0, o.BlockSize)
		for {
			_, _, err := p.ReadOutput(0, buf[:0])
			if err != nil {
				if err != io.EOF {
					rerr = err
				}
				return
			}
			n++
		}
	})
	block := bytes.Repeat([]byte{0xA5}, o.BlockSize)
	round := [][][]byte{{block}}
	start := time.Now()
	var werr error
	for range o.Blocks {
		if werr = p.WriteRound(ctx, round, nil); werr != nil {
			break
		}
	}
	if werr == nil {
		werr = p.CloseInputs()
	}
	if werr != nil {
		p.Stop(0)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(werr, rerr, p.Wait()); err != nil {
		return 0, err
	}
	if n != o.Blocks {
		return 0, fmt.Errorf("bench: %d blocks came back, %d were sent", n, o.Blocks)
	}
	return elapsed, nil
}

func benchRaw(ctx context.Context, o BenchOptions) (time.Duration, error) {
	cat, err := exec.LookPath("cat")
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp(o.WorkDir, ".marvelo-bench-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	for _, f := range []string{in, out} {
		if err := mkfifo(f); err != nil {
			return 0, err
		}
	}
	// Open every end here, without blocking: a reader before each writer. cat gets the reading
	// end of "in" as stdin and the writing end of "out" as stdout.
	r, err := os.OpenFile(out, os.O_RDONLY|oNonblock, 0)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	catOut, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	defer catOut.Close()
	catIn, err := os.OpenFile(in, os.O_RDONLY|oNonblock, 0)
	if err != nil {
		return 0, err
	}
	defer catIn.Close()
	if err := setBlocking(catIn); err != nil { // cat's reads must wait, not fail with EAGAIN
		return 0, err
	}
	w, err := os.OpenFile(in, os.O_WRONLY|oNonblock, 0)
	if err != nil {
		return 0, err
	}
	defer w.Close()
	growPipe(w) // as the adapter's pipes are (streams.go)
	growPipe(r)
	cmd := exec.CommandContext(ctx, cat)
	cmd.Stdin, cmd.Stdout = catIn, catOut
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	catIn.Close()
	catOut.Close()
	total := int64(o.Blocks) * int64(o.BlockSize)
	var got int64
	var rerr error
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Read(buf)
			got += int64(n)
			if err != nil {
				if err != io.EOF {
					rerr = err
				}
				return
			}
		}
	})
	block := bytes.Repeat([]byte{0xA5}, o.BlockSize)
	start := time.Now()
	var werr error
	for range o.Blocks {
		if _, werr = w.Write(block); werr != nil {
			break
		}
	}
	w.Close()
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(werr, rerr, cmd.Wait()); err != nil {
		return 0, err
	}
	if got != total {
		return 0, fmt.Errorf("bench: %d bytes came back, %d were sent", got, total)
	}
	return elapsed, nil
}
