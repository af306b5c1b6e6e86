package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Restart policies (issue 23, item 9): the round a job fails at goes into its report, and an
// instance whose assignment names a poison round (SkipSQN) is never handed it: its outputs
// answer it with nothing, in its place, and downstream makes a dummy there.

// seenRounds forwards its input and records the values it was handed; it fails on failAt.
type seenRounds struct {
	seen   []string
	failAt string
}

func (j *seenRounds) Run(_ *job.Context, v any) (any, error) {
	s := fmt.Sprint(v)
	if s == j.failAt {
		return nil, errors.New("poison value " + s)
	}
	j.seen = append(j.seen, s)
	return v, nil
}

func TestAnInstanceSkipsItsPoisonRoundAndItsOutputGetsNothingThere(t *testing.T) {
	for _, kind := range []string{"go", "exec", "exec_sqn"} {
		for _, skip := range []uint64{5, 8} { // in the middle; the last round, which the end marker names
			t.Run(fmt.Sprintf("%s_skip_%d", kind, skip), func(t *testing.T) {
				_, js := startJetStream(t)
				in, out := jsonPipe(t, js, 1, 0), jsonPipe(t, js, 2, 0)
				fill(t, js, in, span(1, 8, nil), 8)
				spec := pipeline.Job{ID: 2, Type: "seen", Inputs: []int{1}, Outputs: []int{2}}
				var seen string
				if kind == "go" {
					j := &seenRounds{}
					tk := goTask(t, js, j, spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out}, t.TempDir())
					tk.skipSQN = skip
					if err := runTask(t, js, tk); err != nil {
						t.Fatalf("run: %v", err)
					}
					seen = strings.Join(j.seen, " ")
				} else if kind == "exec_sqn" {
					// "exec": {"sqn": true}: the poison round is given and never answered, skipped by
					// the next answer (or, the last, by the program's exit).
					spec.Type, spec.Exec = "", &pipeline.Exec{Path: "./decimate.py", SQN: true, Params: []string{"--every", "1"}}
					tk, run := execTask(t, js, "decimate.py", spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
					tk.skipSQN = skip
					if err := run(); err != nil {
						t.Fatalf("run: %v", err)
					}
				} else {
					rec := filepath.Join(t.TempDir(), "rounds.jsonl")
					spec.Type, spec.Exec = "", &pipeline.Exec{Path: "./proto.py", Params: []string{"--record", rec}}
					tk, run := execTask(t, js, "proto.py", spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out})
					tk.skipSQN = skip
					if err := run(); err != nil {
						t.Fatalf("run: %v", err)
					}
					seen = recordedRounds(t, rec)
				}
				var want []string
				for n := uint64(1); n <= 8; n++ {
					if n != skip {
						want = append(want, fmt.Sprint(n))
					}
				}
				if kind != "exec_sqn" && seen != strings.Join(want, " ") {
					t.Errorf("the job was handed %s, want %s (never the poison round)", seen, strings.Join(want, " "))
				}
				got, end, _ := readAll(t, js, out)
				var sqns []string
				for _, b := range got {
					sqns = append(sqns, fmt.Sprint(b.SQN))
				}
				if strings.Join(sqns, " ") != strings.Join(want, " ") || end != 8 {
					t.Errorf("output: SQNs %v ending at %d, want %v ending at 8", sqns, end, want)
				}
			})
		}
	}
}

func TestAGoJobsFailureNamesTheRoundItFailedAt(t *testing.T) {
	_, js := startJetStream(t)
	in, out := jsonPipe(t, js, 1, 0), jsonPipe(t, js, 2, 0)
	fill(t, js, in, []codec.Block{{SQN: 1}, {SQN: 2}, {SQN: 3}, {SQN: 4}, {SQN: 5}}, 5)
	spec := pipeline.Job{ID: 2, Type: "seen", Inputs: []int{1}, Outputs: []int{2}}
	tk := goTask(t, js, &seenRounds{failAt: "4"}, spec, []protocol.PipeBinding{in}, []protocol.PipeBinding{out}, t.TempDir())
	if err := runTask(t, js, tk); err == nil || !strings.Contains(err.Error(), "poison value 4") {
		t.Fatalf("run: %v, want the job's failure", err)
	}
	if tk.failedSQN != 4 {
		t.Errorf("failed SQN %d, want 4", tk.failedSQN)
	}
}

// recordedRounds reads the rounds proto.py --record wrote: each round's values.
func recordedRounds(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rounds []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct{ Vals []int64 }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("round %q: %v", line, err)
		}
		rounds = append(rounds, strings.Trim(fmt.Sprint(r.Vals), "[]"))
	}
	return strings.Join(rounds, " ")
}
