package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/cacheline"
)

// ErrEnd, returned by Run or Generate, ends the job without setting the finished bit (the old
// "return None"). Downstream jobs are still told that the stream ended after the last block.
var ErrEnd = errors.New("job ended")

// ErrSkip, returned by Run, writes nothing for this compute block (a filter, a decimator): the
// job goes on with the next one. Downstream jobs see the block as missing.
var ErrSkip = errors.New("no output for this compute block")

// Outputs, returned by Run, gives each output its own value, in the order of the job's outputs.
type Outputs []any

// Context is what a job sees of the system: who it is, where it runs, its log and the heads of
// the current compute block. One Context serves one job instance; it is not safe for concurrent
// use by the job's own goroutines.
type Context struct {
	Pipeline string
	JobID    int
	Name     string
	Worker   string
	// WorkDir is the job's working directory; relative paths in args resolve against it.
	WorkDir string
	// Log reaches `marvelo logs` and the console of `marvelo run`.
	Log *slog.Logger
	// Out is the job's standard output: each line written reaches the job's log.
	Out io.Writer
	// In is the job's standard input: lines typed into `marvelo run` or `marvelo submit
	// --follow` for this job (the interactive job reads it). It ends when the job stops.
	In io.Reader

	notice      func(msg string)
	ctx         context.Context
	headSize    int
	inputPipes  []int
	outputPipes []int
	finished    bool

	// rawIn are the current block's input heads as the worker gave them; inHeads is made from
	// them only when the job asks (InHeads, inMade): most jobs never do, and making them was a
	// tenth of a chained forward's work per block.
	rawIn    [][]uint32
	inMade   bool
	inHeads  [][]pipeline.Head
	head     pipeline.Head
	outHeads []pipeline.Head
	outSet   []bool

	_ cacheline.Pad // head, rawIn and outSet are written every round (cacheline)
}

// ContextConfig is what the worker fills in to make a Context.
type ContextConfig struct {
	Pipeline, Name, Worker, WorkDir string
	JobID                           int
	HeadSize                        int
	Inputs, Outputs                 int
	// InputPipes and OutputPipes are the pipe ids, in the job's order.
	InputPipes, OutputPipes []int
	Log                     *slog.Logger
	Out                     io.Writer
	In                      io.Reader
	// Notice reports a Notify to the broker (nil: the warning is only logged).
	Notice func(msg string)
}

