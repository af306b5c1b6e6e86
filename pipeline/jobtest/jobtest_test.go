package jobtest_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/jobtest"
)

type scale struct {
	Factor float64 `json:"factor" marvelo:"required"`
}

func (s *scale) Run(ctx *job.Context, x float64) (float64, error) { return s.Factor * x, nil }

func TestValuesInValuesOut(t *testing.T) {
	res := jobtest.New(t, &scale{Factor: 2}, jobtest.Config{Inputs: 1, Outputs: 1}).Feed(0, 1.0, 2.5, 4).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{2.0, 5.0, 8.0}) {
		t.Errorf("values %v", got)
	}
	if res.Rounds != 3 || res.Finished {
		t.Errorf("rounds %d finished %v", res.Rounds, res.Finished)
	}
}

// window sums block_count values of its input and marks its output head with user bit 4 when
// any input block was corrupted (a dummy).
type window struct{}

func (window) Run(ctx *job.Context, xs []float64) (float64, error) {
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	for _, h := range ctx.InHeads(0) {
		if h.Corrupted() {
			mark, _ := pipeline.NewHead(0, 1).With(4, true)
			if err := ctx.SetOutHead(0, mark); err != nil {
				return 0, err
			}
		}
	}
	return sum, nil
}

func TestBlockCountHeadsAndDummies(t *testing.T) {
	cfg := jobtest.Config{InputPipes: []jobtest.Pipe{{BlockCount: 2}}, Outputs: 1}
	res := jobtest.New(t, window{}, cfg).Feed(0, 1.0, 2.0, 3.0, jobtest.Missing, 5.0).Run()
	// Two compute blocks of two; the fifth value waits for a sixth that never comes.
	if got := res.Values(0); !reflect.DeepEqual(got, []any{3.0, 3.0}) {
		t.Errorf("zero dummies: values %v", got)
	}
	heads := res.Heads(0)
	if heads[0].Bit(4) || !heads[1].Bit(4) {
		t.Errorf("heads %v: want bit 4 only on the block with a dummy", heads)
	}
	// Without SetOutHead, the output carries the reduced head: the dummy's corrupted bit.
	plain := jobtest.New(t, &scale{Factor: 1}, jobtest.Config{Inputs: 1, Outputs: 1}).Feed(0, 1.0, jobtest.Missing).Run()
	if hs := plain.Heads(0); hs[0].Corrupted() || !hs[1].Corrupted() || plain.Values(0)[1] != 0.0 {
		t.Errorf("dummy: values %v heads %v", plain.Values(0), hs)
	}
	cfg.Dummy = pipeline.DummyPrev
	res = jobtest.New(t, window{}, cfg).Feed(0, 1.0, 2.0, 3.0, jobtest.Missing).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{3.0, 6.0}) {
		t.Errorf("prev dummies: values %v", got)
	}
}

type pair struct{}

func (pair) Run(ctx *job.Context, a, b int64) (job.Outputs, error) {
	return job.Outputs{a + b, a * b}, nil
}

func TestOptionalInputsAndOutputsOfTheirOwn(t *testing.T) {
	cfg := jobtest.Config{
		InputPipes: []jobtest.Pipe{{}, {Optional: &pipeline.Optional{Default: int64(10)}}},
		Outputs:    2,
	}
	res := jobtest.New(t, pair{}, cfg).Feed(0, int64(1), int64(2), int64(3)).Feed(1, int64(5)).Run()
	// Round 1 takes the 5 fed; then the stored last value (store is the default).
	if got := res.Values(0); !reflect.DeepEqual(got, []any{int64(6), int64(7), int64(8)}) {
		t.Errorf("sums %v", got)
	}
	if got := res.Values(1); !reflect.DeepEqual(got, []any{int64(5), int64(10), int64(15)}) {
		t.Errorf("products %v", got)
	}
	no := false
	cfg.InputPipes[1].Optional.Store = &no
	res = jobtest.New(t, pair{}, cfg).Feed(0, int64(1), int64(2)).Feed(1, int64(5)).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{int64(6), int64(12)}) {
		t.Errorf("without store, the default comes back: %v", got)
	}
}

type stopAt struct{ n int64 }

func (s stopAt) Run(ctx *job.Context, x int64) (int64, error) {
	switch {
	case x%2 == 1:
		return 0, job.ErrSkip
	case x == s.n:
		ctx.Finish()
	}
	return x, nil
}

func TestFinishSkipAndTheFinishedBit(t *testing.T) {
	res := jobtest.New(t, stopAt{n: 4}, jobtest.Config{Inputs: 1, Outputs: 1}).Feed(0, int64(1), int64(2), int64(3), int64(4), int64(5)).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{int64(2), int64(4)}) {
		t.Errorf("values %v", got)
	}
	if !res.Finished || res.Rounds != 4 || !res.Outputs[0][0].Missing {
		t.Errorf("finished %v rounds %d outputs %v", res.Finished, res.Rounds, res.Outputs[0])
	}
	if hs := res.Heads(0); hs[0].Finished() || !hs[1].Finished() {
		t.Errorf("heads %v: only the last carries the finished bit", hs)
	}
	// An input block with the finished bit ends the job after its round, and the bit goes on.
	fin := codec.HeadMask(1, codec.BitFinished)
	res = jobtest.New(t, &scale{Factor: 1}, jobtest.Config{Inputs: 1, Outputs: 1}).
		Feed(0, 1.0, jobtest.Block{Value: 2.0, Head: fin}, 3.0).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{1.0, 2.0}) || !res.Finished || !res.Heads(0)[1].Finished() {
		t.Errorf("values %v finished %v", got, res.Finished)
	}
}

type failing struct{}

func (failing) Run(ctx *job.Context, x int64) (int64, error) {
	ctx.Printf("got %d", x)
	return 0, errors.New("boom")
}

func TestErrorsAndOutput(t *testing.T) {
	res := jobtest.New(t, failing{}, jobtest.Config{Inputs: 1, Outputs: 1}).Feed(0, int64(7)).RunErr()
	if res.Err == nil || !strings.Contains(res.Err.Error(), "boom") || res.Output != "got 7" {
		t.Errorf("err %v output %q", res.Err, res.Output)
	}
}

func TestSourcesFromTheRegistry(t *testing.T) {
	reg := builtin.Registry()
	res := jobtest.FromRegistry(t, reg, "counter", map[string]any{"count": 3, "start": 10}, jobtest.Config{Outputs: 1}).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{int64(10), int64(11), int64(12)}) || !res.Finished {
		t.Errorf("counter: %v finished %v", got, res.Finished)
	}
	// An endless source stops at MaxBlocks.
	res = jobtest.FromRegistry(t, reg, "counter", nil, jobtest.Config{Outputs: 1, MaxBlocks: 5}).Run()
	if len(res.Values(0)) != 5 || res.Finished {
		t.Errorf("endless counter: %v finished %v", res.Values(0), res.Finished)
	}
	// A sink writes its file into the working directory.
	dir := t.TempDir()
	res = jobtest.FromRegistry(t, reg, "csv_sink", map[string]any{"path": "out.csv", "echo": true},
		jobtest.Config{Inputs: 1, WorkDir: dir}).Feed(0, int64(1), int64(2)).Run()
	if !strings.Contains(res.Output, "2") {
		t.Errorf("csv_sink echo: %q", res.Output)
	}
}
