// Package jobtest runs a Go job in-process, without NATS or a broker, for the job's own unit
// tests: feed values (and heads) to each input, run the job compute block by compute block
// exactly as a worker binds and drives it (job.Bind, job.Context), and read the values and heads
// of each output.
//
//	func TestScale(t *testing.T) {
//		h := jobtest.New(t, &Scale{Factor: 2}, jobtest.Config{Inputs: 1, Outputs: 1})
//		h.Feed(0, 1.0, 2.5)
//		res := h.Run()
//		if got := res.Values(0); !reflect.DeepEqual(got, []any{2.0, 5.0}) { ... }
//	}
//
// What it models of the runtime: block_count (a compute block takes BlockCount blocks of an
// input; a job's Run gets a slice), heads (the reduced head, InHeads, SetOutHead, SetHead),
// missing blocks filled with dummies (the job's dummy mode: zero or prev, with the corrupted
// bit), optional inputs (a value when one was fed for that round, else the default or, with
// store, the last value), Finish and the finished bit (the job ends after a block that carries
// it), ErrSkip and ErrEnd, Setup and Close. Ordering across workers, redelivery and restarts are
// the runtime's and are not modelled: test those with a whole pipeline (package local).
package jobtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
)

// Pipe configures one input or output of the job under test. The zero value is a CBOR pipe with
// block_count 1.
type Pipe struct {
	// ID is the pipe id the job sees (ctx.InputPipes); default 1, 2, … for inputs and 101,
	// 102, … for outputs.
	ID int
	// Codec is cbor (default), json or bytes; BlockSize is a bytes pipe's block size.
	Codec     string
	BlockSize int
	// BlockCount is how many blocks of this input make one compute block (default 1).
	BlockCount int
	// Optional makes an input optional: it never waits (see Feed).
	Optional *pipeline.Optional
}

// Config describes the job's place in a pipeline.
type Config struct {
	// Inputs and Outputs give the number of plain CBOR pipes; InputPipes and OutputPipes, when
	// set, describe each (and override the counts).
	Inputs, Outputs         int
	InputPipes, OutputPipes []Pipe
	// HeadSize is the job's head_size (default 1); Dummy its dummy mode (zero, the default, or
	// prev).
	HeadSize int
	Dummy    string
	// Name and JobID name the job in messages (default "job under test", 1); WorkDir is its
	// working directory (default: a new temporary folder).
	Name    string
	JobID   int
	WorkDir string
	// In is the job's standard input (the interactive job reads it).
	In io.Reader
	// MaxBlocks stops a source after that many values (an endless source needs it); 0 is no
	// limit.
	MaxBlocks int
}

// Block is one block fed to an input or read from an output.
type Block struct {
	Value any
	// Head is the block's head bits (pipeline.Head's Value): flags and user bits.
	Head uint32
	// Missing, when fed, stands for a block that never arrived: the job gets a dummy in its
	// place. Read back, it marks a round the job skipped (ErrSkip): no block was written.
	Missing bool
}

// Missing is a block that never arrived, for Feed: the job gets a dummy in its place.
var Missing = Block{Missing: true}

// Harness runs one job. Make it with New or FromRegistry, Feed its inputs, then Run.
type Harness struct {
	t       testing.TB
	job     any
	cfg     Config
	ins     []Pipe
	outs    []Pipe
	inCodec []codec.Codec
	feeds   [][]Block
}

// New prepares j (a configured job value, such as &Scale{Factor: 2}) to run with cfg. Problems
// of the job's shape (a Run that does not fit the inputs) fail the test at once.
func New(t testing.TB, j any, cfg Config) *Harness {
	t.Helper()
	h := &Harness{t: t, job: j, cfg: cfg}
	h.ins = ports(cfg.InputPipes, cfg.Inputs, 1)
	h.outs = ports(cfg.OutputPipes, cfg.Outputs, 101)
	h.feeds = make([][]Block, len(h.ins))
	for _, p := range h.ins {
		c, err := codec.New(p.Codec, p.BlockSize)
		if err != nil {
			t.Fatalf("jobtest: input pipe %d: %v", p.ID, err)
		}
		h.inCodec = append(h.inCodec, c)
	}
	return h
}

