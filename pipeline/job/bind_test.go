package job_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
)

const finished1 = 0x20 // the finished bit of a 1-byte head

// --- helpers -------------------------------------------------------------------------------------

func mustCodec(t *testing.T, name string, size int) codec.Codec {
	t.Helper()
	c, err := codec.New(name, size)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ports makes one port per codec name (pipes numbered from first), all with block_count count.
func ports(t *testing.T, first, count int, codecs ...string) []job.Port {
	t.Helper()
	ps := make([]job.Port, len(codecs))
	for k, name := range codecs {
		size := 0
		if n, ok := strings.CutPrefix(name, "bytes"); ok {
			name, size = "bytes", len(n)+1 // "bytes" = 1 byte, "bytes___" = 4 bytes
		}
		ps[k] = job.Port{Pipe: first + k, Codec: mustCodec(t, name, size), BlockCount: count}
	}
	return ps
}

func encode(t *testing.T, p job.Port, v any) []byte {
	t.Helper()
	b, err := p.Codec.Append(nil, v)
	if err != nil {
		t.Fatalf("encode %v with %s: %v", v, p.Codec.Name(), err)
	}
	return b
}

func decodeAny(t *testing.T, p job.Port, b []byte) any {
	t.Helper()
	v, err := p.Codec.DecodeAny(b)
	if err != nil {
		t.Fatalf("decode %q with %s: %v", b, p.Codec.Name(), err)
	}
	return v
}

// block encodes one compute block: vals[k] is the value (or, with block_count > 1, the []any of
// values) of input k.
func block(t *testing.T, in []job.Port, vals ...any) [][][]byte {
	t.Helper()
	if len(vals) != len(in) {
		t.Fatalf("block: %d values for %d inputs", len(vals), len(in))
	}
	out := make([][][]byte, len(in))
	for k, v := range vals {
		if in[k].BlockCount > 1 {
			for _, e := range v.([]any) {
				out[k] = append(out[k], encode(t, in[k], e))
			}
			continue
		}
		out[k] = [][]byte{encode(t, in[k], v)}
	}
	return out
}

func newCtx(t *testing.T, in, out []job.Port) *job.Context {
	t.Helper()
	return newCtxWith(t, context.Background(), in, out)
}

func newCtxWith(t *testing.T, ctx context.Context, in, out []job.Port) *job.Context {
	t.Helper()
	cfg := job.ContextConfig{Pipeline: "test", Name: "j", JobID: 5, HeadSize: 1, Inputs: len(in), Outputs: len(out)}
	for _, p := range in {
		cfg.InputPipes = append(cfg.InputPipes, p.Pipe)
	}
	for _, p := range out {
		cfg.OutputPipes = append(cfg.OutputPipes, p.Pipe)
	}
	return job.NewContext(ctx, cfg)
}

func mustBind(t *testing.T, j any, in, out []job.Port) *job.Runner {
	t.Helper()
	r, err := job.Bind(j, "job 5 (test)", in, out)
	if err != nil {
		t.Fatalf("Bind: %v", err)
	}
	return r
}

// step runs one compute block as the worker does: heads first, then Step. It returns the decoded
// output values.
func step(t *testing.T, r *job.Runner, jctx *job.Context, in, out []job.Port, vals ...any) ([]any, error) {
	t.Helper()
	heads := make([][]uint32, len(in))
	for k, p := range in {
		heads[k] = make([]uint32, max(p.BlockCount, 1))
	}
	jctx.BeginBlock(heads)
	payloads, err := r.Step(jctx, block(t, in, vals...), nil)
	if err != nil {
		return nil, err
	}
	if len(payloads) != len(out) {
		t.Fatalf("Step returned %d payloads for %d outputs", len(payloads), len(out))
	}
	got := make([]any, len(out))
	for k := range out {
		got[k] = decodeAny(t, out[k], payloads[k])
	}
	return got, nil
}

func mustStep(t *testing.T, r *job.Runner, jctx *job.Context, in, out []job.Port, vals ...any) []any {
	t.Helper()
	got, err := step(t, r, jctx, in, out, vals...)
	if err != nil {
		t.Fatalf("Step: %v", err)
	}
	return got
}

func wantErrContaining(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

// --- Run signatures ------------------------------------------------------------------------------

type noCtx struct{}

func (noCtx) Run(a, b int64) (int64, error) { return a + b, nil }

type noArgs struct{}

func (noArgs) Run() (int64, error) { return 0, nil }

type oneIn struct{}

func (oneIn) Run(_ *job.Context, a int64) (int64, error) { return a, nil }

type twoPlusRest struct{}

func (twoPlusRest) Run(_ *job.Context, a, b int64, rest ...int64) (int64, error) { return a + b, nil }

type badResults struct{}

func (badResults) Run(_ *job.Context, a int64) (int64, int64) { return a, a }

type errOnly struct{}

func (errOnly) Run(_ *job.Context, a int64) error { return nil }

type errSource struct{}

func (errSource) Run(*job.Context) error { return nil }

type nothing struct{}

type genWithRun struct{}

func (genWithRun) Generate(*job.Context, func(any) error) error { return nil }

type stringerIn struct{}

func (stringerIn) Run(_ *job.Context, s interface{ String() string }) error { return nil }

type bytesIn struct{}

func (bytesIn) Run(_ *job.Context, b []byte) error { return nil }

type intsIn struct{}

func (intsIn) Run(_ *job.Context, b []int64) error { return nil }

type checked struct{ oneIn }

func (checked) CheckPorts(inputs, outputs int) error {
	if outputs != 2 {
		return errors.New("wants 2 outputs")
	}
	return nil
}

func TestBindErrors(t *testing.T) {
	tests := []struct {
		name    string
		job     any
		in, out []job.Port
		wantErr []string
	}{
		{"first arg not a context", noCtx{}, ports(t, 1, 1, "cbor"), ports(t, 9, 1, "cbor"), []string{"job 5 (test)", "*job.Context as its first argument"}},
		{"no args at all", noArgs{}, nil, ports(t, 9, 1, "cbor"), []string{"*job.Context as its first argument"}},
		{"too many inputs", oneIn{}, ports(t, 1, 1, "cbor", "cbor"), ports(t, 9, 1, "cbor"), []string{"job 5 (test)", "Run takes 1 inputs but the job has 2"}},
		{"too few inputs", oneIn{}, nil, ports(t, 9, 1, "cbor"), []string{"Run takes 1 inputs but the job has 0"}},
		{"too few for variadic", twoPlusRest{}, ports(t, 1, 1, "cbor"), ports(t, 9, 1, "cbor"), []string{"Run takes 2 inputs or more but the job has 1"}},
		{"bad results", badResults{}, ports(t, 1, 1, "cbor"), ports(t, 9, 1, "cbor"), []string{"Run must return"}},
		{"no value for outputs", errOnly{}, ports(t, 1, 1, "cbor"), ports(t, 9, 1, "cbor"), []string{"returns no value but the job has 1 outputs"}},
		{"source without a value for outputs", errSource{}, nil, ports(t, 9, 1, "cbor"), []string{"returns no value but the job has 1 outputs"}},
		{"no method", nothing{}, nil, ports(t, 9, 1, "cbor"), []string{"job 5 (test)", "no Run, Generate or RunRaw"}},
		{"generator with inputs", genWithRun{}, ports(t, 1, 1, "cbor"), ports(t, 9, 1, "cbor"), []string{"cannot have inputs"}},
		{"block_count needs a slice", oneIn{}, ports(t, 1, 3, "cbor"), ports(t, 9, 1, "cbor"), []string{"input 1 (pipe 1)", "block_count 3 needs a slice"}},
		{"block_count into an interface with methods", stringerIn{}, ports(t, 1, 3, "cbor"), nil, []string{"input 1 (pipe 1)"}},
		{"interface with methods", stringerIn{}, ports(t, 1, 1, "cbor"), nil, []string{"input 1 (pipe 1)"}},
		{"bytes codec into int64", oneIn{}, ports(t, 4, 1, "bytes___"), ports(t, 9, 1, "cbor"), []string{"input 1 (pipe 4)"}},
		{"bytes codec block_count into []byte", bytesIn{}, ports(t, 4, 2, "bytes___"), nil, []string{"block_count 2 needs a slice"}},
		{"bytes codec block_count into []int64", intsIn{}, ports(t, 4, 2, "bytes___"), nil, []string{"input 1 (pipe 4)"}},
		{"CheckPorts", checked{}, ports(t, 1, 1, "cbor"), ports(t, 9, 1, "cbor"), []string{"job 5 (test)", "wants 2 outputs"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := job.Bind(tt.job, "job 5 (test)", tt.in, tt.out)
			if err == nil {
				t.Fatalf("Bind succeeded: %+v", r)
			}
			wantErrContaining(t, err, tt.wantErr...)
		})
	}
}

// --- variadic inputs (PY-5) ----------------------------------------------------------------------

type firstRest struct{ calls int }

func (f *firstRest) Run(_ *job.Context, first float64, rest ...float64) (job.Outputs, error) {
	f.calls++
	s := 0.0
	for _, r := range rest {
		s += r
	}
	return job.Outputs{first, s}, nil
}

func TestVariadic(t *testing.T) {
	tests := []struct {
		name string
		vals []any
		want []any
	}{
		{"PY-5 three inputs", []any{1, 2, 3}, []any{1.0, 5.0}},
		{"only the fixed one", []any{4}, []any{4.0, 0.0}},
		{"five inputs", []any{1, 2, 3, 4, 5}, []any{1.0, 14.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			codecs := make([]string, len(tt.vals))
			for k := range codecs {
				codecs[k] = "cbor"
			}
			in, out := ports(t, 1, 1, codecs...), ports(t, 10, 1, "cbor", "cbor")
			r := mustBind(t, &firstRest{}, in, out)
			got := mustStep(t, r, newCtx(t, in, out), in, out, tt.vals...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

// --- decoding inputs into typed params -----------------------------------------------------------

// echo records the value it got and returns it on every output.
type echo[T any] struct{ got []T }

func (e *echo[T]) Run(_ *job.Context, v T) (T, error) {
	e.got = append(e.got, v)
	return v, nil
}

type point struct {
	X    int64  `json:"x" cbor:"x"`
	Name string `json:"name" cbor:"name"`
}

func TestDecodeInputTypes(t *testing.T) {
	// check binds job to one input with the codec, feeds it in and checks what Run saw and what
	// came out on a port of the same codec.
	type tc struct {
		name  string
		codec string
		job   func() (any, func() any) // the job and a getter of the value Run saw
		in    any
		want  any
	}
	mk := func(j any, got func() any) func() (any, func() any) {
		return func() (any, func() any) { return j, got }
	}
	last := func(s any) any {
		v := reflect.ValueOf(s)
		if v.Len() == 0 {
			return nil
		}
		return v.Index(v.Len() - 1).Interface()
	}
	var tests []tc
	for _, c := range []string{"cbor", "json"} {
		i := &echo[int64]{}
		f := &echo[float64]{}
		s := &echo[string]{}
		b := &echo[[]byte]{}
		p := &echo[point]{}
		a := &echo[any]{}
		am := &echo[any]{}
		tests = append(tests,
			tc{"int64", c, mk(i, func() any { return last(i.got) }), int64(-42), int64(-42)},
			tc{"float64", c, mk(f, func() any { return last(f.got) }), 2.5, 2.5},
			tc{"float64 from an integer", c, mk(f, func() any { return last(f.got) }), int64(3), 3.0},
			tc{"string", c, mk(s, func() any { return last(s.got) }), "héllo", "héllo"},
			tc{"bytes", c, mk(b, func() any { return last(b.got) }), []byte{1, 2, 3}, []byte{1, 2, 3}},
			tc{"struct", c, mk(p, func() any { return last(p.got) }), point{X: 7, Name: "p"}, point{X: 7, Name: "p"}},
			tc{"any int", c, mk(a, func() any { return last(a.got) }), int64(9), int64(9)},
			tc{"any map", c, mk(am, func() any { return last(am.got) }), map[string]any{"k": "v"}, map[string]any{"k": "v"}},
		)
	}
	bb := &echo[[]byte]{}
	bs := &echo[string]{}
	ba := &echo[any]{}
	tests = append(tests,
		tc{"[]byte", "bytes___", mk(bb, func() any { return last(bb.got) }), []byte("abcd"), []byte("abcd")},
		tc{"string", "bytes___", mk(bs, func() any { return last(bs.got) }), []byte("wxyz"), "wxyz"},
		tc{"any", "bytes___", mk(ba, func() any { return last(ba.got) }), []byte("1234"), []byte("1234")},
	)
	for _, tt := range tests {
		t.Run(tt.codec+"/"+tt.name, func(t *testing.T) {
			j, got := tt.job()
			in, out := ports(t, 1, 1, tt.codec), ports(t, 2, 1, tt.codec)
			r := mustBind(t, j, in, out)
			jctx := newCtx(t, in, out)
			jctx.BeginBlock([][]uint32{{0}})
			payloads, err := r.Step(jctx, block(t, in, tt.in), nil)
			if err != nil {
				t.Fatalf("Step: %v", err)
			}
			if g := got(); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("Run saw %#v, want %#v", g, tt.want)
			}
			// The output carries the same value: decode it into the same type.
			dec, err := codec.NewDecoder(out[0].Codec, reflect.TypeOf(tt.want))
			if err != nil {
				t.Fatal(err)
			}
			v, err := dec(payloads[0])
			if err != nil {
				t.Fatalf("decode output %q: %v", payloads[0], err)
			}
			if !reflect.DeepEqual(v.Interface(), tt.want) {
				t.Errorf("output %#v, want %#v", v.Interface(), tt.want)
			}
		})
	}
}

func TestDecodeErrorNamesInput(t *testing.T) {
	in, out := ports(t, 3, 1, "cbor"), ports(t, 9, 1, "cbor")
	r := mustBind(t, &echo[int64]{}, in, out)
	jctx := newCtx(t, in, out)
	jctx.BeginBlock([][]uint32{{0}})
	_, err := r.Step(jctx, block(t, in, "not a number"), nil)
	wantErrContaining(t, err, "job 5 (test)", "input 1 (pipe 3, cbor)")
}

// --- block_count > 1 (PY-6) ----------------------------------------------------------------------

type listJob[T any] struct{ got [][]T }

func (l *listJob[T]) Run(_ *job.Context, xs []T) error {
	l.got = append(l.got, xs)
	return nil
}

type anyList struct{ got []any }

func (l *anyList) Run(_ *job.Context, xs any) error {
	l.got = append(l.got, xs)
	return nil
}

func TestBlockCount(t *testing.T) {
	for _, c := range []string{"cbor", "json"} {
		t.Run(c+"/[]int64", func(t *testing.T) {
			in := ports(t, 1, 3, c)
			j := &listJob[int64]{}
			r := mustBind(t, j, in, nil)
			jctx := newCtx(t, in, nil)
			mustStep(t, r, jctx, in, nil, []any{1, 2, 3})
			mustStep(t, r, jctx, in, nil, []any{4, 5, 6})
			if want := [][]int64{{1, 2, 3}, {4, 5, 6}}; !reflect.DeepEqual(j.got, want) {
				t.Errorf("got %v, want %v", j.got, want)
			}
		})
		t.Run(c+"/any", func(t *testing.T) {
			in := ports(t, 1, 3, c)
			j := &anyList{}
			r := mustBind(t, j, in, nil)
			jctx := newCtx(t, in, nil)
			mustStep(t, r, jctx, in, nil, []any{1, 2, 3})
			mustStep(t, r, jctx, in, nil, []any{4, 5, 6})
			want := []any{[]any{int64(1), int64(2), int64(3)}, []any{int64(4), int64(5), int64(6)}}
			if !reflect.DeepEqual(j.got, want) {
				t.Errorf("got %#v, want %#v", j.got, want)
			}
		})
	}
	t.Run("bytes/[]string", func(t *testing.T) {
		in := ports(t, 1, 2, "bytes__")
		j := &listJob[string]{}
		r := mustBind(t, j, in, nil)
		mustStep(t, r, newCtx(t, in, nil), in, nil, []any{[]byte("abc"), []byte("def")})
		if want := [][]string{{"abc", "def"}}; !reflect.DeepEqual(j.got, want) {
			t.Errorf("got %q, want %q", j.got, want)
		}
	})
}

// --- output mapping (PY-1 … PY-4) ----------------------------------------------------------------

type times10 struct{}

func (times10) Run(_ *job.Context, a int64) (int64, error) { return a * 10, nil }

type plusMinus struct{ n int }

func (p plusMinus) Run(_ *job.Context, a int64) (job.Outputs, error) {
	out := job.Outputs{a, -a}
	for len(out) < p.n {
		out = append(out, 0)
	}
	return out[:p.n], nil
}

type endAt struct{ at int64 }

func (e endAt) Run(_ *job.Context, a int64) (int64, error) {
	if a == e.at {
		return 0, job.ErrEnd
	}
	return a, nil
}

type failAt struct{}

func (failAt) Run(_ *job.Context, a int64) (int64, error) { return 0, errors.New("boom") }

type valueOnly struct{}

func (valueOnly) Run(_ *job.Context, a string) string { return a + "!" }

type sinkReturns struct{ seen []int64 }

func (s *sinkReturns) Run(_ *job.Context, a int64) (int64, error) {
	s.seen = append(s.seen, a)
	return a, nil
}

func TestOutputMapping(t *testing.T) {
	t.Run("PY-1 broadcast to every output", func(t *testing.T) {
		in, out := ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor", "json", "cbor")
		r := mustBind(t, times10{}, in, out)
		jctx := newCtx(t, in, out)
		var got [][]any
		for _, v := range []int64{1, 2} {
			got = append(got, mustStep(t, r, jctx, in, out, v))
		}
		want := [][]any{{int64(10), int64(10), int64(10)}, {int64(20), int64(20), int64(20)}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("PY-2 one value per output", func(t *testing.T) {
		in, out := ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor", "json")
		r := mustBind(t, plusMinus{n: 2}, in, out)
		jctx := newCtx(t, in, out)
		var got [][]any
		for _, v := range []int64{1, 2} {
			got = append(got, mustStep(t, r, jctx, in, out, v))
		}
		want := [][]any{{int64(1), int64(-1)}, {int64(2), int64(-2)}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("PY-3 wrong length", func(t *testing.T) {
		for _, n := range []int{1, 3} {
			in, out := ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor", "cbor")
			r := mustBind(t, plusMinus{n: n}, in, out)
			_, err := step(t, r, newCtx(t, in, out), in, out, int64(1))
			wantErrContaining(t, err, "job 5 (test)", "returned "+string(rune('0'+n))+" values for 2 outputs")
		}
	})
	t.Run("PY-4 ErrEnd ends", func(t *testing.T) {
		in, out := ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor")
		r := mustBind(t, endAt{at: 2}, in, out)
		jctx := newCtx(t, in, out)
		if got := mustStep(t, r, jctx, in, out, int64(1)); !reflect.DeepEqual(got, []any{int64(1)}) {
			t.Errorf("first block: got %v", got)
		}
		_, err := step(t, r, jctx, in, out, int64(2))
		if !errors.Is(err, job.ErrEnd) {
			t.Errorf("second block: err = %v, want ErrEnd", err)
		}
	})
	t.Run("error names the job", func(t *testing.T) {
		in, out := ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor")
		r := mustBind(t, failAt{}, in, out)
		_, err := step(t, r, newCtx(t, in, out), in, out, int64(1))
		wantErrContaining(t, err, "job 5 (test)", "boom")
		if errors.Is(err, job.ErrEnd) {
			t.Error("a failure is not ErrEnd")
		}
	})
	t.Run("value without error", func(t *testing.T) {
		in, out := ports(t, 1, 1, "json"), ports(t, 10, 1, "json")
		r := mustBind(t, valueOnly{}, in, out)
		if got := mustStep(t, r, newCtx(t, in, out), in, out, "hi"); !reflect.DeepEqual(got, []any{"hi!"}) {
			t.Errorf("got %v", got)
		}
	})
	t.Run("encode error names the output", func(t *testing.T) {
		in, out := ports(t, 1, 1, "json"), ports(t, 10, 1, "json", "bytes___")
		r := mustBind(t, valueOnly{}, in, out)
		_, err := step(t, r, newCtx(t, in, out), in, out, "hi")
		wantErrContaining(t, err, "job 5 (test)", "output 2 (pipe 11")
	})
	t.Run("a sink's value is ignored", func(t *testing.T) {
		in := ports(t, 1, 1, "cbor")
		j := &sinkReturns{}
		r := mustBind(t, j, in, nil)
		jctx := newCtx(t, in, nil)
		for _, v := range []int64{1, 2, 3} {
			if got := mustStep(t, r, jctx, in, nil, v); len(got) != 0 {
				t.Errorf("a sink produced %v", got)
			}
		}
		if !reflect.DeepEqual(j.seen, []int64{1, 2, 3}) {
			t.Errorf("sink saw %v", j.seen)
		}
	})
	t.Run("output buffers are reused", func(t *testing.T) {
		in, out := ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor", "cbor")
		r := mustBind(t, plusMinus{n: 2}, in, out)
		jctx := newCtx(t, in, out)
		buf := [][]byte{make([]byte, 0, 16), make([]byte, 0, 16)}
		jctx.BeginBlock([][]uint32{{0}})
		got, err := r.Step(jctx, block(t, in, int64(300)), buf)
		if err != nil {
			t.Fatal(err)
		}
		if &got[0][:1][0] != &buf[0][:1][0] {
			t.Error("output 0 was not appended to the buffer given")
		}
		if a, b := decodeAny(t, out[0], got[0]), decodeAny(t, out[1], got[1]); a != int64(300) || b != int64(-300) {
			t.Errorf("got %v, %v", a, b)
		}
	})
}

// --- sources (PY-7, PY-8) ------------------------------------------------------------------------

// gen emits values 1, 2, …; it calls Finish before the emit numbered finishAt (0: never), and stops
// after stopAfter emits returning ret.
type gen struct {
	finishAt  int
	stopAfter int
	ret       error
	emitErrs  []error // what emit returned, per call
	setOut    map[int]pipeline.Head

	ignoreEmitErrs bool
}

func (g *gen) Generate(ctx *job.Context, emit func(any) error) error {
	for i := 1; i <= g.stopAfter; i++ {
		if i == g.finishAt {
			ctx.Finish()
		}
		if h, ok := g.setOut[i]; ok {
			if err := ctx.SetOutHead(0, h); err != nil {
				return err
			}
		}
		err := emit(int64(i))
		g.emitErrs = append(g.emitErrs, err)
		if err != nil && !g.ignoreEmitErrs {
			return err
		}
	}
	return g.ret
}

type emitted struct {
	vals  [][]any
	heads [][]uint32
}

func (e *emitted) emit(t *testing.T, jctx *job.Context, out []job.Port) func([][]byte) error {
	return func(payloads [][]byte) error {
		if len(payloads) != len(out) {
			t.Errorf("emit got %d payloads for %d outputs", len(payloads), len(out))
		}
		var vs []any
		var hs []uint32
		for k := range out {
			vs = append(vs, decodeAny(t, out[k], payloads[k]))
			hs = append(hs, jctx.OutHead(k))
		}
		e.vals = append(e.vals, vs)
		e.heads = append(e.heads, hs)
		return nil
	}
}

func TestGenerate(t *testing.T) {
	t.Run("PY-7 Finish before the 3rd emit", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor", "json")
		g := &gen{finishAt: 3, stopAfter: 3}
		r := mustBind(t, g, nil, out)
		if !r.IsSource() {
			t.Error("a generator is not a source")
		}
		jctx := newCtx(t, nil, out)
		var e emitted
		if err := r.Generate(jctx, e.emit(t, jctx, out)); err != nil {
			t.Fatalf("Generate = %v, want nil (finished)", err)
		}
		wantVals := [][]any{{int64(1), int64(1)}, {int64(2), int64(2)}, {int64(3), int64(3)}}
		wantHeads := [][]uint32{{0, 0}, {0, 0}, {finished1, finished1}}
		if !reflect.DeepEqual(e.vals, wantVals) || !reflect.DeepEqual(e.heads, wantHeads) {
			t.Errorf("values %v heads %v, want %v %v", e.vals, e.heads, wantVals, wantHeads)
		}
		if !jctx.Finished() {
			t.Error("Finished() is false")
		}
	})
	t.Run("emit after the finished value is an error", func(t *testing.T) {
		for _, ignore := range []bool{false, true} {
			out := ports(t, 10, 1, "cbor")
			g := &gen{finishAt: 2, stopAfter: 3, ignoreEmitErrs: ignore}
			r := mustBind(t, g, nil, out)
			jctx := newCtx(t, nil, out)
			var e emitted
			err := r.Generate(jctx, e.emit(t, jctx, out))
			if len(e.vals) != 2 {
				t.Errorf("%d values reached emit, want 2", len(e.vals))
			}
			if len(g.emitErrs) != 3 || g.emitErrs[2] == nil {
				t.Fatalf("emit errors %v: the 3rd emit must fail", g.emitErrs)
			}
			wantErrContaining(t, g.emitErrs[2], "job 5 (test)", "emit after the finished block")
			if ignore {
				// The generator ignored the error: the job still finished.
				if err != nil {
					t.Errorf("Generate = %v, want nil", err)
				}
				continue
			}
			wantErrContaining(t, err, "emit after the finished block")
			if n := strings.Count(err.Error(), "job 5 (test)"); n != 1 {
				t.Errorf("error %q names the job %d times", err, n)
			}
		}
	})
	t.Run("an encode error names the job once", func(t *testing.T) {
		out := ports(t, 10, 1, "bytes___")
		r := mustBind(t, &gen{finishAt: 3, stopAfter: 3}, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		err := r.Generate(jctx, e.emit(t, jctx, out))
		wantErrContaining(t, err, "job 5 (test)", "output 1 (pipe 10, bytes)")
		if n := strings.Count(err.Error(), "job 5 (test)"); n != 1 {
			t.Errorf("error %q names the job %d times", err, n)
		}
	})
	t.Run("PY-8 ErrEnd ends without finishing", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor")
		g := &gen{stopAfter: 2, ret: job.ErrEnd}
		r := mustBind(t, g, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		if err := r.Generate(jctx, e.emit(t, jctx, out)); !errors.Is(err, job.ErrEnd) {
			t.Errorf("Generate = %v, want ErrEnd", err)
		}
		if len(e.vals) != 2 || e.heads[1][0] != 0 {
			t.Errorf("values %v heads %v", e.vals, e.heads)
		}
	})
	t.Run("returning without Finish ends", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor")
		r := mustBind(t, &gen{stopAfter: 1}, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		if err := r.Generate(jctx, e.emit(t, jctx, out)); !errors.Is(err, job.ErrEnd) {
			t.Errorf("Generate = %v, want ErrEnd", err)
		}
	})
	t.Run("a generator error names the job", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor")
		r := mustBind(t, &gen{stopAfter: 1, ret: errors.New("sensor gone")}, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		wantErrContaining(t, r.Generate(jctx, e.emit(t, jctx, out)), "job 5 (test)", "sensor gone")
	})
	t.Run("an emit error stops the generator", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor")
		g := &gen{finishAt: 100, stopAfter: 5}
		r := mustBind(t, g, nil, out)
		jctx := newCtx(t, nil, out)
		n := 0
		err := r.Generate(jctx, func([][]byte) error {
			n++
			if n == 2 {
				return errors.New("publish failed")
			}
			return nil
		})
		wantErrContaining(t, err, "publish failed")
		if n != 2 {
			t.Errorf("emit called %d times, want 2", n)
		}
	})
	t.Run("cancel stops the generator", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := mustBind(t, &gen{finishAt: 1000, stopAfter: 1000}, nil, out)
		jctx := newCtxWith(t, ctx, nil, out)
		n := 0
		err := r.Generate(jctx, func([][]byte) error {
			n++
			if n == 3 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Generate = %v, want context.Canceled", err)
		}
		if n != 3 {
			t.Errorf("emit called %d times after cancel, want 3", n)
		}
	})
	t.Run("out heads hold for one value and carry the finished bit", func(t *testing.T) {
		out := ports(t, 10, 1, "cbor")
		g := &gen{finishAt: 3, stopAfter: 3, setOut: map[int]pipeline.Head{1: pipeline.NewHead(0x10, 1), 3: pipeline.NewHead(0x01, 1)}}
		r := mustBind(t, g, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		if err := r.Generate(jctx, e.emit(t, jctx, out)); err != nil {
			t.Fatal(err)
		}
		if want := [][]uint32{{0x10}, {0}, {finished1 | 0x01}}; !reflect.DeepEqual(e.heads, want) {
			t.Errorf("heads %#v, want %#v", e.heads, want)
		}
	})
}

// runSource is a source with Run(ctx): it finishes at the value finishAt, or ends with ErrEnd at
// endAt.
type runSource struct {
	calls           int
	finishAt, endAt int
}

func (s *runSource) Run(ctx *job.Context) (int, error) {
	s.calls++
	if s.calls == s.endAt {
		return 0, job.ErrEnd
	}
	if s.calls == s.finishAt {
		ctx.Finish()
	}
	return s.calls * s.calls, nil
}

func TestRunSource(t *testing.T) {
	t.Run("called until Finish", func(t *testing.T) {
		out := ports(t, 10, 1, "json")
		s := &runSource{finishAt: 4}
		r := mustBind(t, s, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		if err := r.Generate(jctx, e.emit(t, jctx, out)); err != nil {
			t.Fatalf("Generate = %v", err)
		}
		want := [][]any{{int64(1)}, {int64(4)}, {int64(9)}, {int64(16)}}
		if !reflect.DeepEqual(e.vals, want) || s.calls != 4 {
			t.Errorf("values %v after %d calls, want %v", e.vals, s.calls, want)
		}
		if h := e.heads[3][0]; h != finished1 {
			t.Errorf("last head %#x, want %#x", h, finished1)
		}
		if h := e.heads[2][0]; h != 0 {
			t.Errorf("3rd head %#x, want 0", h)
		}
	})
	t.Run("ErrEnd", func(t *testing.T) {
		out := ports(t, 10, 1, "json")
		s := &runSource{endAt: 3}
		r := mustBind(t, s, nil, out)
		jctx := newCtx(t, nil, out)
		var e emitted
		if err := r.Generate(jctx, e.emit(t, jctx, out)); !errors.Is(err, job.ErrEnd) {
			t.Errorf("Generate = %v, want ErrEnd", err)
		}
		if len(e.vals) != 2 {
			t.Errorf("%d values, want 2", len(e.vals))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		out := ports(t, 10, 1, "json")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := mustBind(t, &runSource{}, nil, out)
		jctx := newCtxWith(t, ctx, nil, out)
		n := 0
		err := r.Generate(jctx, func([][]byte) error {
			if n++; n == 5 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || n != 5 {
			t.Errorf("Generate = %v after %d values, want context.Canceled after 5", err, n)
		}
	})
}

// --- the RawJob fast path ------------------------------------------------------------------------

type rawFwd struct{ raw, run int }

func (f *rawFwd) RunRaw(_ *job.Context, in [][][]byte, out [][]byte) ([][]byte, error) {
	f.raw++
	for k := range out {
		out[k] = in[0][0]
	}
	return out, nil
}

func (f *rawFwd) Run(_ *job.Context, v any) (any, error) {
	f.run++
	return v, nil
}

type rawOnly struct{ blocks [][][][]byte }

func (s *rawOnly) RunRaw(_ *job.Context, in [][][]byte, out [][]byte) ([][]byte, error) {
	s.blocks = append(s.blocks, in)
	return out, nil
}

func TestRawFastPath(t *testing.T) {
	tests := []struct {
		name    string
		in, out []job.Port
		wantRaw bool
	}{
		{"cbor to cbor", ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor", "cbor"), true},
		{"json to json", ports(t, 1, 1, "json"), ports(t, 10, 1, "json"), true},
		{"cbor to json", ports(t, 1, 1, "cbor"), ports(t, 10, 1, "json"), false},
		{"cbor to cbor and json", ports(t, 1, 1, "cbor"), ports(t, 10, 1, "cbor", "json"), false},
		{"block_count 2", ports(t, 1, 2, "cbor"), ports(t, 10, 1, "cbor"), false},
		{"bytes to cbor", ports(t, 1, 1, "bytes__"), ports(t, 10, 1, "cbor"), false},
		{"bytes of one size", ports(t, 1, 1, "bytes__"), ports(t, 10, 1, "bytes__"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &rawFwd{}
			r := mustBind(t, j, tt.in, tt.out)
			jctx := newCtx(t, tt.in, tt.out)
			var val any = int64(7)
			if tt.in[0].Codec.Name() == codec.Bytes {
				val = []byte("abc")
			}
			vals := val
			if tt.in[0].BlockCount > 1 {
				vals = []any{val, val}
			}
			jctx.BeginBlock([][]uint32{make([]uint32, tt.in[0].BlockCount)})
			payloads, err := r.Step(jctx, block(t, tt.in, vals), nil)
			if err != nil {
				t.Fatalf("Step: %v", err)
			}
			if gotRaw := j.raw == 1; gotRaw != tt.wantRaw || j.raw+j.run != 1 {
				t.Errorf("RunRaw called %d times, Run %d times; want raw=%v", j.raw, j.run, tt.wantRaw)
			}
			if len(payloads) != len(tt.out) {
				t.Fatalf("%d payloads for %d outputs", len(payloads), len(tt.out))
			}
			if tt.in[0].BlockCount > 1 {
				return // Run got a list; what it is depends on the job
			}
			for k, p := range payloads {
				if got := decodeAny(t, tt.out[k], p); !reflect.DeepEqual(got, val) {
					t.Errorf("output %d = %#v, want %#v", k, got, val)
				}
			}
		})
	}
	t.Run("sink with block_count 3", func(t *testing.T) {
		in := append(ports(t, 1, 3, "cbor"), ports(t, 2, 1, "json")...)
		j := &rawOnly{}
		r := mustBind(t, j, in, nil)
		jctx := newCtx(t, in, nil)
		jctx.BeginBlock([][]uint32{{0, 0, 0}, {0}})
		payloads, err := r.Step(jctx, block(t, in, []any{1, 2, 3}, "x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(payloads) != 0 {
			t.Errorf("a sink produced %d payloads", len(payloads))
		}
		if len(j.blocks) != 1 || len(j.blocks[0]) != 2 || len(j.blocks[0][0]) != 3 || len(j.blocks[0][1]) != 1 {
			t.Fatalf("RunRaw got %v", j.blocks)
		}
		for i, p := range j.blocks[0][0] {
			if v := decodeAny(t, in[0], p); v != int64(i+1) {
				t.Errorf("block %d = %v", i, v)
			}
		}
	})
	t.Run("raw-only job with mixed codecs", func(t *testing.T) {
		for _, pair := range [][2]string{{"cbor", "json"}, {"bytes__", "bytes___"}} {
			_, err := job.Bind(&rawOnly{}, "job 5 (test)", ports(t, 1, 1, pair[0]), ports(t, 10, 1, pair[1]))
			wantErrContaining(t, err, "job 5 (test)", "one codec")
		}
	})
}

// --- heads (PY-9) --------------------------------------------------------------------------------

func TestHeads(t *testing.T) {
	in, out := ports(t, 1, 1, "cbor", "cbor"), ports(t, 10, 1, "cbor", "cbor")
	jctx := newCtx(t, in, out)

	jctx.BeginBlock([][]uint32{{0x04}, {0x81}})
	if got := jctx.Head().Value; got != 0x85 {
		t.Errorf("Head = %#x, want 0x85", got)
	}
	if got := jctx.InHeads(1); len(got) != 1 || got[0].Value != 0x81 {
		t.Errorf("InHeads(1) = %v", got)
	}
	if err := jctx.SetOutHead(1, pipeline.NewHead(3, 1)); err != nil {
		t.Fatal(err)
	}
	if got := jctx.OutHead(1); got != 3 {
		t.Errorf("OutHead(1) = %#x, want 3", got)
	}
	if got := jctx.OutHead(0); got != 0x85 {
		t.Errorf("OutHead(0) = %#x, want 0x85", got)
	}

	// The out heads last one block; the in heads are the new block's (made when asked).
	jctx.BeginBlock([][]uint32{{0x08}, {0x00}})
	if got0, got1 := jctx.OutHead(0), jctx.OutHead(1); got0 != 0x08 || got1 != 0x08 {
		t.Errorf("next block: OutHead = %#x, %#x; want 0x08 both", got0, got1)
	}
	if got0, got1 := jctx.InHeads(0), jctx.InHeads(1); len(got0) != 1 || got0[0].Value != 0x08 || len(got1) != 1 || got1[0].Value != 0 {
		t.Errorf("next block: InHeads = %v, %v; want [0x08], [0]", got0, got1)
	}

	// The reset bit belongs to the system.
	if err := jctx.SetOutHead(0, pipeline.NewHead(0x40, 1)); !errors.Is(err, pipeline.ErrReservedBit) {
		t.Errorf("SetOutHead with the reset bit: %v, want ErrReservedBit", err)
	}
	if err := jctx.SetHead(pipeline.NewHead(0x48, 1)); !errors.Is(err, pipeline.ErrReservedBit) {
		t.Errorf("SetHead with the reset bit: %v, want ErrReservedBit", err)
	}
	if err := jctx.SetOutHead(2, pipeline.NewHead(1, 1)); err == nil {
		t.Error("SetOutHead(2) on a job with 2 outputs succeeded")
	}
	if err := jctx.SetOutHead(-1, pipeline.NewHead(1, 1)); err == nil {
		t.Error("SetOutHead(-1) succeeded")
	}

	// A reset head coming in may be kept.
	jctx.BeginBlock([][]uint32{{0x40}, {0x01}})
	if err := jctx.SetHead(pipeline.NewHead(0x42, 1)); err != nil {
		t.Errorf("SetHead keeping the incoming reset bit: %v", err)
	}
	if got := jctx.OutHead(0); got != 0x42 {
		t.Errorf("OutHead(0) = %#x, want 0x42", got)
	}

	// Finish sets the finished bit on every output, set or not.
	jctx.BeginBlock([][]uint32{{0x01}, {0x00}})
	if err := jctx.SetOutHead(1, pipeline.NewHead(0x10, 1)); err != nil {
		t.Fatal(err)
	}
	jctx.Finish()
	if !jctx.Head().Finished() {
		t.Error("Head is not finished after Finish")
	}
	if got0, got1 := jctx.OutHead(0), jctx.OutHead(1); got0 != 0x21 || got1 != 0x30 {
		t.Errorf("after Finish: OutHead = %#x, %#x; want 0x21, 0x30", got0, got1)
	}
}

func TestHeadsBlockCount(t *testing.T) {
	in := ports(t, 1, 3, "cbor")
	jctx := newCtx(t, in, nil)
	jctx.BeginBlock([][]uint32{{0x01, 0x02, 0x80}})
	if got := jctx.Head().Value; got != 0x83 {
		t.Errorf("Head = %#x, want 0x83", got)
	}
	if got := jctx.InHeads(0); len(got) != 3 || got[2].Value != 0x80 || !got[2].Corrupted() {
		t.Errorf("InHeads(0) = %v", got)
	}
}

func TestHeadSize2(t *testing.T) {
	out := ports(t, 10, 1, "cbor")
	jctx := job.NewContext(context.Background(), job.ContextConfig{HeadSize: 2, Outputs: 1, Inputs: 1})
	jctx.BeginBlock([][]uint32{{0x0102}})
	if got := jctx.Head().Value; got != 0x0102 {
		t.Errorf("Head = %#x", got)
	}
	if err := jctx.SetOutHead(0, pipeline.NewHead(0x4000, 2)); !errors.Is(err, pipeline.ErrReservedBit) {
		t.Errorf("reset bit of a 2-byte head: %v", err)
	}
	jctx.Finish()
	if got := jctx.OutHead(0); got != 0x2102 {
		t.Errorf("finished OutHead = %#x, want 0x2102", got)
	}

	// A source with a 2-byte head (PY-7 with HEAD_SIZE 2).
	jctx = job.NewContext(context.Background(), job.ContextConfig{HeadSize: 2, Outputs: 1})
	r := mustBind(t, &gen{finishAt: 2, stopAfter: 2}, nil, out)
	var e emitted
	if err := r.Generate(jctx, e.emit(t, jctx, out)); err != nil {
		t.Fatal(err)
	}
	if want := [][]uint32{{0}, {0x2000}}; !reflect.DeepEqual(e.heads, want) {
		t.Errorf("heads %#v, want %#v", e.heads, want)
	}
}

func TestContextFields(t *testing.T) {
	var buf strings.Builder
	jctx := job.NewContext(context.Background(), job.ContextConfig{
		Pipeline: "p", Name: "n", Worker: "w", WorkDir: "/tmp/x", JobID: 3,
		InputPipes: []int{1, 2}, OutputPipes: []int{7}, Inputs: 2, Outputs: 1, Out: &buf,
	})
	if jctx.Pipeline != "p" || jctx.Name != "n" || jctx.Worker != "w" || jctx.WorkDir != "/tmp/x" || jctx.JobID != 3 {
		t.Errorf("fields: %+v", jctx)
	}
	if !reflect.DeepEqual(jctx.InputPipes(), []int{1, 2}) || !reflect.DeepEqual(jctx.OutputPipes(), []int{7}) {
		t.Errorf("pipes: %v %v", jctx.InputPipes(), jctx.OutputPipes())
	}
	if jctx.Log == nil || jctx.Context() == nil {
		t.Error("Log or Context is nil")
	}
	jctx.Printf("x=%d", 4)
	if buf.String() != "x=4\n" {
		t.Errorf("Printf wrote %q", buf.String())
	}
	// Defaults: a nil Out and Log are safe.
	job.NewContext(context.Background(), job.ContextConfig{}).Printf("dropped")
}

// --- Setup and Close -----------------------------------------------------------------------------

type lifecycle struct {
	setupErr, closeErr error
	setup, closed      bool
}

func (l *lifecycle) Setup(*job.Context) error        { l.setup = true; return l.setupErr }
func (l *lifecycle) Close() error                    { l.closed = true; return l.closeErr }
func (l *lifecycle) Run(_ *job.Context, a any) error { return nil }

func TestSetupClose(t *testing.T) {
	in := ports(t, 1, 1, "cbor")
	l := &lifecycle{}
	r := mustBind(t, l, in, nil)
	if r.Job() != any(l) {
		t.Error("Job() is not the bound job")
	}
	if err := r.Setup(newCtx(t, in, nil)); err != nil || !l.setup {
		t.Errorf("Setup: %v, called %v", err, l.setup)
	}
	if err := r.Close(); err != nil || !l.closed {
		t.Errorf("Close: %v, called %v", err, l.closed)
	}
	l = &lifecycle{setupErr: errors.New("no device"), closeErr: errors.New("flush failed")}
	r = mustBind(t, l, in, nil)
	wantErrContaining(t, r.Setup(newCtx(t, in, nil)), "job 5 (test)", "setup", "no device")
	wantErrContaining(t, r.Close(), "job 5 (test)", "close", "flush failed")

	// A job without Setup and Close.
	r = mustBind(t, oneIn{}, in, ports(t, 9, 1, "cbor"))
	if err := r.Setup(newCtx(t, in, nil)); err != nil {
		t.Error(err)
	}
	if err := r.Close(); err != nil {
		t.Error(err)
	}
}

// SPEC PY10: an output head set from a Head value (the original crashed on a Head object) is
// accepted, masked to the head size, and written on that output only.
func TestAnOutputHeadSetFromAHeadIsMaskedAndWrittenOnThatOutputOnly(t *testing.T) {
	in, out := ports(t, 1, 1, "cbor", "cbor"), ports(t, 10, 2, "cbor", "cbor")
	jctx := newCtx(t, in, out)
	jctx.BeginBlock([][]uint32{{0x04}})
	h, err := jctx.Head().With(7, true) // the last user bit, on the reduced head
	if err != nil {
		t.Fatal(err)
	}
	if err := jctx.SetOutHead(0, h); err != nil {
		t.Fatalf("SetOutHead(Head): %v", err)
	}
	if got0, got1 := jctx.OutHead(0), jctx.OutHead(1); got0 != 0x05 || got1 != 0x04 {
		t.Fatalf("OutHead = %#x, %#x; want 0x05 on output 0 only", got0, got1)
	}
}
