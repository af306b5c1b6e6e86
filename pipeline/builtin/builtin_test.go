package builtin_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
)

const finished1 = 0x20 // the finished bit of a 1-byte head

// --- helpers -------------------------------------------------------------------------------------

func ports(t *testing.T, first, count int, codecs ...string) []job.Port {
	t.Helper()
	ps := make([]job.Port, len(codecs))
	for k, name := range codecs {
		c, err := codec.New(name, 4)
		if err != nil {
			t.Fatal(err)
		}
		ps[k] = job.Port{Pipe: first + k, Codec: c, BlockCount: count}
	}
	return ps
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func newJob(t *testing.T, name string, args map[string]any) any {
	t.Helper()
	j, err := builtin.Registry().New(name, args)
	if err != nil {
		t.Fatalf("New(%s, %v): %v", name, args, err)
	}
	return j
}

type env struct {
	ctx  context.Context
	cfg  job.ContextConfig
	jctx *job.Context
	r    *job.Runner
	in   []job.Port
	out  []job.Port
}

// bind makes a job of the builtin type, binds it and makes its context; cfg may fill in WorkDir,
// Log and Out.
func bind(t *testing.T, ctx context.Context, name string, args map[string]any, in, out []job.Port, cfg job.ContextConfig) *env {
	t.Helper()
	j := newJob(t, name, args)
	r, err := job.Bind(j, "job 1 ("+name+")", in, out)
	if err != nil {
		t.Fatalf("Bind %s: %v", name, err)
	}
	cfg.HeadSize, cfg.Inputs, cfg.Outputs, cfg.JobID, cfg.Name = 1, len(in), len(out), 1, name
	cfg.InputPipes, cfg.OutputPipes = nil, nil
	for _, p := range in {
		cfg.InputPipes = append(cfg.InputPipes, p.Pipe)
	}
	for _, p := range out {
		cfg.OutputPipes = append(cfg.OutputPipes, p.Pipe)
	}
	e := &env{ctx: ctx, cfg: cfg, jctx: job.NewContext(ctx, cfg), r: r, in: in, out: out}
	if err := r.Setup(e.jctx); err != nil {
		t.Fatalf("Setup %s: %v", name, err)
	}
	return e
}

func encode(t *testing.T, p job.Port, v any) []byte {
	t.Helper()
	b, err := p.Codec.Append(nil, v)
	if err != nil {
		t.Fatalf("encode %v: %v", v, err)
	}
	return b
}

// step runs one compute block; vals[k] is input k's value, a []any of block_count values where
// block_count > 1. It returns the decoded outputs.
func (e *env) step(t *testing.T, vals ...any) ([]any, error) {
	t.Helper()
	payloads := make([][][]byte, len(e.in))
	heads := make([][]uint32, len(e.in))
	for k, p := range e.in {
		if p.BlockCount > 1 {
			for _, v := range vals[k].([]any) {
				payloads[k] = append(payloads[k], encode(t, p, v))
				heads[k] = append(heads[k], 0)
			}
			continue
		}
		payloads[k] = [][]byte{encode(t, p, vals[k])}
		heads[k] = []uint32{0}
	}
	e.jctx.BeginBlock(heads)
	out, err := e.r.Step(e.jctx, payloads, nil)
	if err != nil {
		return nil, err
	}
	got := make([]any, len(e.out))
	for k, p := range e.out {
		v, err := p.Codec.DecodeAny(out[k])
		if err != nil {
			t.Fatalf("decode output %d: %v", k, err)
		}
		got[k] = v
	}
	return got, nil
}

func (e *env) mustStep(t *testing.T, vals ...any) []any {
	t.Helper()
	got, err := e.step(t, vals...)
	if err != nil {
		t.Fatalf("Step: %v", err)
	}
	return got
}

// source drives a source: it collects output 0's values and heads; after limit values (0: no
// limit) it cancels the context. It fails the test if Generate does not return within a minute.
func (e *env) source(t *testing.T, cancel context.CancelFunc, limit int) (vals []any, heads []uint32, err error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		done <- e.r.Generate(e.jctx, func(payloads [][]byte) error {
			v, err := e.out[0].Codec.DecodeAny(payloads[0])
			if err != nil {
				return err
			}
			for k := 1; k < len(payloads); k++ {
				if !bytes.Equal(payloads[k], payloads[0]) {
					return errors.New("outputs differ")
				}
			}
			vals = append(vals, v)
			heads = append(heads, e.jctx.OutHead(0))
			if limit > 0 && len(vals) == limit {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("Generate did not return")
	}
	return vals, heads, err
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

func TestRegistry(t *testing.T) {
	want := []string{"clock", "collect", "counter", "csv_sink", "discard", "forward", "interactive", "logging_sink", "product", "sum"}
	if got := builtin.Registry().Names(); !reflect.DeepEqual(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	for _, ty := range builtin.Registry().Types() {
		if ty.Description == "" {
			t.Errorf("%s has no description", ty.Name)
		}
	}
	// A worker of one's own registers on top of the builtins.
	r := builtin.Registry()
	r.Register("mine", "", func() any { return &struct{}{} })
	if !r.Has("mine") || !r.Has("counter") {
		t.Error("Register on top of the builtins failed")
	}
}

// --- counter -------------------------------------------------------------------------------------

func TestCounter(t *testing.T) {
	tests := []struct {
		name      string
		args      map[string]any
		limit     int // values to take before cancelling (0: run to the end)
		want      []any
		wantHeads []uint32 // nil: not checked
		wantErr   error
	}{
		{
			name:  "defaults start 1 step 1",
			args:  nil,
			limit: 4,
			want:  []any{int64(1), int64(2), int64(3), int64(4)},
			// endless: no value is finished
			wantHeads: []uint32{0, 0, 0, 0},
			wantErr:   context.Canceled,
		},
		{
			name:      "count 5",
			args:      map[string]any{"count": 5},
			want:      []any{int64(1), int64(2), int64(3), int64(4), int64(5)},
			wantHeads: []uint32{0, 0, 0, 0, finished1},
		},
		{
			name:      "start 10 step -2 count 3",
			args:      map[string]any{"start": 10, "step": -2, "count": 3},
			want:      []any{int64(10), int64(8), int64(6)},
			wantHeads: []uint32{0, 0, finished1},
		},
		{
			name: "non-integral step gives floats",
			args: map[string]any{"start": 1, "step": 0.5, "count": 4},
			want: []any{1.0, 1.5, 2.0, 2.5},
		},
		{
			name: "non-integral start gives floats",
			args: map[string]any{"start": -0.25, "count": 2},
			want: []any{-0.25, 0.75},
		},
		{
			name:  "count 0 is endless",
			args:  map[string]any{"count": 0, "start": 0},
			limit: 100,
			want: func() []any {
				var v []any
				for i := range 100 {
					v = append(v, int64(i))
				}
				return v
			}(),
			wantErr: context.Canceled,
		},
		{
			name: "count 1",
			args: map[string]any{"count": 1, "start": 42},
			want: []any{int64(42)}, wantHeads: []uint32{finished1},
		},
		{
			name: "interval keeps the order",
			args: map[string]any{"count": 3, "interval": "1ms"},
			want: []any{int64(1), int64(2), int64(3)}, wantHeads: []uint32{0, 0, finished1},
		},
		{
			name: "interval as seconds",
			args: map[string]any{"count": 2, "interval": 0.001},
			want: []any{int64(1), int64(2)},
		},
		{
			name:  "interval stops on cancel",
			args:  map[string]any{"interval": "1h"},
			limit: 1, // the first value comes at once; the second would take an hour
			want:  []any{int64(1)}, wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, outs := range [][]string{{"cbor"}, {"json", "json", "json"}} {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				e := bind(t, ctx, "counter", tt.args, nil, ports(t, 1, 1, outs...), job.ContextConfig{})
				vals, heads, err := e.source(t, cancel, tt.limit)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Errorf("Generate = %v, want %v", err, tt.wantErr)
					}
				} else if err != nil {
					t.Errorf("Generate = %v, want nil (finished)", err)
				}
				if outs[0] == "json" {
					// JSON writes 2.0 as 2: compare numbers only.
					if len(vals) != len(tt.want) {
						t.Errorf("json: got %v, want %v", vals, tt.want)
					}
					continue
				}
				if !reflect.DeepEqual(vals, tt.want) {
					t.Errorf("got %#v, want %#v", vals, tt.want)
				}
				if tt.wantHeads != nil && !reflect.DeepEqual(heads, tt.wantHeads) {
					t.Errorf("heads %#v, want %#v", heads, tt.wantHeads)
				}
			}
		})
	}
}

func TestCounterArgs(t *testing.T) {
	tests := []struct {
		args    map[string]any
		wantErr string
	}{
		{map[string]any{"count": -1}, "negative"},
		{map[string]any{"count": 1.5}, `arg "count"`},
		{map[string]any{"start": "one"}, `arg "start"`},
		{map[string]any{"interval": "-1s"}, `arg "interval"`},
		{map[string]any{"interval": "fast"}, `arg "interval"`},
		{map[string]any{"delay": 1}, `unknown arg "delay" (known: start, step, count, interval)`},
	}
	for _, tt := range tests {
		_, err := builtin.Registry().New("counter", tt.args)
		wantErrContaining(t, err, "counter", tt.wantErr)
	}
}

func TestCounterRejectsInputs(t *testing.T) {
	j := newJob(t, "counter", nil)
	_, err := job.Bind(j, "job 1 (counter)", ports(t, 1, 1, "cbor"), ports(t, 2, 1, "cbor"))
	wantErrContaining(t, err, "job 1 (counter)", "inputs")
}

// --- clock ---------------------------------------------------------------------------------------

func TestClock(t *testing.T) {
	t.Run("count honoured", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e := bind(t, ctx, "clock", map[string]any{"interval": "1ms", "count": 3}, nil, ports(t, 1, 1, "cbor", "cbor"), job.ContextConfig{})
		vals, heads, err := e.source(t, cancel, 0)
		if err != nil {
			t.Fatalf("Generate = %v", err)
		}
		if want := []any{int64(1), int64(1), int64(1)}; !reflect.DeepEqual(vals, want) {
			t.Errorf("got %#v, want %#v", vals, want)
		}
		if want := []uint32{0, 0, finished1}; !reflect.DeepEqual(heads, want) {
			t.Errorf("heads %#v, want %#v", heads, want)
		}
	})
	t.Run("endless until cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e := bind(t, ctx, "clock", map[string]any{"interval": "1ms"}, nil, ports(t, 1, 1, "json"), job.ContextConfig{})
		vals, _, err := e.source(t, cancel, 5)
		if !errors.Is(err, context.Canceled) || len(vals) != 5 {
			t.Errorf("Generate = %v after %d values", err, len(vals))
		}
	})
	t.Run("default interval and cancel while waiting", func(t *testing.T) {
		j := newJob(t, "clock", nil).(*builtin.Clock)
		if time.Duration(j.Interval) != 40*time.Millisecond {
			t.Errorf("default interval %v, want 40ms", time.Duration(j.Interval))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		e := bind(t, ctx, "clock", map[string]any{"interval": "1h"}, nil, ports(t, 1, 1, "cbor"), job.ContextConfig{})
		vals, _, err := e.source(t, cancel, 1)
		if !errors.Is(err, context.Canceled) || len(vals) != 1 {
			t.Errorf("Generate = %v after %d values", err, len(vals))
		}
	})
	for _, args := range []map[string]any{{"interval": 0}, {"interval": "0s"}, {"count": -1}} {
		_, err := builtin.Registry().New("clock", args)
		if err == nil {
			t.Errorf("clock %v: no error", args)
		}
	}
}

// --- forward -------------------------------------------------------------------------------------

func TestForward(t *testing.T) {
	tests := []struct {
		name    string
		in, out []string
		vals    []any
		want    []any
	}{
		{"3 in 3 out cbor (raw)", repeat("cbor", 3), repeat("cbor", 3), []any{int64(1), "two", []any{int64(3)}}, []any{int64(1), "two", []any{int64(3)}}},
		{"2 in 2 out cbor to json", repeat("cbor", 2), repeat("json", 2), []any{int64(1), "two"}, []any{int64(1), "two"}},
		{"1 in 3 out (raw)", []string{"cbor"}, repeat("cbor", 3), []any{int64(9)}, []any{int64(9), int64(9), int64(9)}},
		{"1 in 3 mixed out", []string{"json"}, []string{"cbor", "json", "cbor"}, []any{"x"}, []any{"x", "x", "x"}},
		{"1 in 1 out", []string{"bytes"}, []string{"bytes"}, []any{[]byte("abcd")}, []any{[]byte("abcd")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := bind(t, context.Background(), "forward", nil, ports(t, 1, 1, tt.in...), ports(t, 10, 1, tt.out...), job.ContextConfig{})
			for round := 0; round < 2; round++ {
				if got := e.mustStep(t, tt.vals...); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("round %d: got %#v, want %#v", round, got, tt.want)
				}
			}
		})
	}
	for _, shape := range [][2]int{{2, 3}, {3, 1}, {0, 1}} {
		j := newJob(t, "forward", nil)
		_, err := job.Bind(j, "job 1 (forward)", ports(t, 1, 1, repeat("cbor", shape[0])...), ports(t, 10, 1, repeat("cbor", shape[1])...))
		if err == nil {
			t.Errorf("forward with %d in %d out: Bind succeeded", shape[0], shape[1])
			continue
		}
		if !strings.Contains(err.Error(), "job 1 (forward)") {
			t.Errorf("error %q does not name the job", err)
		}
	}
}

