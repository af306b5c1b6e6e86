package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// A YAML document with comments decodes to exactly the pipeline its JSON twin does, judged by
// content whatever the file is called.
func TestYAMLDocumentDecodesLikeItsJSON(t *testing.T) {
	js, err := os.ReadFile(filepath.Join(pipelinesDir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(filepath.Join(pipelinesDir, "demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), "# ") {
		t.Fatal("demo.yaml has no comment to prove they are allowed")
	}
	fromJSON, fromYAML := mustParse(t, js), mustParse(t, y)
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Errorf("YAML and JSON decode differently:\n%#v\n%#v", fromYAML, fromJSON)
	}
	if _, err := pipeline.Check(y, pipeline.ValidateOptions{KnownType: builtinTypes}); err != nil {
		t.Errorf("Check of demo.yaml: %v", err)
	}
	// Every scalar kind comes out as from JSON: int64, float64, string, bool, nil.
	p := mustParse(t, []byte("name: v\njobs:\n  - id: 1\n    type: t\n    args: {i: 3, neg: -4, f: 1.5, whole: 2.0, e: 1e3, s: x, q: \"7\", b: false, n: null, tilde: ~, date: 2024-01-02, yes: yes, hex: 0x10, m: {deep: [1, two, 3.5, [], {}]}}\n"))
	want := map[string]any{
		"i": int64(3), "neg": int64(-4), "f": 1.5, "whole": 2.0, "e": 1000.0, "s": "x", "q": "7", "b": false, "n": nil,
		"tilde": nil, "date": "2024-01-02", "yes": "yes", "hex": int64(16),
		"m": map[string]any{"deep": []any{int64(1), "two", 3.5, []any{}, map[string]any{}}},
	}
	if got := p.Jobs[0].Args; !reflect.DeepEqual(got, want) {
		t.Errorf("args:\n%#v\nwant\n%#v", got, want)
	}
}

// The one strict decoder behind both: unknown keys, duplicates and wrong types in YAML are the
// same problems as in JSON, with the same paths, and each has its line and column.
func TestYAMLIsAsStrictAsJSONWithLineAndColumn(t *testing.T) {
	doc := []byte(`# a pipeline with four mistakes
name: strict
jobs:
  - id: 1
    type: counter
    hed: true
    outputs: [1]
  - id: 2
    type: discard
    inputs: [1, "2"]
    inputs: [1]
pipes:
  - {id: 1, blockcount: 2}
`)
	_, err := pipeline.Parse(doc)
	var de *pipeline.DocumentError
	if !errors.As(err, &de) {
		t.Fatalf("Parse: %v, want a *DocumentError", err)
	}
	want := []struct {
		path, msg    string
		line, column int
	}{
		{"jobs[0].hed", "unknown key (did you mean head?)", 6, 5},
		{"jobs[1].inputs[1]", "expected integer, got string", 10, 17},
		{"jobs[1].inputs", "duplicate key", 11, 5},
		{"pipes[0].blockcount", "unknown key (did you mean block_count?)", 13, 13},
	}
	if len(de.Problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(de.Problems), len(want), err)
	}
	for i, w := range want {
		p := de.Problems[i]
		if p.Path != w.path || p.Message != w.msg || p.Line != w.line || p.Column != w.column {
			t.Errorf("problem %d: %s %q at %d:%d, want %s %q at %d:%d", i, p.Path, p.Message, p.Line, p.Column, w.path, w.msg, w.line, w.column)
		}
	}
}

// Malformed YAML names the line (and column where the parser knows it); what YAML has and JSON
// does not (aliases, tags, several documents) is a problem with its path, not a surprise later.
func TestYAMLMalformedAndNonJSONNodes(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"name: x\njobs:\n  - id: 1\n   type: t\n", "invalid YAML at line 4"},
		{"name: x\njobs: [\n", "invalid YAML at line "},
		{"name: a\n---\nname: b\n", "invalid YAML at line 2: a pipeline document is one YAML document, this file has a second"},
		{"- a\n- b\n", "a pipeline document must be a YAML mapping or a JSON object, got array"},
		{"just words\n", "a pipeline document must be a YAML mapping or a JSON object, got string"},
	} {
		got := parseProblems(t, []byte(tc.doc))
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%q: got %q, want %q", tc.doc, got, tc.want)
		}
	}
	_, err := pipeline.Parse([]byte("name: x\njobs:\n  - id: 1\n    type: t\n    args: &a {k: 1}\n  - id: 2\n    type: t\n    args: *a\n    groups: [!!binary AAEC]\n    node: !custom x\n"))
	var de *pipeline.DocumentError
	if !errors.As(err, &de) {
		t.Fatalf("Parse: %v", err)
	}
	want := []string{
		"jobs[1].args: a YAML alias (*a) is not allowed: write the value out (line 8, column 5)",
		"jobs[1].groups[0]: expected string, got YAML tag !!binary (line 9, column 14)",
		"jobs[1].node: expected string, got YAML tag !custom (line 10, column 5)",
	}
	var got []string
	for _, p := range de.Problems {
		got = append(got, p.Located())
	}
	wantProblems(t, got, want...)
}

