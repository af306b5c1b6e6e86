package job

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/cacheline"
)

// Port is one pipe as a job sees it: its id, its codec and how many blocks make one compute block.
type Port struct {
	Pipe       int
	Codec      codec.Codec
	BlockCount int
}

// RawJob is implemented by jobs that work on encoded payloads and never decode them (forward,
// discard): the fast path. in[k] holds the block_count payloads of input k; the job appends one
// payload per output to out[k][:0], or points out[k] at an input payload (a forward), which the
// runtime then passes on as it is. Input payloads are read-only: a job never writes them, now
// or later (the runtime may hand them to the next job without a copy, and repeats one as a prev
// dummy). out has one entry per output. Bind uses it only where every input and output shares
// one codec and block_count is 1, and falls back to Run otherwise.
type RawJob interface {
	RunRaw(ctx *Context, in [][][]byte, out [][]byte) ([][]byte, error)
}

// Checkpointer is implemented by sources that can resume where they were when they move to
// another worker: the worker saves Checkpoint's bytes, together with the SQN, once the blocks
// emitted so far are stored, and a moved instance gets them back through Restore before Setup.
// A source without it restarts from the beginning, numbering from 1 with the reset bit.
type Checkpointer interface {
	// Checkpoint returns the state after the last value emitted.
	Checkpoint() ([]byte, error)
	// Restore sets the state saved by Checkpoint.
	Restore(state []byte) error
}

// Runner drives one bound job: the worker calls Setup, then Step per compute block (or Generate
// for a source), then Close.
type Runner struct {
	job     any
	label   string
	inputs  []Port
	outputs []Port

	raw      RawJob
	run      reflect.Value
	gen      func(*Context, func(any) error) error
	variadic bool
	decode   []func([][]byte) (reflect.Value, error)
	args     []reflect.Value
	results  resultShape
}

type resultShape int

const (
	resultNone      resultShape = iota // Run(...)
	resultErr                          // Run(...) error
	resultVal                          // Run(...) R
	resultValAndErr                    // Run(...) (R, error)
)

var (
	contextType = reflect.TypeFor[*Context]()
	errorType   = reflect.TypeFor[error]()
)

// Bind checks that j can serve a job with these inputs and outputs and prepares the decoders and
// encoders it needs. label names the job in every error ("job 5 (product)").
func Bind(j any, label string, inputs, outputs []Port) (*Runner, error) {
	r := &Runner{job: j, label: label, inputs: inputs, outputs: outputs}
	if pc, ok := j.(interface {
		CheckPorts(inputs, outputs int) error
	}); ok {
		if err := pc.CheckPorts(len(inputs), len(outputs)); err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
	}
	if raw, ok := j.(RawJob); ok && r.rawFits() {
		r.raw = raw
		return r, nil
	}
	if g, ok := j.(interface {
		Generate(*Context, func(any) error) error
	}); ok {
		if len(inputs) > 0 {
			return nil, fmt.Errorf("%s: a generator (Generate) cannot have inputs; it has %d", label, len(inputs))
		}
		r.gen = g.Generate
		return r, nil
	}
	m := reflect.ValueOf(j).MethodByName("Run")
	if !m.IsValid() {
		if _, ok := j.(RawJob); ok {
			return nil, fmt.Errorf("%s: this job passes blocks through unchanged and needs one codec on all its pipes and block_count 1", label)
		}
		return nil, fmt.Errorf("%s: job type %T has no Run, Generate or RunRaw method", label, j)
	}
	r.run = m
	if err := r.bindRun(m.Type()); err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return r, nil
}

func (r *Runner) rawFits() bool {
	if len(r.outputs) == 0 {
		return true // a sink: nothing to re-encode
	}
	var name string
	for _, ps := range [][]Port{r.inputs, r.outputs} {
		for _, p := range ps {
			if p.BlockCount > 1 {
				return false
			}
			id := fmt.Sprintf("%s/%d", p.Codec.Name(), len(p.Codec.Zero()))
			if name == "" {
				name = id
			} else if name != id {
				return false
			}
		}
	}
	return true
}

