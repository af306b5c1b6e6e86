package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// These tests run pipelines end to end through a real embedded NATS server with JetStream, the
// broker and a worker: the machinery of `marvelo run`.

func startEnv(t *testing.T, reg *job.Registry) *Env {
	t.Helper()
	if reg == nil {
		reg = builtin.Registry()
	}
	env, err := Start(Options{Registry: reg, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(env.Close)
	return env
}

func encode(t *testing.T, p *pipeline.Pipeline) []byte {
	t.Helper()
	doc, err := pipeline.EncodeCBOR(p)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return doc
}

func runDoc(t *testing.T, env *Env, doc []byte, out *bytes.Buffer) (protocol.PipelineStatus, error) {
	t.Helper()
	p, err := pipeline.Parse(doc)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	opts := Options{}
	if out != nil {
		opts.Output = out
	}
	return env.RunPipeline(ctx, p.Name, doc, opts)
}

func TestDemoPipelineWritesTheSumsOfFiveCubes(t *testing.T) {
	doc, err := os.ReadFile("../../testdata/pipelines/demo.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	st, err := Run(context.Background(), doc, Options{Registry: builtin.Registry(), WorkDir: dir, Output: &out})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if st.State != protocol.StateFinished {
		t.Fatalf("state %s, want finished", st.State)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "demo.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := "pipe_5\n225\n2800\n11375\n29700\n61525\n110600\n"
	if string(csv) != want {
		t.Fatalf("demo.csv = %q, want %q", csv, want)
	}
	if !strings.Contains(out.String(), "csv_sink 6 | 110600") {
		t.Errorf("job output lacks the echoed rows:\n%s", out.String())
	}
	for _, j := range st.Jobs {
		if j.State != protocol.StateFinished {
			t.Errorf("job %d %s: state %s", j.ID, j.Name, j.State)
		}
	}
}

// recorder is a sink that keeps every value it receives, optionally slowly, optionally stalled
// on its first block until released.
type recorder struct {
	mu      sync.Mutex
	values  []any
	heads   []pipeline.Head
	delay   time.Duration
	release chan struct{}
	stalled chan struct{}
}

func (r *recorder) Run(ctx *job.Context, v any) error {
	if r.release != nil {
		r.mu.Lock()
		first := len(r.values) == 0
		r.mu.Unlock()
		if first {
			close(r.stalled)
			select {
			case <-r.release:
			case <-ctx.Context().Done():
				return ctx.Context().Err()
			}
		}
	}
	if r.delay > 0 {
		// Simulates a slow computation; nothing waits on it.
		select {
		case <-time.After(r.delay):
		case <-ctx.Context().Done():
			return ctx.Context().Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.values = append(r.values, v)
	r.heads = append(r.heads, ctx.Head())
	return nil
}

func (r *recorder) snapshot() []any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]any(nil), r.values...)
}

func registryWith(name string, f job.Factory) *job.Registry {
	reg := builtin.Registry()
	reg.Register(name, "test job", f)
	return reg
}

func ints(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = int64(i + 1)
	}
	return out
}

func TestSlowSinkReceivesEveryBlock(t *testing.T) {
	rec := &recorder{delay: 2 * time.Millisecond}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	p := &pipeline.Pipeline{Name: "slow", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 40}, Outputs: []int{1}},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "record", Inputs: []int{2}},
	}}
	st, err := runDoc(t, env, encode(t, p), nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := rec.snapshot(); fmt.Sprint(got) != fmt.Sprint(ints(40)) {
		t.Fatalf("sink got %v, want 1..40", got)
	}
	if st.State != protocol.StateFinished {
		t.Fatalf("state %s", st.State)
	}
}

func TestFinishPropagatesWithAndWithoutHeads(t *testing.T) {
	for _, head := range []bool{false, true} {
		t.Run(fmt.Sprintf("head=%v", head), func(t *testing.T) {
			rec := &recorder{}
			env := startEnv(t, registryWith("record", func() any { return rec }))
			p := &pipeline.Pipeline{Name: "finish", Jobs: []pipeline.Job{
				{ID: 1, Type: "counter", Args: map[string]any{"count": 5}, Outputs: []int{1}, Head: head},
				{ID: 2, Type: "counter", Args: map[string]any{"count": 5, "start": 1}, Outputs: []int{2}, Head: head},
				{ID: 3, Type: "sum", Inputs: []int{1, 2}, Outputs: []int{3}, Head: head},
				{ID: 4, Type: "record", Inputs: []int{3}, Head: head},
			}}
			st, err := runDoc(t, env, encode(t, p), nil)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got := fmt.Sprint(rec.snapshot()); got != "[2 4 6 8 10]" {
				t.Fatalf("sink got %s", got)
			}
			// E2E-1: the first block carries reset, the last the finished bit.
			if !rec.heads[0].Reset() || !rec.heads[4].Finished() || rec.heads[3].Finished() {
				t.Errorf("heads %v: want reset on the first, finished only on the last", rec.heads)
			}
			for _, j := range st.Jobs {
				if j.State != protocol.StateFinished {
					t.Errorf("job %d: %s", j.ID, j.State)
				}
			}
		})
	}
}