// FromRegistry builds a job of the named type from args as a worker does (args checked against
// the type's spec, then the job's Validate), and prepares it like New. An args problem fails the
// test; use reg.New directly to test the problems themselves.
func FromRegistry(t testing.TB, reg *job.Registry, typ string, args map[string]any, cfg Config) *Harness {
	t.Helper()
	j, err := reg.New(typ, args)
	if err != nil {
		t.Fatalf("jobtest: %v", err)
	}
	return New(t, j, cfg)
}

func ports(given []Pipe, n, firstID int) []Pipe {
	if len(given) == 0 {
		given = make([]Pipe, n)
	}
	out := make([]Pipe, len(given))
	for k, p := range given {
		if p.ID == 0 {
			p.ID = firstID + k
		}
		if p.Codec == "" {
			p.Codec = codec.CBOR
		}
		if p.BlockCount < 1 {
			p.BlockCount = 1
		}
		out[k] = p
	}
	return out
}

// Feed appends values to input k (from 0), each as a block with head 0. A value may be a Block
// to give its head, or Missing.
func (h *Harness) Feed(k int, values ...any) *Harness {
	h.t.Helper()
	if k < 0 || k >= len(h.ins) {
		h.t.Fatalf("jobtest: Feed(%d): the job has %d inputs", k, len(h.ins))
	}
	for _, v := range values {
		b, ok := v.(Block)
		if !ok {
			b = Block{Value: v}
		}
		h.feeds[k] = append(h.feeds[k], b)
	}
	return h
}

// Result is what a run produced.
type Result struct {
	// Outputs holds, per output, every block written, in order (a skipped round is a Missing
	// block on each output).
	Outputs [][]Block
	// Rounds is the number of compute blocks run (values emitted, for a source).
	Rounds int
	// Finished reports that the job ended with the finished bit (Finish, or an input block
	// carrying it); Ended that it returned ErrEnd.
	Finished, Ended bool
	// Err is the job's error (Setup, Run, Close), nil when it ended normally.
	Err error
	// Output is what the job printed (ctx.Printf, ctx.Out) and logged.
	Output string
	// HeadSize is the size of the heads in Outputs.
	HeadSize int
}

// Values returns output k's values, skipped rounds left out.
func (r *Result) Values(k int) []any {
	var out []any
	for _, b := range r.Outputs[k] {
		if !b.Missing {
			out = append(out, b.Value)
		}
	}
	return out
}

// Heads returns output k's heads, skipped rounds left out.
func (r *Result) Heads(k int) []pipeline.Head {
	var out []pipeline.Head
	for _, b := range r.Outputs[k] {
		if !b.Missing {
			out = append(out, pipeline.NewHead(b.Head, r.HeadSize))
		}
	}
	return out
}

// Run runs the job to its end: Setup; then, for a job with inputs, one compute block after
// another until a plain input has no more blocks, the job returns ErrEnd or a block carries the
// finished bit; for a source, Generate (or Run) until it ends or MaxBlocks values; then Close.
// A job error fails the test; use RunErr to test the error itself.
func (h *Harness) Run() *Result {
	h.t.Helper()
	r := h.RunErr()
	if r.Err != nil {
		h.t.Fatalf("jobtest: %v", r.Err)
	}
	return r
}

