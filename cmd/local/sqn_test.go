package local

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// "exec": {"sqn": true} end to end through marvelo run: testdata/exec/decimate.py answers only
// every 3rd round, naming it by SQN; the join downstream sees exact dummies for the others.

func decimate(params ...string) *pipeline.Exec {
	return &pipeline.Exec{Path: "./decimate.py", Params: params, Dependencies: "deps", SQN: true}
}

func decimatePipeline(mode string, params ...string) *pipeline.Pipeline {
	return decimateN(22, mode, params...)
}

func decimateN(count int, mode string, params ...string) *pipeline.Pipeline {
	return &pipeline.Pipeline{Name: "sqn", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": count}, Outputs: []int{1}},
		{ID: 2, Type: "counter", Args: map[string]any{"count": count}, Outputs: []int{2}},
		{ID: 3, Exec: decimate(params...), Inputs: []int{1}, Outputs: []int{3}},
		{ID: 4, Type: "sum", Inputs: []int{3, 2}, Outputs: []int{4}, Head: true, Dummy: mode},
		{ID: 5, Type: "record", Inputs: []int{4}, Head: true},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 3, Codec: "json"}}}
}

// TestExecSQNFilterGivesDummiesAtTheSkippedRounds: counter(22) → a filter answering every 3rd
// round → sum joined with counter(22) → sink: 22 rows; rounds 3, 6, …, 21 are 2n, the others
// dummies (corrupted) worth n (zero) or the last real block + n (prev); 15 dummies at the join.
func TestExecSQNFilterGivesDummiesAtTheSkippedRounds(t *testing.T) {
	for _, mode := range []string{pipeline.DummyZero, pipeline.DummyPrev} {
		t.Run(mode, func(t *testing.T) {
			base := copyExample(t, "decimate.py")
			rec := &recorder{}
			env := startEnv(t, registryWith("record", func() any { return rec }))
			st, err := runInDir(t, env, decimatePipeline(mode, "--every", "3"), base)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			got := rec.snapshot()
			if len(got) != 22 {
				t.Fatalf("%d rows, want 22: %v", len(got), got)
			}
			lastReal := int64(0)
			for i, v := range got {
				n := int64(i + 1)
				skipped := n%3 != 0
				want := 2 * n
				if skipped && mode == pipeline.DummyZero {
					want = n
				} else if skipped {
					want = lastReal + n
				} else {
					lastReal = n
				}
				if v != want || rec.heads[i].Corrupted() != skipped {
					t.Errorf("round %d: %v corrupted=%v, want %d corrupted=%v", n, v, rec.heads[i].Corrupted(), want, skipped)
				}
			}
			if d := jobStats(st, 4).Dummies; d != 15 {
				t.Errorf("the join made %d dummies, want 15", d)
			}
		})
	}
}

// TestExecSQNNeverGivenFails: an answer with an SQN the program was never given fails the job,
// naming the job, the output pipe, the SQN and the last given.
func TestExecSQNNeverGivenFails(t *testing.T) {
	base := copyExample(t, "decimate.py")
	env := startEnv(t, registryWith("record", func() any { return &recorder{} }))
	_, err := runInDir(t, env, decimatePipeline(pipeline.DummyZero, "--bad-sqn"), base)
	if err == nil {
		t.Fatal("run succeeded, want the job to fail")
	}
	for _, want := range []string{"job 3", "output pipe 3", "answered SQN 1003, which it was never given", "last SQN given"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestExecSQNOutOfOrderFails: an answer whose SQN is below the one answered before fails the
// job, naming job, pipe and both SQNs.
func TestExecSQNOutOfOrderFails(t *testing.T) {
	base := copyExample(t, "decimate.py")
	env := startEnv(t, registryWith("record", func() any { return &recorder{} }))
	_, err := runInDir(t, env, decimatePipeline(pipeline.DummyZero, "--reverse"), base)
	if err == nil {
		t.Fatal("run succeeded, want the job to fail")
	}
	for _, want := range []string{"job 3", "output pipe 3", "answered SQN 2 after SQN 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestExecSQNSparseAnswersEndWithTheFinishedBit: a filter that answers only every 100th of 300
// rounds (silent longer than its input consumer's MaxAckPending of 64): the run ends with 300
// rows, real (2n) only at 100, 200, 300, the others dummies, the last with the finished bit.
func TestExecSQNSparseAnswersEndWithTheFinishedBit(t *testing.T) {
	base := copyExample(t, "decimate.py")
	rec := &recorder{}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	if _, err := runInDir(t, env, decimateN(300, pipeline.DummyZero, "--every", "100"), base); err != nil {
		t.Fatalf("run: %v", err)
	}
	got := rec.snapshot()
	if len(got) != 300 {
		t.Fatalf("%d rows, want 300", len(got))
	}
	for i, v := range got {
		n := int64(i + 1)
		real := n%100 == 0
		want := n
		if real {
			want = 2 * n
		}
		if v != want || rec.heads[i].Corrupted() == real {
			t.Errorf("round %d: %v corrupted=%v, want %d corrupted=%v", n, v, rec.heads[i].Corrupted(), want, !real)
		}
	}
	if !rec.heads[299].Finished() {
		t.Errorf("the last row's head %v lacks the finished bit", rec.heads[299])
	}
}