// ender is a source that stops without finishing (the old "return None").
type ender struct{ n int }

func (e *ender) Run(ctx *job.Context) (any, error) {
	e.n++
	if e.n > 3 {
		return nil, job.ErrEnd
	}
	return int64(e.n), nil
}

func TestSourceEndingWithoutFinishStillEndsDownstream(t *testing.T) {
	rec := &recorder{}
	reg := registryWith("record", func() any { return rec })
	reg.Register("ender", "test", func() any { return &ender{} })
	env := startEnv(t, reg)
	p := &pipeline.Pipeline{Name: "ender", Jobs: []pipeline.Job{
		{ID: 1, Type: "ender", Outputs: []int{1}},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "record", Inputs: []int{2}},
	}}
	st, err := runDoc(t, env, encode(t, p), nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := fmt.Sprint(rec.snapshot()); got != "[1 2 3]" {
		t.Fatalf("sink got %s", got)
	}
	if st.State != protocol.StateFinished {
		t.Fatalf("state %s", st.State)
	}
}

func TestMaxQueueKeepsTheNewestBlocksWhenTheConsumerStalls(t *testing.T) {
	rec := &recorder{release: make(chan struct{}), stalled: make(chan struct{})}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	const total, maxQueue = 60, 5
	p := &pipeline.Pipeline{Name: "maxq", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": total}, Outputs: []int{1}},
		{ID: 2, Type: "record", Inputs: []int{1}, MaxQueue: maxQueue},
	}}
	type result struct {
		st  protocol.PipelineStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := runDoc(t, env, encode(t, p), nil)
		done <- result{st, err}
	}()
	<-rec.stalled
	waitJobState(t, env, "maxq", 1, protocol.StateFinished)
	close(rec.release)
	res := <-done
	if res.err != nil {
		t.Fatalf("run: %v", res.err)
	}
	got := rec.snapshot()
	if len(got) >= total {
		t.Fatalf("sink got all %d blocks; max_queue %d should have dropped the oldest", len(got), maxQueue)
	}
	tail := fmt.Sprint(got[len(got)-maxQueue:])
	if want := fmt.Sprint(ints(total)[total-maxQueue:]); tail != want {
		t.Fatalf("last %d values %s, want the newest %s (all: %v)", maxQueue, tail, want, got)
	}
	var drops uint64
	for _, j := range res.st.Jobs {
		if j.ID == 2 {
			drops = j.Stats.QueueDrops
		}
	}
	if drops == 0 || int(drops)+len(got) > total {
		t.Errorf("queue drops %d with %d received of %d", drops, len(got), total)
	}
}

// waitJobState polls the broker, bounded, until a job reaches a state.
func waitJobState(t *testing.T, env *Env, name string, jobID int, state string) {
	t.Helper()
	testkit.WaitEvery(t, 20*time.Second, 20*time.Millisecond, fmt.Sprintf("job %d of %s to reach %s", jobID, name, state), func() bool {
		sts, err := env.Client.Status(context.Background(), name)
		if err == nil && len(sts) == 1 {
			for _, j := range sts[0].Jobs {
				if j.ID == jobID && j.State == state {
					return true
				}
			}
		}
		return false
	})
}

// failing fails on its third block.
type failing struct{ n int }

func (f *failing) Run(_ *job.Context, v int64) (int64, error) {
	f.n++
	if f.n == 3 {
		return 0, errors.New("boom on the third block")
	}
	return v, nil
}

// badOutputs returns three values for its two outputs.
type badOutputs struct{}

func (badOutputs) Run(_ *job.Context, v int64) (job.Outputs, error) {
	return job.Outputs{v, v, v}, nil
}

func TestFailuresNameTheJob(t *testing.T) {
	reg := builtin.Registry()
	reg.Register("failing", "test", func() any { return &failing{} })
	reg.Register("bad_outputs", "test", func() any { return &badOutputs{} })
	env := startEnv(t, reg)
	cases := []struct {
		name string
		jobs []pipeline.Job
		want string
	}{
		{"job-error", []pipeline.Job{
			{ID: 1, Type: "counter", Args: map[string]any{"count": 10}, Outputs: []int{1}},
			{ID: 2, Type: "failing", Inputs: []int{1}, Outputs: []int{2}},
			{ID: 3, Type: "discard", Inputs: []int{2}},
		}, "job 2 (failing): boom on the third block"},
		{"output-length", []pipeline.Job{
			{ID: 1, Type: "counter", Args: map[string]any{"count": 10}, Outputs: []int{1}},
			{ID: 2, Type: "bad_outputs", Inputs: []int{1}, Outputs: []int{2, 3}},
			{ID: 3, Type: "discard", Inputs: []int{2}},
			{ID: 4, Type: "discard", Inputs: []int{3}},
		}, "job 2 (bad_outputs): Run returned 3 values for 2 outputs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, err := runDoc(t, env, encode(t, &pipeline.Pipeline{Name: tc.name, Jobs: tc.jobs}), nil)
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("err %v, want ErrFailed", err)
			}
			if st.State != protocol.StateFailed || !strings.Contains(st.Error, tc.want) {
				t.Fatalf("state %s error %q, want failed with %q", st.State, st.Error, tc.want)
			}
		})
	}
}