func (r *Runner) bindRun(t reflect.Type) error {
	if t.NumIn() < 1 || t.In(0) != contextType {
		return fmt.Errorf("Run must take *job.Context as its first argument, has %s", t)
	}
	params := t.NumIn() - 1
	r.variadic = t.IsVariadic()
	fixed := params
	if r.variadic {
		fixed--
	}
	n := len(r.inputs)
	if n < fixed || (!r.variadic && n != fixed) {
		return fmt.Errorf("Run takes %d inputs%s but the job has %d", fixed, map[bool]string{true: " or more", false: ""}[r.variadic], n)
	}
	r.decode = make([]func([][]byte) (reflect.Value, error), n)
	for k, p := range r.inputs {
		pt := r.paramType(t, k)
		dec, err := blockDecoder(p, pt)
		if err != nil {
			return fmt.Errorf("input %d (pipe %d): %w", k+1, p.Pipe, err)
		}
		r.decode[k] = dec
	}
	switch {
	case t.NumOut() == 0:
		r.results = resultNone
	case t.NumOut() == 1 && t.Out(0) == errorType:
		r.results = resultErr
	case t.NumOut() == 1:
		r.results = resultVal
	case t.NumOut() == 2 && t.Out(1) == errorType:
		r.results = resultValAndErr
	default:
		return fmt.Errorf("Run must return (R, error), R, error or nothing; it returns %s", t)
	}
	if len(r.outputs) > 0 && (r.results == resultNone || r.results == resultErr) {
		return fmt.Errorf("Run returns no value but the job has %d outputs", len(r.outputs))
	}
	r.args = cacheline.Make[reflect.Value](1 + n) // written every step
	return nil
}

// paramType is the Go type input k is decoded into.
func (r *Runner) paramType(t reflect.Type, k int) reflect.Type {
	if r.variadic && k >= t.NumIn()-2 {
		return t.In(t.NumIn() - 1).Elem()
	}
	return t.In(k + 1)
}

// blockDecoder decodes the block_count payloads of one input into a value of type t: the value
// itself when block_count is 1, a slice of them (or []any for an interface) otherwise.
func blockDecoder(p Port, t reflect.Type) (func([][]byte) (reflect.Value, error), error) {
	if p.BlockCount <= 1 {
		dec, err := codec.NewDecoder(p.Codec, t)
		if err != nil {
			return nil, err
		}
		return func(payloads [][]byte) (reflect.Value, error) { return dec(payloads[0]) }, nil
	}
	sliceType := t
	if t.Kind() == reflect.Interface {
		if t.NumMethod() > 0 {
			return nil, fmt.Errorf("block_count %d needs a slice argument ([]T or any), Run takes %s", p.BlockCount, t)
		}
		sliceType = reflect.TypeFor[[]any]()
	} else if t.Kind() != reflect.Slice || t.Elem().Kind() == reflect.Uint8 && p.Codec.Name() == codec.Bytes {
		return nil, fmt.Errorf("block_count %d needs a slice argument ([]T or any), Run takes %s", p.BlockCount, t)
	}
	dec, err := codec.NewDecoder(p.Codec, sliceType.Elem())
	if err != nil {
		return nil, err
	}
	return func(payloads [][]byte) (reflect.Value, error) {
		s := reflect.MakeSlice(sliceType, len(payloads), len(payloads))
		for i, pl := range payloads {
			v, err := dec(pl)
			if err != nil {
				return reflect.Value{}, fmt.Errorf("block %d of %d: %w", i+1, len(payloads), err)
			}
			s.Index(i).Set(v)
		}
		if t.Kind() == reflect.Interface {
			return s.Convert(sliceType), nil
		}
		return s, nil
	}, nil
}

// Checkpointer returns the job's checkpoint methods, or nil.
func (r *Runner) Checkpointer() Checkpointer {
	c, _ := r.job.(Checkpointer)
	return c
}

// IsSource reports whether the job has no inputs.
func (r *Runner) IsSource() bool { return len(r.inputs) == 0 }

// Job returns the bound job value.
func (r *Runner) Job() any { return r.job }

// Setup calls the job's Setup, if it has one.
func (r *Runner) Setup(ctx *Context) error {
	if s, ok := r.job.(interface{ Setup(*Context) error }); ok {
		if err := s.Setup(ctx); err != nil {
			return fmt.Errorf("%s: setup: %w", r.label, err)
		}
	}
	return nil
}

// Close calls the job's Close, if it has one.
func (r *Runner) Close() error {
	if c, ok := r.job.(interface{ Close() error }); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("%s: close: %w", r.label, err)
		}
	}
	return nil
}

