package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/benchkit"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
)

// The bench-only job types. They run in the worker that marvelo bench embeds, in the same
// process as the bench, so a source and a sink share one clock (benchkit.Now) and report to the
// bench through a probe named in their args. A remote worker does not carry them.

// benchRegistry is the registry of the bench's embedded worker: the builtin job types and the
// bench-only ones.
func benchRegistry() *job.Registry {
	reg := builtin.Registry()
	reg.Register("bench_source", "bench only: emits count blocks of size bytes, as fast as it can or paced at rate blocks/s with the send time in the first 8 bytes", func() any { return &benchSource{} })
	reg.Register("bench_join", "bench only: one block per round of its inputs, the one with the newest send time", func() any { return benchJoin{} })
	reg.Register("bench_sink", "bench only: counts blocks and, for stamped ones, records receive minus send time", func() any { return &benchSink{} })
	return reg
}

// benchWarmUp is how long a source waits for its warm-up block to reach the sink.
const benchWarmUp = 30 * time.Second

// probe is where the bench-only jobs of one run report: the sources when they start, the sink
// what it saw.
type probe struct {
	mu    sync.Mutex
	start int64 // benchkit.Now at the first block of the earliest source
	// startCPU and endCPU are the process CPU time at start and end: the figures count the
	// measured blocks only, not the pipeline's setup and teardown.
	startCPU, endCPU time.Duration
	late             int64 // paced blocks released more than an interval late, over all sources
	end              int64 // benchkit.Now at the sink's last block
	blocks           uint64
	hist             *benchkit.Histogram
	warm             chan struct{} // closed when the sink has received the warm-up block
	warmed           sync.Once
	done             chan struct{} // closed when the sink has reported
}

var probes = struct {
	sync.Mutex
	m    map[string]*probe
	next atomic.Uint64
}{m: map[string]*probe{}}

// newProbe registers a probe for one run; the caller drops it when done.
func newProbe() (string, *probe) {
	id := "p" + strconv.FormatUint(probes.next.Add(1), 10)
	p := &probe{warm: make(chan struct{}), done: make(chan struct{})}
	probes.Lock()
	probes.m[id] = p
	probes.Unlock()
	return id, p
}

func lookupProbe(id string) (*probe, error) {
	probes.Lock()
	defer probes.Unlock()
	p := probes.m[id]
	if p == nil {
		return nil, fmt.Errorf("probe %q not found: the bench-only job types run inside marvelo bench only", id)
	}
	return p, nil
}

func dropProbe(id string) {
	probes.Lock()
	delete(probes.m, id)
	probes.Unlock()
}

func (p *probe) started(t int64) {
	cpu := benchkit.ReadUsage().CPU()
	p.mu.Lock()
	if p.start == 0 || t < p.start {
		p.start, p.startCPU = t, cpu
	}
	p.mu.Unlock()
}

// benchSource emits Count blocks of Size bytes. Unpaced (Rate 0) it never reads the clock but
// once at the start; paced, it reads it once per block and writes that send time into the
// block's first 8 bytes.
//
// With a probe it first emits one warm-up block and waits until the sink has received it: every
// job on the way is running by then, so neither the throughput nor the latencies count the
// pipeline's start (an executable starting, consumers binding). The sink receives Count+1 blocks.
type benchSource struct {
	Size  int     `json:"size" marvelo:"required"`
	Count int     `json:"count" marvelo:"required"`
	Rate  float64 `json:"rate"`
	Probe string  `json:"probe"`
	// Codec "cbor" or "json": each block is one integer (the send time when paced, else its
	// index), encoded by the pipe's codec; "" sends bytes of Size.
	Codec string `json:"codec"`
}

func (b *benchSource) Validate() error {
	switch {
	case b.Size < 1:
		return fmt.Errorf("size %d: want at least 1 byte", b.Size)
	case b.Count < 1:
		return fmt.Errorf("count %d: want at least 1 block", b.Count)
	case b.Rate < 0:
		return fmt.Errorf("rate %g is negative", b.Rate)
	case b.Rate > 0 && b.Size < benchkit.StampSize:
		return fmt.Errorf("a paced source stamps its blocks and needs a size of at least %d bytes", benchkit.StampSize)
	}
	return nil
}

func (b *benchSource) Generate(ctx *job.Context, emit func(any) error) error {
	var p *probe
	if b.Probe != "" {
		var err error
		if p, err = lookupProbe(b.Probe); err != nil {
			return err
		}
	}
	block := b.bytesBlock()
	if b.Codec != "" {
		block = intBlock
	}
	if p != nil {
		if err := emit(block(0, 0)); err != nil {
			return err
		}
		timer := time.NewTimer(benchWarmUp)
		defer timer.Stop()
		select {
		case <-p.warm:
		case <-timer.C:
			return fmt.Errorf("the warm-up block did not reach the sink within %s", benchWarmUp)
		case <-ctx.Context().Done():
			return ctx.Context().Err()
		}
	}
	var pacer *benchkit.Pacer
	if b.Rate > 0 {
		pacer = benchkit.NewPacer(b.Rate)
	} else if p != nil {
		p.started(benchkit.Now())
	}
	for i := 0; i < b.Count; i++ {
		var stamp int64
		if pacer != nil {
			stamp = pacer.Next()
			if i == 0 && p != nil {
				p.started(pacer.Start())
			}
		}
		if i == b.Count-1 {
			ctx.Finish()
		}
		if err := emit(block(i+1, stamp)); err != nil {
			return err
		}
	}
	if pacer != nil && p != nil {
		p.mu.Lock()
		p.late += pacer.Late()
		p.mu.Unlock()
	}
	return nil
}