// RunErr is Run that reports the job's error in Result.Err instead of failing the test.
func (h *Harness) RunErr() *Result {
	h.t.Helper()
	headSize := h.cfg.HeadSize
	if headSize < 1 {
		headSize = 1
	}
	res := &Result{Outputs: make([][]Block, len(h.outs)), HeadSize: headSize}
	inPorts, err := h.jobPorts(h.ins)
	if err != nil {
		h.t.Fatalf("jobtest: %v", err)
	}
	outPorts, err := h.jobPorts(h.outs)
	if err != nil {
		h.t.Fatalf("jobtest: %v", err)
	}
	name := h.cfg.Name
	if name == "" {
		name = "job under test"
	}
	id := h.cfg.JobID
	if id == 0 {
		id = 1
	}
	label := fmt.Sprintf("job %d (%s)", id, name)
	runner, err := job.Bind(h.job, label, inPorts, outPorts)
	if err != nil {
		h.t.Fatalf("jobtest: %v", err)
	}
	workDir := h.cfg.WorkDir
	if workDir == "" {
		workDir = h.t.TempDir()
	}
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	jctx := job.NewContext(ctx, job.ContextConfig{
		Pipeline: "jobtest", Name: name, Worker: "jobtest", WorkDir: workDir, JobID: id, HeadSize: headSize,
		Inputs: len(h.ins), Outputs: len(h.outs), InputPipes: pipeIDs(h.ins), OutputPipes: pipeIDs(h.outs),
		Log: slog.New(slog.NewTextHandler(&out, nil)), Out: &out, In: h.cfg.In,
	})
	if err := runner.Setup(jctx); err != nil {
		res.Err = err
		res.Output = out.String()
		return res
	}
	if len(h.ins) == 0 {
		res.Err = h.source(runner, jctx, cancel, outPorts, res)
	} else {
		res.Err = h.steps(runner, jctx, outPorts, res)
	}
	if cerr := runner.Close(); res.Err == nil {
		res.Err = cerr
	}
	res.Output = out.String()
	return res
}

func (h *Harness) jobPorts(ps []Pipe) ([]job.Port, error) {
	out := make([]job.Port, len(ps))
	for k, p := range ps {
		c, err := codec.New(p.Codec, p.BlockSize)
		if err != nil {
			return nil, fmt.Errorf("pipe %d: %w", p.ID, err)
		}
		out[k] = job.Port{Pipe: p.ID, Codec: c, BlockCount: p.BlockCount}
	}
	return out, nil
}

func pipeIDs(ps []Pipe) []int {
	ids := make([]int, len(ps))
	for k, p := range ps {
		ids[k] = p.ID
	}
	return ids
}

// record decodes one compute block's outputs.
func (h *Harness) record(res *Result, jctx *job.Context, outPorts []job.Port, payloads [][]byte) error {
	for k, p := range outPorts {
		v, err := p.Codec.DecodeAny(payloads[k])
		if err != nil {
			return fmt.Errorf("output %d (pipe %d): decoding what the job wrote: %w", k+1, p.Pipe, err)
		}
		res.Outputs[k] = append(res.Outputs[k], Block{Value: v, Head: jctx.OutHead(k)})
	}
	return nil
}

func (h *Harness) source(runner *job.Runner, jctx *job.Context, cancel context.CancelFunc, outPorts []job.Port, res *Result) error {
	errLimit := errors.New("MaxBlocks reached")
	err := runner.Generate(jctx, func(payloads [][]byte) error {
		if err := h.record(res, jctx, outPorts, payloads); err != nil {
			return err
		}
		res.Rounds++
		if h.cfg.MaxBlocks > 0 && res.Rounds >= h.cfg.MaxBlocks && !jctx.Finished() {
			cancel()
			return errLimit
		}
		return nil
	})
	switch {
	case err == nil:
		res.Finished = true
		return nil
	case errors.Is(err, job.ErrEnd):
		res.Ended = true
		return nil
	case errors.Is(err, errLimit), errors.Is(err, context.Canceled) && h.cfg.MaxBlocks > 0:
		return nil
	}
	return err
}

func (h *Harness) steps(runner *job.Runner, jctx *job.Context, outPorts []job.Port, res *Result) error {
	rounds := h.Rounds()
	var out [][]byte
	for {
		in, heads, ok, err := rounds.Next()
		if err != nil || !ok {
			return err
		}
		jctx.BeginBlock(heads)
		out, err = runner.Step(jctx, in, out)
		res.Rounds++
		switch {
		case errors.Is(err, job.ErrSkip):
			for k := range res.Outputs {
				res.Outputs[k] = append(res.Outputs[k], Block{Missing: true})
			}
		case errors.Is(err, job.ErrEnd):
			res.Ended = true
			return nil
		case err != nil:
			return err
		default:
			if err := h.record(res, jctx, outPorts, out); err != nil {
				return err
			}
		}
		if jctx.Finished() || rounds.Finished() {
			res.Finished = true
			return nil
		}
	}
}

