package pipeline_test

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

func counterSpec() pipeline.TypeSpec {
	zero := 0.0
	return pipeline.TypeSpec{Name: "counter", Args: []pipeline.ArgSpec{
		{Name: "start", Kind: pipeline.KindNumber},
		{Name: "step", Kind: pipeline.KindNumber},
		{Name: "count", Kind: pipeline.KindInteger, Min: &zero},
		{Name: "interval", Kind: pipeline.KindDuration},
		{Name: "mode", Kind: pipeline.KindString, Enum: []string{"up", "down"}},
		{Name: "tags", Kind: pipeline.KindArray, Elem: pipeline.KindString},
		{Name: "path", Kind: pipeline.KindString, Required: true},
	}}
}

func TestCheckArgsReportsEveryProblemWithItsPath(t *testing.T) {
	got := pipeline.CheckArgs(counterSpec(), map[string]any{
		"count": "ten", "stpe": int64(2), "interval": "-1ms", "mode": "sideways", "tags": []any{"a", int64(3)},
	})
	want := map[string]string{
		"count":    `arg "count": expected an integer, got string "ten"`,
		"interval": `arg "interval": "-1ms" is out of range`,
		"mode":     `arg "mode": "sideways" is not one of up, down`,
		"path":     `missing required arg "path"`,
		"stpe":     `unknown arg "stpe" (did you mean step?)`,
		"tags[1]":  `arg "tags": expected a string, got integer 3`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(got), len(want), got)
	}
	for _, p := range got {
		if w, ok := want[p.Path]; !ok || !strings.Contains(p.Message, w) {
			t.Errorf("problem %q: %q, want it to contain %q", p.Path, p.Message, w)
		}
	}
}

func TestCheckArgsRanges(t *testing.T) {
	one, ten := 1.0, 10.0
	spec := pipeline.TypeSpec{Args: []pipeline.ArgSpec{{Name: "n", Kind: pipeline.KindInteger, Min: &one, Max: &ten}, {Name: "x", Kind: pipeline.KindNumber}}}
	for _, tt := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"n": int64(0)}, "must be at least 1"},
		{map[string]any{"n": int64(11)}, "must be at most 10"},
		{map[string]any{"n": 2.5}, "expected an integer"},
		{map[string]any{"x": true}, "expected a number, got boolean"},
		{map[string]any{"n": int64(5), "x": 2}, ""},
	} {
		got := pipeline.CheckArgs(spec, tt.args)
		switch {
		case tt.want == "" && len(got) > 0:
			t.Errorf("%v: %v, want no problem", tt.args, got)
		case tt.want != "" && (len(got) != 1 || !strings.Contains(got[0].Message, tt.want)):
			t.Errorf("%v: %v, want one containing %q", tt.args, got, tt.want)
		}
	}
	if got := pipeline.CheckArgs(pipeline.TypeSpec{Open: true}, map[string]any{"any": 1}); got != nil {
		t.Errorf("open spec: %v", got)
	}
}

// A document with an unknown key still has its graph and args checked: every problem at once.
func TestCheckReportsDecodeGraphAndArgProblemsTogether(t *testing.T) {
	doc := `{"name": "x", "colour": "red", "jobs": [
		{"id": 1, "type": "counter", "args": {"count": "ten", "path": "p"}, "outputs": [1], "head_size": "big"},
		{"id": 2, "type": "nope", "inputs": [1, 7]}]}`
	lookup := func(name string) (pipeline.TypeSpec, bool) {
		if name == "counter" {
			return counterSpec(), true
		}
		return pipeline.TypeSpec{}, false
	}
	p, err := pipeline.Check([]byte(doc), pipeline.ValidateOptions{Types: lookup})
	if p == nil || err == nil {
		t.Fatalf("Check = %v, %v", p, err)
	}
	ve, ok := err.(*pipeline.ValidationError)
	if !ok {
		t.Fatalf("error %T, want *ValidationError", err)
	}
	want := map[string]string{
		"colour":             pipeline.ProblemDecode,
		"jobs[0].head_size":  pipeline.ProblemDecode,
		"jobs[0].args.count": pipeline.ProblemArgs,
		"jobs[1].type":       pipeline.ProblemGraph,
		"":                   pipeline.ProblemGraph, // pipe 7 has no source
	}
	if len(ve.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(ve.Problems), len(want), ve.Problems)
	}
	for _, pr := range ve.Problems {
		if kind, ok := want[pr.Path]; !ok || kind != pr.Kind {
			t.Errorf("unexpected problem %+v", pr)
		}
	}
	// Malformed input stops at the syntax error.
	if p, err := pipeline.Check([]byte(`{"name": `), pipeline.ValidateOptions{}); p != nil || err == nil {
		t.Errorf("malformed: %v, %v", p, err)
	}
}