// Line and column of every kind of problem in a JSON document: decoding, graph and args
// problems alike, and the graph's pipe problems, which have no path of their own, at the job
// that names the pipe.
func TestEveryProblemOfAJSONDocumentHasLineAndColumn(t *testing.T) {
	doc := []byte(`{
  "name": "bad",
  "stpe": 1,
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": "ten"}, "outputs": [1]},
    {"id": 2, "type": "countr", "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": "x"}, "inputs": [1, 2, 3]}
  ]
}`)
	_, err := pipeline.Check(doc, pipeline.ValidateOptions{Types: specOf(counterSpec(), csvSinkSpec()), TypeNames: []string{"counter", "csv_sink"}})
	var ve *pipeline.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Check: %v", err)
	}
	want := map[string][2]int{
		"stpe: unknown key":    {3, 3},
		`arg "count"`:          {5, 43},
		`unknown job type`:     {6, 15},
		`missing required arg`: {5, 34}, // counter's path is required here: at its args
		"pipe 3: no source":    {7, 75},
	}
	for _, p := range ve.Problems {
		if p.Line == 0 || p.Column == 0 {
			t.Errorf("%s: no line and column", p)
		}
		for part, at := range want {
			if strings.Contains(p.String(), part) && (p.Line != at[0] || p.Column != at[1]) {
				t.Errorf("%s: at %d:%d, want %d:%d", p, p.Line, p.Column, at[0], at[1])
			}
		}
	}
	if !strings.Contains(err.Error(), `job 2 (countr): unknown job type "countr" (did you mean "counter"?)`) {
		t.Errorf("no suggestion for the misspelt type:\n%v", err)
	}
}

func specOf(specs ...pipeline.TypeSpec) func(string) (pipeline.TypeSpec, bool) {
	return func(name string) (pipeline.TypeSpec, bool) {
		for _, s := range specs {
			if s.Name == name {
				return s, true
			}
		}
		return pipeline.TypeSpec{}, false
	}
}

func csvSinkSpec() pipeline.TypeSpec {
	return pipeline.TypeSpec{Name: "csv_sink", Args: []pipeline.ArgSpec{{Name: "path", Kind: pipeline.KindString}}}
}

// An unknown job type suggests the closest known one, as unknown keys do; without one close
// enough it says where the types were looked up and what to do.
func TestUnknownJobTypeSuggestsTheClosestOrSaysWhatToDo(t *testing.T) {
	p := mustParse(t, []byte(`{"name": "t", "jobs": [{"id": 1, "type": "countr", "outputs": [1]}, {"id": 2, "type": "scale", "inputs": [1]}]}`))
	known := func(n string) bool { return n == "counter" }
	for _, opts := range []pipeline.ValidateOptions{
		{KnownType: known, TypeNames: []string{"counter", "sum"}, UnknownTypeHint: "no live worker carries it; start a worker built with it"},
		{Types: specOf(pipeline.TypeSpec{Name: "counter"}), TypeNames: []string{"counter", "sum"}, UnknownTypeHint: "no live worker carries it; start a worker built with it"},
	} {
		got := validationProblems(t, p, opts)
		wantProblems(t, got,
			`job 1 (countr): unknown job type "countr" (did you mean "counter"?)`,
			`job 2 (scale): unknown job type "scale": no live worker carries it; start a worker built with it`,
		)
	}
}

// An executable's pipe without a codec is cbor, which the program must then read or write:
// Notes says so for executable jobs only (Go and Python jobs get their codec done for them).
func TestNotesSayAnExecutablesUndeclaredPipeIsCBOR(t *testing.T) {
	p := mustParse(t, []byte(`{"name": "n", "jobs": [
		{"id": 1, "type": "counter", "outputs": [1]},
		{"id": 2, "exec": {"path": "./f.py", "dependencies": "f"}, "inputs": [1], "outputs": [2, 3]},
		{"id": 3, "python": {"class": "m:C", "dependencies": "f"}, "inputs": [2], "outputs": [4]},
		{"id": 4, "type": "discard", "inputs": [3]},
		{"id": 5, "type": "discard", "inputs": [4]}],
		"pipes": [{"id": 2, "block_count": 2}, {"id": 3, "codec": "json"}]}`))
	var got []string
	for _, n := range pipeline.Notes(p) {
		got = append(got, n.String())
	}
	wantProblems(t, got,
		`jobs[1].inputs[0]: job 2 (f.py): pipe 1 has no codec, so it is cbor (the default): the program must read CBOR data items; `+
			`declare it in pipes with "codec": "json" for one JSON value a line, or "bytes" with block_size`,
		`pipes[0]: job 2 (f.py): pipe 2 has no codec, so it is cbor (the default): the program must write CBOR data items; `+
			`declare it in pipes with "codec": "json" for one JSON value a line, or "bytes" with block_size`,
	)
}