// Inputs describes the inputs as configured (ids, codecs and block counts filled in).
func (h *Harness) Inputs() []Pipe { return h.ins }

// Outputs describes the outputs as configured.
func (h *Harness) Outputs() []Pipe { return h.outs }

// Rounds hands out the fed blocks one compute block at a time, as the runtime's alignment does:
// BlockCount blocks of every plain input, a dummy for a missing block, an optional input's value
// or its default. The executable harness (worker/exectest) feeds its program with it too.
func (h *Harness) Rounds() *Rounds {
	return &Rounds{h: h, pos: make([]int, len(h.ins)), prev: make([][]byte, len(h.ins)), stored: make([]*Block, len(h.ins))}
}

// Rounds is an iterator over compute blocks; see Harness.Rounds.
type Rounds struct {
	h        *Harness
	pos      []int
	prev     [][]byte
	stored   []*Block
	finished bool
}

// Next returns the next compute block: per input, its payloads and heads. ok is false when a
// plain input has too few blocks left (or, with only optional inputs, none has any).
func (r *Rounds) Next() (in [][][]byte, heads [][]uint32, ok bool, err error) {
	h := r.h
	plain, left := false, true
	for k, p := range h.ins {
		if p.Optional != nil {
			continue
		}
		plain = true
		if len(h.feeds[k])-r.pos[k] < p.BlockCount {
			left = false
		}
	}
	if !plain {
		left = false
		for k := range h.ins {
			left = left || r.pos[k] < len(h.feeds[k])
		}
	}
	if !left || r.finished {
		return nil, nil, false, nil
	}
	in = make([][][]byte, len(h.ins))
	heads = make([][]uint32, len(h.ins))
	size := max(h.cfg.HeadSize, 1)
	for k, p := range h.ins {
		for range p.BlockCount {
			payload, head, err := h.take(k, r.pos, r.prev, r.stored)
			if err != nil {
				return nil, nil, false, err
			}
			in[k] = append(in[k], payload)
			heads[k] = append(heads[k], head)
			r.finished = r.finished || pipeline.NewHead(head, size).Finished()
		}
	}
	return in, heads, true, nil
}

// Finished reports whether a block handed out carried the finished bit: the job ends after it.
func (r *Rounds) Finished() bool { return r.finished }

// take hands over input k's next block: its payload and head, a dummy for a missing block, and
// for an optional input with nothing fed the default (or, with store, the last value).
func (h *Harness) take(k int, pos []int, prev [][]byte, stored []*Block) ([]byte, uint32, error) {
	p, c := h.ins[k], h.inCodec[k]
	var b Block
	switch {
	case pos[k] < len(h.feeds[k]):
		b = h.feeds[k][pos[k]]
		pos[k]++
	case p.Optional != nil && stored[k] != nil:
		b = *stored[k]
	case p.Optional != nil:
		b = Block{Value: p.Optional.Default}
	default:
		return nil, 0, fmt.Errorf("input %d (pipe %d): no block left", k+1, p.ID) // cannot happen: Next checks first
	}
	if b.Missing {
		corrupted := codec.HeadMask(max(h.cfg.HeadSize, 1), codec.BitCorrupted)
		if h.cfg.Dummy == pipeline.DummyPrev && prev[k] != nil {
			return prev[k], corrupted, nil
		}
		return c.Zero(), corrupted, nil
	}
	payload, err := c.Append(nil, b.Value)
	if err != nil {
		return nil, 0, fmt.Errorf("input %d (pipe %d): encoding fed value %v: %w", k+1, p.ID, b.Value, err)
	}
	prev[k] = payload
	if o := p.Optional; o != nil && (o.Store == nil || *o.Store) {
		stored[k] = &b
	}
	return payload, b.Head, nil
}

// syncBuffer collects the job's output; a job may log from its own goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimRight(s.b.String(), "\n")
}