func TestBadArgsAreRejectedAtSubmit(t *testing.T) {
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "badargs", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"cuont": 3}, Outputs: []int{1}},
		{ID: 2, Type: "csv_sink", Inputs: []int{1}},
	}}
	_, err := runDoc(t, env, encode(t, p), nil)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", err)
	}
	for _, want := range []string{`job 1 (counter)`, `unknown arg "cuont"`, `job 2 (csv_sink)`, `missing required arg "path"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestInterruptStopsThePipelineCleanly(t *testing.T) {
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "endless", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"interval": "1ms"}, Outputs: []int{1}},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "discard", Inputs: []int{2}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var st protocol.PipelineStatus
	go func() {
		var err error
		st, err = env.RunPipeline(ctx, "endless", encode(t, p), Options{})
		done <- err
	}()
	waitJobState(t, env, "endless", 3, protocol.StateRunning)
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if st.State != protocol.StateStopped {
		t.Fatalf("state %q, want stopped (error: %v)", st.State, err) // an empty state: the stop request itself failed
	}
	for _, j := range st.Jobs {
		if j.State != protocol.StateStopped && j.State != protocol.StateFinished {
			t.Errorf("job %d: %s", j.ID, j.State)
		}
	}
}

func TestStatusJSONRoundTrip(t *testing.T) {
	// The status reply is the contract of `marvelo status --json`: it must survive JSON.
	st := protocol.PipelineStatus{Name: "x", State: protocol.StateRunning, Jobs: []protocol.JobStatus{{ID: 1, Name: "counter", State: "running"}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back protocol.PipelineStatus
	if err := json.Unmarshal(b, &back); err != nil || back.Jobs[0].Name != "counter" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

// lossy forwards its input but drops every 7th block.
type lossy struct{}

func (lossy) Run(ctx *job.Context, v int64) (int64, error) {
	if v%7 == 0 {
		return 0, job.ErrSkip
	}
	return v, nil
}

func TestLostBlocksBecomeCorruptedDummiesAtTheJoin(t *testing.T) {
	rec := &recorder{}
	reg := registryWith("record", func() any { return rec })
	reg.Register("lossy", "test", func() any { return &lossy{} })
	env := startEnv(t, reg)
	p := &pipeline.Pipeline{Name: "lossy", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 50}, Outputs: []int{1}},
		{ID: 2, Type: "counter", Args: map[string]any{"count": 50}, Outputs: []int{2}},
		{ID: 3, Type: "counter", Args: map[string]any{"count": 50}, Outputs: []int{3}},
		{ID: 4, Type: "lossy", Inputs: []int{2}, Outputs: []int{4}},
		{ID: 5, Type: "collect", Inputs: []int{1, 4, 3}, Outputs: []int{5}, Head: true},
		{ID: 6, Type: "record", Inputs: []int{5}, Head: true},
	}}
	st, err := runDoc(t, env, encode(t, p), nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	got := rec.snapshot()
	if len(got) != 50 {
		t.Fatalf("%d rounds at the join, want 50: %v", len(got), got)
	}
	for i, v := range got {
		n := int64(i + 1)
		row := v.([]any)
		lost := n%7 == 0
		if rec.heads[i].Corrupted() != lost {
			t.Errorf("round %d: corrupted=%v, want %v", n, rec.heads[i].Corrupted(), lost)
		}
		want := []any{n, n, n}
		if lost {
			want = []any{n, int64(0), n} // a zero dummy on a cbor pipe: the zero shaped like the last real block
		}
		if fmt.Sprint(row) != fmt.Sprint(want) {
			t.Errorf("round %d: %v, want %v", n, row, want)
		}
	}
	for _, j := range st.Jobs {
		if j.ID == 5 && j.Stats.Dummies != 7 {
			t.Errorf("join counted %d dummies, want 7", j.Stats.Dummies)
		}
	}
}

func TestResetRestartsTheSourcesNumbering(t *testing.T) {
	rec := &recorder{}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	p := &pipeline.Pipeline{Name: "reset", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 400, "interval": "1ms"}, Outputs: []int{1}},
		{ID: 2, Type: "record", Inputs: []int{1}, Head: true},
	}}
	done := make(chan error, 1)
	go func() {
		_, err := runDoc(t, env, encode(t, p), nil)
		done <- err
	}()
	testkit.WaitEvery(t, 20*time.Second, 5*time.Millisecond, "20 values at the sink", func() bool { return len(rec.snapshot()) >= 20 })
	if err := env.Client.Reset(context.Background(), "reset", time.Time{}); err != nil {
		t.Fatalf("reset: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var resets []int
	for i, h := range rec.heads {
		if h.Reset() {
			resets = append(resets, i)
		}
	}
	if len(resets) != 2 || resets[0] != 0 {
		t.Fatalf("reset heads at %v, want the first block and one more", resets)
	}
	// The counter's values go on (its numbering restarted, not its state), and nothing is lost
	// but the one dummy round a reset costs.
	if last := rec.values[len(rec.values)-1]; last != int64(400) {
		t.Errorf("last value %v, want 400", last)
	}
}

func TestRealtimePipesDeliverOverCoreNATS(t *testing.T) {
	rec := &recorder{}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	p := &pipeline.Pipeline{Name: "realtime", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 100, "interval": "1ms"}, Outputs: []int{1}},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "record", Inputs: []int{2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, QoS: pipeline.QoSRealtime}, {ID: 2, QoS: pipeline.QoSRealtime}}}
	st, err := runDoc(t, env, encode(t, p), nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// At this rate nothing falls behind: every block arrives, in order, and the pipeline ends.
	if got := fmt.Sprint(rec.snapshot()); got != fmt.Sprint(ints(100)) {
		t.Fatalf("sink got %s", got)
	}
	if st.State != protocol.StateFinished {
		t.Fatalf("state %s", st.State)
	}
}

// pair records the values of a synchronous and an optional input.
type pair struct{ rec *recorder }

func (p pair) Run(ctx *job.Context, a, b any) error { return p.rec.Run(ctx, []any{a, b}) }

func TestOptionalInputNeverBlocksTheJob(t *testing.T) {
	rec := &recorder{}
	env := startEnv(t, registryWith("pair", func() any { return pair{rec} }))
	store := true
	p := &pipeline.Pipeline{Name: "optional", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 60, "interval": "2ms"}, Outputs: []int{1}},
		// The optional input's source is slow and ends early: the job must not wait for it.
		{ID: 2, Type: "counter", Args: map[string]any{"count": 3, "start": 100, "interval": "20ms"}, Outputs: []int{2}},
		{ID: 3, Type: "pair", Inputs: []int{1, 2}},
	}, Pipes: []pipeline.Pipe{{ID: 2, Optional: &pipeline.Optional{Default: "none", Store: &store}}}}
	if _, err := runDoc(t, env, encode(t, p), nil); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := rec.snapshot()
	if len(got) != 60 {
		t.Fatalf("%d rounds, want one per block of the synchronous input (60)", len(got))
	}
	// The optional side shows the default until its first block, then the latest block it holds
	// (stored), never going back.
	last := int64(0)
	sawDefault := false
	for i, v := range got {
		row := v.([]any)
		if row[0] != int64(i+1) {
			t.Fatalf("round %d: synchronous value %v", i+1, row[0])
		}
		switch o := row[1].(type) {
		case string:
			if o != "none" || last != 0 {
				t.Fatalf("round %d: optional %q after %d", i+1, o, last)
			}
			sawDefault = true
		case int64:
			if o < last || o < 100 || o > 102 {
				t.Fatalf("round %d: optional %d after %d", i+1, o, last)
			}
			last = o
		default:
			t.Fatalf("round %d: optional %T %v", i+1, o, o)
		}
	}
	if !sawDefault && last == 0 {
		t.Fatal("the optional input never showed anything")
	}
}

// TestAJobWhoseInputsAreAllOptionalRunsOncePerValue: a sink whose only input is optional, fed 5
// blocks 30 ms apart, runs exactly 5 rounds — one per value that arrives, each value once and in
// order — and ends with its producer: it does not spin rounds of stored values while it waits.
func TestAJobWhoseInputsAreAllOptionalRunsOncePerValue(t *testing.T) {
	rec := &recorder{}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	p := &pipeline.Pipeline{Name: "allopt", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 5, "interval": "30ms"}, Outputs: []int{1}},
		{ID: 2, Type: "record", Inputs: []int{1}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Optional: &pipeline.Optional{Default: 0}}}}
	if _, err := runDoc(t, env, encode(t, p), nil); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := fmt.Sprint(rec.snapshot()); got != "[1 2 3 4 5]" {
		t.Fatalf("rounds %s, want one per value that arrived: [1 2 3 4 5]", got)
	}
}