// --- sum, product, collect -----------------------------------------------------------------------

func TestSumProduct(t *testing.T) {
	tests := []struct {
		job     string
		vals    []any // one input each
		want    any
		wantErr []string
	}{
		{"sum", []any{int64(1), int64(2), int64(3)}, int64(6), nil},
		{"sum", []any{int64(-5)}, int64(-5), nil},
		{"sum", []any{int64(1), 2.5}, 3.5, nil},
		{"sum", []any{0.5, int64(1)}, 1.5, nil},
		{"sum", []any{[]any{int64(1), int64(2)}, int64(3)}, int64(6), nil},
		{"sum", []any{[]any{int64(1), []any{2.5}}}, 3.5, nil},
		{"sum", []any{[]any{}}, int64(0), nil},
		{"sum", []any{int64(math.MaxInt64), int64(1)}, float64(math.MaxInt64) + 1, nil},
		{"sum", []any{int64(math.MinInt64), int64(-1)}, float64(math.MinInt64) - 1, nil},
		{"sum", []any{int64(math.MaxInt64), int64(-1)}, int64(math.MaxInt64 - 1), nil},
		{"sum", []any{uint64(math.MaxUint64), int64(0)}, float64(math.MaxUint64), nil},
		{"sum", []any{int64(1), "x"}, nil, []string{"input 2", "string is not a number"}},
		{"sum", []any{int64(1), []any{int64(2), "x"}}, nil, []string{"input 2", "not a number"}},
		{"sum", []any{map[string]any{"a": int64(1)}}, nil, []string{"input 1", "not a number"}},
		{"product", []any{int64(2), int64(3), int64(4)}, int64(24), nil},
		{"product", []any{int64(2), 0.5}, 1.0, nil},
		{"product", []any{[]any{int64(2), int64(3)}, int64(-1)}, int64(-6), nil},
		{"product", []any{[]any{}}, int64(1), nil},
		{"product", []any{int64(0), int64(math.MaxInt64)}, int64(0), nil},
		{"product", []any{int64(math.MaxInt64), int64(2)}, float64(math.MaxInt64) * 2, nil},
		{"product", []any{int64(math.MinInt64), int64(-1)}, -float64(math.MinInt64), nil},
		{"product", []any{int64(-1), int64(math.MinInt64)}, -float64(math.MinInt64), nil},
		{"product", []any{int64(1 << 32), int64(1 << 32)}, float64(1<<32) * float64(1<<32), nil},
		{"product", []any{int64(1 << 31), int64(1 << 31)}, int64(1 << 62), nil},
		// A null (a zero dummy before any real block of its input) is the identity.
		{"product", []any{int64(3), nil}, int64(3), nil},
		{"sum", []any{int64(3), nil}, int64(3), nil},
		{"sum", []any{[]any{nil, int64(2)}, nil}, int64(2), nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.job, tt.vals), func(t *testing.T) {
			e := bind(t, context.Background(), tt.job, nil, ports(t, 1, 1, repeat("cbor", len(tt.vals))...), ports(t, 10, 1, "cbor"), job.ContextConfig{})
			got, err := e.step(t, tt.vals...)
			if tt.wantErr != nil {
				wantErrContaining(t, err, append([]string{"job 1 (" + tt.job + ")"}, tt.wantErr...)...)
				return
			}
			if err != nil {
				t.Fatalf("Step: %v", err)
			}
			if !reflect.DeepEqual(got[0], tt.want) {
				t.Errorf("got %#v (%T), want %#v (%T)", got[0], got[0], tt.want, tt.want)
			}
		})
	}
}