// bytesBlock returns the block maker of bytes blocks: one buffer of Size bytes, boxed once (emit
// does not allocate) and changed in place: the send time in its first 8 bytes when paced, else
// the index's low byte.
func (b *benchSource) bytesBlock() func(i int, stamp int64) any {
	buf := make([]byte, b.Size)
	var v any = buf
	return func(i int, stamp int64) any {
		if stamp != 0 {
			benchkit.PutStamp(buf, stamp)
		} else {
			buf[0] = byte(i)
		}
		return v
	}
}

// intBlock makes an integer block (--codec cbor or json): the send time when paced, else the
// index.
func intBlock(i int, stamp int64) any {
	if stamp != 0 {
		return stamp
	}
	return int64(i)
}

// benchJoin passes on, per round of its inputs, the block with the newest send time: the round's
// latency counts from the moment it was complete at the sources.
type benchJoin struct{}

func (benchJoin) CheckPorts(inputs, outputs int) error {
	if inputs < 1 || outputs != 1 {
		return fmt.Errorf("bench_join needs inputs and exactly one output, has %d and %d", inputs, outputs)
	}
	return nil
}

func (benchJoin) RunRaw(_ *job.Context, in [][][]byte, out [][]byte) ([][]byte, error) {
	best := in[0][0]
	for _, blocks := range in[1:] {
		if benchkit.Stamp(blocks[0]) > benchkit.Stamp(best) {
			best = blocks[0]
		}
	}
	out[0] = best
	return out, nil
}

// benchSink counts blocks; with Stamped it records, per block, the clock minus the send time in
// the block (one clock read per block, into a histogram that does not allocate). Unstamped, it
// reads the clock once, at the last block.
type benchSink struct {
	Probe   string `json:"probe" marvelo:"required"`
	Stamped bool   `json:"stamped"`
	// Codec "cbor" or "json": the blocks are integers, the send time when stamped.
	Codec string `json:"codec"`

	p      *probe
	hist   *benchkit.Histogram
	n      uint64
	end    int64
	endCPU time.Duration
}

func (s *benchSink) CheckPorts(inputs, outputs int) error {
	if inputs != 1 || outputs != 0 {
		return fmt.Errorf("bench_sink needs one input and no outputs, has %d and %d", inputs, outputs)
	}
	return nil
}

func (s *benchSink) Setup(*job.Context) error {
	p, err := lookupProbe(s.Probe)
	if err != nil {
		return err
	}
	s.p = p
	if s.Stamped {
		s.hist = benchkit.NewHistogram()
	}
	return nil
}

func (s *benchSink) RunRaw(ctx *job.Context, in [][][]byte, out [][]byte) ([][]byte, error) {
	s.n++
	if s.n == 1 {
		s.p.warmed.Do(func() { close(s.p.warm) }) // the warm-up block (a round of them, behind a join)
		return out, nil
	}
	var now int64
	if s.hist != nil {
		now = benchkit.Now()
		if stamp := s.stamp(in[0][0]); stamp > 0 { // 0: a dummy block, never stamped
			s.hist.Record(now - stamp)
		}
	}
	if ctx.Head().Finished() {
		if now == 0 {
			now = benchkit.Now()
		}
		s.end, s.endCPU = now, benchkit.ReadUsage().CPU()
	}
	return out, nil
}

// stamp reads a block's send time: the first 8 bytes of a bytes block, or the integer of a cbor
// or json one (0 when it is none).
func (s *benchSink) stamp(b []byte) int64 {
	switch s.Codec {
	case "cbor":
		return cborUint(b)
	case "json":
		v, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		return v
	}
	return benchkit.Stamp(b)
}

// cborUint reads a CBOR unsigned integer in any of its lengths (0 for anything else).
func cborUint(b []byte) int64 {
	if len(b) == 0 || b[0]>>5 != 0 {
		return 0
	}
	switch info := b[0] & 0x1f; {
	case info < 24 && len(b) == 1:
		return int64(info)
	case info == 24 && len(b) == 2:
		return int64(b[1])
	case info == 25 && len(b) == 3:
		return int64(binary.BigEndian.Uint16(b[1:]))
	case info == 26 && len(b) == 5:
		return int64(binary.BigEndian.Uint32(b[1:]))
	case info == 27 && len(b) == 9:
		return int64(binary.BigEndian.Uint64(b[1:]))
	}
	return 0
}

// Close reports to the probe.
func (s *benchSink) Close() error {
	if s.p == nil {
		return nil
	}
	if s.end == 0 {
		s.end, s.endCPU = benchkit.Now(), benchkit.ReadUsage().CPU() // ended without a finished block
	}
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	select {
	case <-s.p.done:
		return nil // reported already (a restarted instance)
	default:
	}
	s.p.end, s.p.endCPU, s.p.blocks, s.p.hist = s.end, s.endCPU, s.n, s.hist
	close(s.p.done)
	return nil
}
