package builtin

import (
	"fmt"
	"math"

	"github.com/marvelo/marvelo/pipeline/job"
)

// Forward passes its inputs on (ForwardingJob): n inputs → the same n values on n outputs, in
// order; 1 input → its value on every output.
type Forward struct{}

// CheckPorts rejects shapes forward cannot serve.
func (Forward) CheckPorts(inputs, outputs int) error {
	if inputs == 0 {
		return fmt.Errorf("forward needs at least one input")
	}
	if inputs != 1 && inputs != outputs {
		return fmt.Errorf("forward has %d inputs and %d outputs: give it as many outputs as inputs, or one input", inputs, outputs)
	}
	return nil
}

// RunRaw passes payloads on without decoding them: the fast path where the codecs agree.
func (Forward) RunRaw(_ *job.Context, in [][][]byte, out [][]byte) ([][]byte, error) {
	for k := range out {
		if len(in) == 1 {
			out[k] = in[0][0]
		} else {
			out[k] = in[k][0]
		}
	}
	return out, nil
}

// Run forwards decoded values (when input and output codecs differ).
func (Forward) Run(_ *job.Context, in ...any) (any, error) {
	if len(in) == 1 {
		return in[0], nil
	}
	return job.Outputs(in), nil
}

// Sum adds all its inputs; an input that is a list (block_count > 1) adds its elements. A null
// (a dummy before any real block of its input) adds nothing.
type Sum struct{}

// Run computes one sum.
func (Sum) Run(_ *job.Context, in ...any) (any, error) { return fold(in, 0, addNum) }

// Product multiplies all its inputs; an input that is a list multiplies its elements. A null
// multiplies by one.
type Product struct{}

// Run computes one product.
func (Product) Run(_ *job.Context, in ...any) (any, error) { return fold(in, 1, mulNum) }

// Collect emits the values of all its inputs as one list.
type Collect struct{}

// Run builds the list.
func (Collect) Run(_ *job.Context, in ...any) (any, error) { return append([]any(nil), in...), nil }

// num is an int64 as long as every operand was an integer and nothing overflowed.
type num struct {
	i     int64
	f     float64
	float bool
}

func fold(in []any, unit int64, op func(a, b num) num) (any, error) {
	acc := num{i: unit}
	var walk func(v any) error
	walk = func(v any) error {
		switch x := v.(type) {
		case nil:
			return nil // a dummy before any real block: the identity of the fold
		case []any:
			for _, e := range x {
				if err := walk(e); err != nil {
					return err
				}
			}
			return nil
		}
		n, err := toNum(v)
		if err != nil {
			return err
		}
		acc = op(acc, n)
		return nil
	}
	for k, v := range in {
		if err := walk(v); err != nil {
			return nil, fmt.Errorf("input %d: %w", k+1, err)
		}
	}
	if acc.float {
		return acc.f, nil
	}
	return acc.i, nil
}

func toNum(v any) (num, error) {
	switch x := v.(type) {
	case int64:
		return num{i: x}, nil
	case int:
		return num{i: int64(x)}, nil
	case uint64:
		if x > math.MaxInt64 {
			return num{f: float64(x), float: true}, nil
		}
		return num{i: int64(x)}, nil
	case float64:
		return num{f: x, float: true}, nil
	case float32:
		return num{f: float64(x), float: true}, nil
	case bool:
		if x {
			return num{i: 1}, nil
		}
		return num{}, nil
	}
	return num{}, fmt.Errorf("%T is not a number", v)
}

func (n num) asFloat() float64 {
	if n.float {
		return n.f
	}
	return float64(n.i)
}

func addNum(a, b num) num {
	if !a.float && !b.float {
		if s := a.i + b.i; (s > a.i) == (b.i > 0) {
			return num{i: s}
		}
	}
	return num{f: a.asFloat() + b.asFloat(), float: true}
}

func mulNum(a, b num) num {
	if !a.float && !b.float {
		if a.i == 0 || b.i == 0 {
			return num{}
		}
		if p := a.i * b.i; p/b.i == a.i && !(a.i == -1 && b.i == math.MinInt64) && !(b.i == -1 && a.i == math.MinInt64) {
			return num{i: p}
		}
	}
	return num{f: a.asFloat() * b.asFloat(), float: true}
}