// TestDemo is the demo pipeline: three counters → product → sum over block_count 5.
func TestDemo(t *testing.T) {
	ctx := context.Background()
	counters := make([][]any, 3)
	for k := range counters {
		cctx, cancel := context.WithCancel(ctx)
		e := bind(t, cctx, "counter", map[string]any{"count": 30}, nil, ports(t, 1, 1, "cbor"), job.ContextConfig{})
		vals, _, err := e.source(t, cancel, 0)
		cancel()
		if err != nil || len(vals) != 30 {
			t.Fatalf("counter: %v after %d values", err, len(vals))
		}
		counters[k] = vals
	}
	prod := bind(t, ctx, "product", nil, ports(t, 1, 1, "cbor", "cbor", "cbor"), ports(t, 4, 1, "cbor"), job.ContextConfig{})
	sum := bind(t, ctx, "sum", nil, ports(t, 4, 5, "cbor"), ports(t, 5, 1, "json"), job.ContextConfig{})
	var got []any
	var window []any
	for i := range 30 {
		p := prod.mustStep(t, counters[0][i], counters[1][i], counters[2][i])
		window = append(window, p[0])
		if len(window) == 5 {
			got = append(got, sum.mustStep(t, window)[0])
			window = nil
		}
	}
	want := []any{int64(225), int64(2800), int64(11375), int64(29700), int64(61525), int64(110600)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestCollect(t *testing.T) {
	e := bind(t, context.Background(), "collect", nil, ports(t, 1, 1, "cbor", "json", "cbor"), ports(t, 10, 1, "cbor", "json"), job.ContextConfig{})
	got := e.mustStep(t, int64(1), "a", []any{int64(2), 2.5})
	want := []any{int64(1), "a", []any{int64(2), 2.5}}
	for k := range got {
		if !reflect.DeepEqual(got[k], want) {
			t.Errorf("output %d = %#v, want %#v", k, got[k], want)
		}
	}
	// With block_count 2 an input contributes its list.
	e = bind(t, context.Background(), "collect", nil, append(ports(t, 1, 2, "cbor"), ports(t, 2, 1, "cbor")...), ports(t, 10, 1, "cbor"), job.ContextConfig{})
	got = e.mustStep(t, []any{int64(1), int64(2)}, "z")
	if want := []any{[]any{int64(1), int64(2)}, "z"}; !reflect.DeepEqual(got[0], want) {
		t.Errorf("got %#v, want %#v", got[0], want)
	}
}

// --- csv_sink ------------------------------------------------------------------------------------

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return rows
}

func TestCSVSink(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	in := append(ports(t, 3, 1, "cbor", "json"), ports(t, 8, 3, "cbor")...)
	e := bind(t, context.Background(), "csv_sink", map[string]any{"path": "results/run1/out.csv", "echo": true}, in, nil,
		job.ContextConfig{WorkDir: dir, Out: &out})
	path := filepath.Join(dir, "results", "run1", "out.csv")

	rows := [][]any{
		{int64(1), "hello", []any{int64(1), int64(2), int64(3)}},
		{2.5, "a,b", []any{"x", "y", "z"}},
		{int64(-7), `say "hi"`, []any{map[string]any{"k": int64(1)}, nil, true}},
		{1e-7, "", []any{0.1, int64(9007199254740993), "é<&>"}},
	}
	want := [][]string{
		{"pipe_3", "pipe_4", "pipe_8"},
		{"1", "hello", "[1,2,3]"},
		{"2.5", "a,b", `["x","y","z"]`},
		{"-7", `say "hi"`, `[{"k":1},null,true]`},
		{"1e-07", "", `[0.1,9007199254740993,"é<&>"]`},
	}
	if got := readCSV(t, path); !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("after Setup the file holds %q, want the header %q", got, want[:1])
	}
	for i, r := range rows {
		if got := e.mustStep(t, r...); len(got) != 0 {
			t.Errorf("a sink produced %v", got)
		}
		// Every row is flushed: the file is complete before Close.
		if got := readCSV(t, path); !reflect.DeepEqual(got, want[:i+2]) {
			t.Errorf("after row %d the file holds %q, want %q", i+1, got, want[:i+2])
		}
	}
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readCSV(t, path); !reflect.DeepEqual(got, want) {
		t.Errorf("after Close the file holds %q, want %q", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(rows) || lines[0] != "1,hello,[1,2,3]" {
		t.Errorf("echo printed %q", out.String())
	}
}

func TestCSVSinkMaps(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "abs.csv")
	e := bind(t, context.Background(), "csv_sink", map[string]any{"path": abs}, ports(t, 1, 1, "cbor"), nil,
		job.ContextConfig{WorkDir: filepath.Join(dir, "elsewhere")})
	e.mustStep(t, map[string]any{"b": int64(2), "a": []any{int64(1)}})
	e.mustStep(t, map[any]any{int64(1): "one"})
	if err := e.r.Close(); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"pipe_1"}, {`{"a":[1],"b":2}`}, {`{"1":"one"}`}}
	if got := readCSV(t, abs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestCSVSinkArgs(t *testing.T) {
	for _, args := range []map[string]any{nil, {"echo": true}} {
		_, err := builtin.Registry().New("csv_sink", args)
		wantErrContaining(t, err, "csv_sink", `missing required arg "path"`)
	}
	_, err := builtin.Registry().New("csv_sink", map[string]any{"path": "  "})
	wantErrContaining(t, err, "csv_sink", "path")
	_, err = builtin.Registry().New("csv_sink", map[string]any{"path": 3})
	wantErrContaining(t, err, `arg "path"`)

	// A path that cannot be created fails Setup.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := newJob(t, "csv_sink", map[string]any{"path": "file/out.csv"})
	r, err := job.Bind(j, "job 1 (csv_sink)", ports(t, 1, 1, "cbor"), nil)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Setup(job.NewContext(context.Background(), job.ContextConfig{WorkDir: dir, Inputs: 1, InputPipes: []int{1}}))
	wantErrContaining(t, err, "job 1 (csv_sink)", "setup")
	if err := r.Close(); err != nil {
		t.Errorf("Close after a failed Setup: %v", err)
	}
}

// --- discard -------------------------------------------------------------------------------------

func TestDiscard(t *testing.T) {
	tests := []struct {
		name string
		in   []job.Port
		vals []any
	}{
		{"one cbor input", ports(t, 1, 1, "cbor"), []any{int64(1)}},
		{"block_count 3", ports(t, 1, 3, "cbor"), []any{[]any{int64(1), int64(2), int64(3)}}},
		{"mixed codecs", append(ports(t, 1, 1, "json"), ports(t, 2, 2, "bytes")...), []any{"x", []any{[]byte("abcd"), []byte("efgh")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			e := bind(t, context.Background(), "discard", nil, tt.in, nil, job.ContextConfig{Log: log})
			for range 7 {
				e.mustStep(t, tt.vals...)
			}
			if n := e.r.Job().(*builtin.Discard).Count(); n != 7 {
				t.Errorf("Count = %d, want 7", n)
			}
			if buf.Len() != 0 {
				t.Errorf("logged before Close: %q", buf.String())
			}
			if err := e.r.Close(); err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"discard summary", "blocks=7", "duration=", "rate_per_s="} {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log %q does not contain %q", buf.String(), w)
				}
			}
		})
	}
	t.Run("no blocks", func(t *testing.T) {
		var buf bytes.Buffer
		e := bind(t, context.Background(), "discard", nil, ports(t, 1, 1, "cbor"), nil, job.ContextConfig{Log: slog.New(slog.NewTextHandler(&buf, nil))})
		if err := e.r.Close(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "blocks=0") {
			t.Errorf("log %q", buf.String())
		}
	})
}
