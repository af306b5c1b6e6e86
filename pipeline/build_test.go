package pipeline_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// Tests of the builder (build.go): free-form values, every problem reported at once, and the
// limits on a document's size.

// Free-form values come out as map[string]any, []any, int64, float64, string, bool, nil — the
// same from JSON and from CBOR.
func TestParseFreeFormValues(t *testing.T) {
	js := []byte(`{"name": "v", "jobs": [{"id": 1, "type": "t", "args": {
		"i": 3, "neg": -4, "f": 1.5, "whole": 2.0, "e": 1e3, "s": "x", "b": false, "n": null,
		"m": {"deep": {"list": [1, "two", 3.5, [], {}]}}}}],
		"pipes": [{"id": 1, "optional": {"default": {"k": [7]}}}]}`)
	want := map[string]any{
		"i": int64(3), "neg": int64(-4), "f": 1.5, "whole": 2.0, "e": 1000.0, "s": "x", "b": false, "n": nil,
		"m": map[string]any{"deep": map[string]any{"list": []any{int64(1), "two", 3.5, []any{}, map[string]any{}}}},
	}
	wantDefault := map[string]any{"k": []any{int64(7)}}
	p := mustParse(t, js)
	for name, p := range map[string]*pipeline.Pipeline{"JSON": p, "CBOR": mustParse(t, mustCBOR(t, p))} {
		if got := p.Jobs[0].Args; !reflect.DeepEqual(got, want) {
			t.Errorf("%s args:\n%#v\nwant\n%#v", name, got, want)
		}
		if got := p.Pipes[0].Optional.Default; !reflect.DeepEqual(got, wantDefault) {
			t.Errorf("%s optional.default = %#v, want %#v", name, got, wantDefault)
		}
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	got := parseProblems(t, []byte(`{
		"name": 7,
		"jobs": [
			{"id": 1, "type": "counter", "outputs": [1], "hed": true},
			{"id": 2, "exec": {"path": "x", "mode": "fd2", "inputflag": "-i"}, "inputs": [1, "2"]},
			{"id": 3.5, "type": "sum", "inputs": {}, "dummy": "last", "head_size": 0, "id": 4}
		],
		"pipes": [{"id": 1, "codec": "pickle", "blockcount": 2, "block_size": 0, "optional": {"drop": "all", "stor": 1}}],
		"comment": "x"
	}`))
	wantProblems(t, got,
		`name: expected string, got integer`,
		`jobs[0].hed: unknown key (did you mean head?)`,
		`jobs[1].exec.mode: "fd2" is not one of fifo, fd`,
		`jobs[1].exec.inputflag: unknown key (did you mean input_flag?)`,
		`jobs[1].inputs[1]: expected integer, got string`,
		`jobs[2].id: expected integer, got number`,
		`jobs[2].inputs: expected array, got object`,
		`jobs[2].dummy: "last" is not one of zero, prev`,
		`jobs[2].head_size: must be 1 to 4, got 0`,
		`jobs[2].id: duplicate key`,
		`pipes[0].codec: "pickle" is not one of cbor, json, bytes`,
		`pipes[0].blockcount: unknown key (did you mean block_count?)`,
		`pipes[0].block_size: must be at least 1, got 0`,
		`pipes[0].optional.drop: "all" is not one of oldest, newest`,
		`pipes[0].optional.stor: unknown key (did you mean store?)`,
		`comment: unknown key`,
	)
}

// A document of one byte per job must not make Parse allocate without bound.
func TestParseLimits(t *testing.T) {
	n := pipeline.MaxJobs + 1
	data := append([]byte{0xa1, 0x64, 'j', 'o', 'b', 's', 0x99, byte(n >> 8), byte(n)}, bytes.Repeat([]byte{0xa0}, n)...)
	wantProblems(t, parseProblems(t, data), "jobs: 10001 entries is more than the 10000 a document may have")
}