// NewContext is called by the worker (and tests) to make the Context of one job instance.
func NewContext(ctx context.Context, c ContextConfig) *Context {
	if c.HeadSize < 1 {
		c.HeadSize = 1
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.In == nil {
		c.In = eofReader{}
	}
	return &Context{
		Pipeline: c.Pipeline, JobID: c.JobID, Name: c.Name, Worker: c.Worker, WorkDir: c.WorkDir,
		Log: c.Log, Out: c.Out, In: c.In, notice: c.Notice, ctx: ctx, headSize: c.HeadSize,
		inputPipes: c.InputPipes, outputPipes: c.OutputPipes,
		inHeads:  make([][]pipeline.Head, c.Inputs),
		head:     pipeline.NewHead(0, c.HeadSize),
		outHeads: cacheline.Make[pipeline.Head](c.Outputs),
		outSet:   cacheline.Make[bool](c.Outputs),
	}
}

// Context is cancelled when the job must stop (pipeline stopped, worker shutting down).
func (c *Context) Context() context.Context { return c.ctx }

// Notify logs msg as a warning, with args as Log.Warn takes them, and makes it an event of the
// pipeline ("job notice", shown by marvelo status): for what an operator must learn of even
// when nobody reads the logs (a file sink that had to start its file again).
func (c *Context) Notify(msg string, args ...any) {
	c.Log.Warn(msg, args...)
	if c.notice != nil {
		c.notice(msg)
	}
}

// Printf writes a line to the job's output.
func (c *Context) Printf(format string, args ...any) {
	fmt.Fprintf(c.Out, format+"\n", args...)
}

// InputPipes returns the ids of the job's input pipes, in order.
func (c *Context) InputPipes() []int { return c.inputPipes }

// OutputPipes returns the ids of the job's output pipes, in order.
func (c *Context) OutputPipes() []int { return c.outputPipes }

// Finish marks the current compute block (or the next emitted value, in a generator) as the last
// one: its blocks carry the finished bit, and the job ends after writing them.
func (c *Context) Finish() {
	c.finished = true
	c.head = pipeline.NewHead(c.head.Value|pipeline.NewHead(0, c.headSize).Value, c.headSize)
	c.head, _ = c.head.With(pipeline.BitFinished, true)
}

// Finished reports whether Finish was called.
func (c *Context) Finished() bool { return c.finished }

// Head is the reduced head of the current compute block (the or of all input heads); it is
// written on every output whose head was not set with SetOutHead.
func (c *Context) Head() pipeline.Head { return c.head }

// SetHead replaces the reduced head. The reset bit cannot be set (the system owns it).
func (c *Context) SetHead(h pipeline.Head) error {
	if h.Reset() && !c.head.Reset() {
		return pipeline.ErrReservedBit
	}
	c.head = pipeline.NewHead(h.Value, c.headSize)
	return nil
}

// InHeads returns the heads of input k for the current compute block, one per block (several
// where the pipe's block_count > 1).
func (c *Context) InHeads(k int) []pipeline.Head {
	if !c.inMade {
		c.makeInHeads()
	}
	return c.inHeads[k]
}

// makeInHeads makes the current block's input heads from the worker's.
func (c *Context) makeInHeads() {
	for k := range c.inHeads {
		c.inHeads[k] = c.inHeads[k][:0]
		if k < len(c.rawIn) {
			for _, h := range c.rawIn[k] {
				c.inHeads[k] = append(c.inHeads[k], pipeline.NewHead(h, c.headSize))
			}
		}
	}
	c.inMade = true
}

// SetOutHead sets the head written on output k for the current compute block.
func (c *Context) SetOutHead(k int, h pipeline.Head) error {
	if k < 0 || k >= len(c.outHeads) {
		return fmt.Errorf("SetOutHead: output %d out of range (job has %d outputs)", k, len(c.outHeads))
	}
	if h.Reset() {
		return pipeline.ErrReservedBit
	}
	c.outHeads[k] = pipeline.NewHead(h.Value, c.headSize)
	c.outSet[k] = true
	return nil
}

// BeginBlock is called by the worker before each compute block with the heads of every input
// block, which it leaves unchanged until the block is computed. The reduced head becomes the or
// of them all.
func (c *Context) BeginBlock(inHeads [][]uint32) {
	reduced := uint32(0)
	for _, hs := range inHeads {
		for _, h := range hs {
			reduced |= h
		}
	}
	c.rawIn, c.inMade = inHeads, false
	if c.finished {
		reduced |= pipeline.NewHead(0, c.headSize).Value | maskOf(c.headSize, pipeline.BitFinished)
	}
	c.head = pipeline.NewHead(reduced, c.headSize)
	for k := range c.outSet {
		c.outSet[k] = false
	}
}

// OutHead is the head the job wants on output k for the block just computed. After Finish it
// carries the finished bit, whatever head was set.
func (c *Context) OutHead(k int) uint32 {
	h := c.head.Value
	if k < len(c.outSet) && c.outSet[k] {
		h = c.outHeads[k].Value
	}
	if c.finished {
		h |= maskOf(c.headSize, pipeline.BitFinished)
	}
	return h
}

// endValue is called after a source's value has been written: heads set with SetOutHead hold for
// one value, as they hold for one compute block of a job with inputs.
func (c *Context) endValue() {
	for k := range c.outSet {
		c.outSet[k] = false
	}
}

func maskOf(size, bit int) uint32 {
	h, _ := pipeline.NewHead(0, size).With(bit, true)
	return h.Value
}

// eofReader is the input of a job nobody types to.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