// Step runs one compute block: in[k] holds the block_count payloads of input k. It returns one
// payload per output, appended to out[k][:0] where out has room. A job that returns ErrEnd makes
// Step return ErrEnd.
func (r *Runner) Step(ctx *Context, in [][][]byte, out [][]byte) ([][]byte, error) {
	if r.raw != nil {
		if cap(out) < len(r.outputs) {
			out = cacheline.Make[[]byte](len(r.outputs)) // written every step
		}
		out, err := r.raw.RunRaw(ctx, in, out[:len(r.outputs)])
		if err != nil && !errors.Is(err, ErrEnd) && !errors.Is(err, ErrSkip) {
			return nil, fmt.Errorf("%s: %w", r.label, err)
		}
		return out, err
	}
	r.args[0] = reflect.ValueOf(ctx)
	for k, dec := range r.decode {
		v, err := dec(in[k])
		if err != nil {
			return nil, fmt.Errorf("%s: decode input %d (pipe %d, %s): %w", r.label, k+1, r.inputs[k].Pipe, r.inputs[k].Codec.Name(), err)
		}
		r.args[k+1] = v
	}
	val, err := r.splitResults(r.run.Call(r.args))
	if err != nil {
		if errors.Is(err, ErrEnd) || errors.Is(err, ErrSkip) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: %w", r.label, err)
	}
	return r.encodeOutputs(val, out)
}

func (r *Runner) splitResults(res []reflect.Value) (any, error) {
	var val any
	var err error
	switch r.results {
	case resultErr:
		err, _ = res[0].Interface().(error)
	case resultVal:
		val = res[0].Interface()
	case resultValAndErr:
		val = res[0].Interface()
		err, _ = res[1].Interface().(error)
	}
	return val, err
}

// encodeOutputs maps a returned value onto the outputs: Outputs gives each its own, any other
// value goes to all of them.
func (r *Runner) encodeOutputs(val any, out [][]byte) ([][]byte, error) {
	n := len(r.outputs)
	if n == 0 {
		return out[:0], nil
	}
	if cap(out) < n {
		out = make([][]byte, n)
	}
	out = out[:n]
	if outs, ok := val.(Outputs); ok {
		if len(outs) != n {
			return nil, fmt.Errorf("%s: Run returned %d values for %d outputs", r.label, len(outs), n)
		}
		for k, v := range outs {
			if err := r.encodeOne(k, v, out); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	for k := range r.outputs {
		if k > 0 && r.outputs[k].Codec == r.outputs[0].Codec {
			out[k] = append(out[k][:0], out[0]...)
			continue
		}
		if err := r.encodeOne(k, val, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (r *Runner) encodeOne(k int, v any, out [][]byte) error {
	b, err := r.outputs[k].Codec.Append(out[k][:0], v)
	if err != nil {
		return fmt.Errorf("%s: encode output %d (pipe %d, %s): %w", r.label, k+1, r.outputs[k].Pipe, r.outputs[k].Codec.Name(), err)
	}
	out[k] = b
	return nil
}

// Generate drives a source until it ends: emit is called with the payloads of every output for
// each value the job produces. It returns nil when the job finished (Finish was called) and
// ErrEnd when it stopped without finishing.
func (r *Runner) Generate(ctx *Context, emit func(out [][]byte) error) error {
	out := make([][]byte, len(r.outputs))
	send := func(v any) error {
		if err := ctx.ctx.Err(); err != nil {
			return err
		}
		var err error
		out, err = r.encodeOutputs(v, out)
		if err != nil {
			return err
		}
		err = emit(out)
		ctx.endValue()
		return err
	}
	if r.gen != nil {
		return r.generate(ctx, send)
	}
	for !ctx.Finished() {
		if err := ctx.ctx.Err(); err != nil {
			return err
		}
		var res []reflect.Value
		if r.run.IsValid() {
			res = r.run.Call([]reflect.Value{reflect.ValueOf(ctx)})
		} else {
			return fmt.Errorf("%s: a source needs Run(ctx) or Generate", r.label)
		}
		v, err := r.splitResults(res)
		if errors.Is(err, ErrSkip) {
			continue
		}
		if err != nil {
			if errors.Is(err, ErrEnd) {
				return ErrEnd
			}
			return fmt.Errorf("%s: %w", r.label, err)
		}
		if err := send(v); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runner) generate(ctx *Context, send func(any) error) error {
	sentLast := false
	err := r.gen(ctx, func(v any) error {
		if sentLast {
			return fmt.Errorf("%s: emit after the finished block", r.label)
		}
		sentLast = ctx.Finished()
		return send(v)
	})
	switch {
	case err == nil && ctx.Finished():
		return nil
	case err == nil || errors.Is(err, ErrEnd):
		return ErrEnd
	case ctx.ctx.Err() != nil:
		return ctx.ctx.Err()
	case strings.HasPrefix(err.Error(), r.label+": "):
		return err // an error of emit's that already names the job
	}
	return fmt.Errorf("%s: %w", r.label, err)
}
