package pipeline_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// parseProblems parses data, which must fail with a *DocumentError, and returns its lines.
func parseProblems(t *testing.T, data []byte) []string {
	t.Helper()
	p, err := pipeline.Parse(data)
	if err == nil {
		t.Fatalf("Parse succeeded: %+v", p)
	}
	var de *pipeline.DocumentError
	if !errors.As(err, &de) {
		t.Fatalf("error %T is not a *DocumentError: %v", err, err)
	}
	if len(de.Problems) == 0 {
		t.Fatal("DocumentError without problems")
	}
	return strings.Split(err.Error(), "\n")
}

func wantProblems(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestParseJSONAndCBORAgree(t *testing.T) {
	js, err := os.ReadFile(filepath.Join(pipelinesDir, "groups.json"))
	if err != nil {
		t.Fatal(err)
	}
	fromJSON := mustParse(t, js)
	fromCBOR := mustParse(t, mustCBOR(t, fromJSON))
	if !reflect.DeepEqual(fromJSON, fromCBOR) {
		t.Errorf("JSON and CBOR decode differently:\n%#v\n%#v", fromJSON, fromCBOR)
	}
}

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

// Parse judges the format by content, whatever the file is called.
func TestParseFileJudgesByContent(t *testing.T) {
	dir := t.TempDir()
	js, _ := os.ReadFile(filepath.Join(pipelinesDir, "demo.json"))
	cb, _ := os.ReadFile(filepath.Join(pipelinesDir, "demo.cbor"))
	for name, data := range map[string][]byte{"cbor.json": cb, "json.cbor": append([]byte(" \n\t"), js...)} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := pipeline.ParseFile(path); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Errors name the file, on every line.
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"nme": "x", "jobs": [{"id": "1"}]}`), 0o644)
	_, err := pipeline.ParseFile(bad)
	if err == nil {
		t.Fatal("bad.json parsed")
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, bad+": ") {
			t.Errorf("line %q does not name the file", line)
		}
	}
	if _, err := pipeline.ParseFile(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
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

func TestParseMalformedJSON(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"name": "x",}`, "invalid JSON at line 1, column 14 (byte 13): invalid character '}' looking for beginning of object key string"},
		{"{\n  \"name\": \"x\"\n  \"jobs\": []\n}", "invalid JSON at line 3, column 3 (byte 18): invalid character '\"' after object key:value pair"},
		{`{"name": "x"`, "invalid JSON at line 1, column 13 (byte 12): unexpected end of input"},
		{`{"name": "x"} {}`, "invalid JSON at line 1, column 15 (byte 14): unexpected data after the document"},
		{`{"name": "x"} x`, "invalid JSON at line 1, column 15 (byte 14): "},
		{`{"a": tru}`, "invalid JSON at line 1, column 8 (byte 7): invalid character '}' in literal true"},
		{`{"jobs": [{"args": {"a": ` + strings.Repeat("[", 300), "nested deeper than 256 levels"},
		{"{" + strings.Repeat(`"a":{`, 100000), "nested deeper than 256 levels"},
		{"   \n ", "empty document"},
		{"", "empty document"},
	} {
		got := parseProblems(t, []byte(tc.doc))
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%.40q: got %q, want %q", tc.doc, got, tc.want)
		}
	}
}

func TestParseMalformedCBOR(t *testing.T) {
	demo, err := os.ReadFile(filepath.Join(pipelinesDir, "demo.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", demo[:len(demo)-3], "invalid CBOR at byte "},
		{"missing value", unhex("a1646e616d65"), "invalid CBOR at byte 6: unexpected end of input"},
		{"short argument", unhex("a1646e616d651a0000"), "invalid CBOR at byte 9: unexpected end of input"},
		{"trailing data", append(append([]byte{}, demo...), 0x00), "invalid CBOR at byte 308: unexpected data after the document"},
		{"huge map", unhex("bbffffffffffffffff"), "invalid CBOR at byte 9: map of 18446744073709551615 pairs exceeds the 0 bytes left"},
		{"huge array", unhex("a1646a6f62739bffffffffffffffff00"), "invalid CBOR at byte 15: array of"},
		{"huge text", unhex("a17bffffffffffffffff"), "invalid CBOR at byte 10: length 18446744073709551615 exceeds the 0 bytes left"},
		{"deep arrays", bytes.Repeat([]byte{0x81}, 100000), "nested deeper than 256 levels"},
		{"deep tags", bytes.Repeat([]byte{0xc1}, 100000), "nested deeper than 256 levels"},
		{"reserved info", unhex("a1646e616d651c"), "invalid CBOR at byte 6: reserved additional information 28"},
		{"lone break", unhex("ff"), "invalid CBOR at byte 0: unexpected break"},
		{"indefinite integer", unhex("1f"), "indefinite length is not allowed for major type 0"},
		{"bad chunk", unhex("a17f4161ff"), "invalid CBOR at byte 2: a chunk of an indefinite-length string"},
		{"bad utf-8", unhex("a1646e616d6561ff"), "invalid CBOR at byte 7: text string is not valid UTF-8"},
		{"bad simple", unhex("f801"), "invalid simple value 1"},
		{"json array", []byte(`[{"name": "x"}]`), "(the input looks like text, but a JSON document must be an object starting with '{')"},
		{"byte order mark", []byte("\xef\xbb\xbf{}"), "(the input starts with a UTF-8 byte order mark: save the JSON without one)"},
	} {
		got := parseProblems(t, tc.data)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Well-formed CBOR that has no JSON equivalent is reported with its path.
func TestParseCBORNonJSONItems(t *testing.T) {
	// {"name": tag1(1), "jobs": [{"id": 18446744073709551615, "args": {"b": h'00', "u": undefined,
	//  "n": NaN, "i": -Infinity, "s": simple(16), 1: 2, "big": -18446744073709551616}}]}
	data := unhex("a2646e616d65c101646a6f627381a26269641bffffffffffffffff6461726773a7" +
		"61624100617" + "5f7616ef97e006169f9fc006173f00102636269673bffffffffffffffff")
	got := parseProblems(t, data)
	wantProblems(t, got,
		`name: expected string, got CBOR tag 1`,
		`jobs[0].id: 18446744073709551615 is out of range`,
		`jobs[0].args.b: byte string is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.u: undefined is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.n: NaN is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.i: infinity is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.s: simple value 16 is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args: keys must be strings, got integer`,
		`jobs[0].args.big: -18446744073709551616 is out of range`,
	)
}

// Indefinite lengths, non-minimal arguments and every float width are well-formed CBOR that
// another encoder may produce; they decode like their canonical forms.
func TestParseCBORAlternativeForms(t *testing.T) {
	// {_ "name": (_ "d", "emo"), "jobs": [_ {"id": 1 (as uint16), "type": "t", "args": {"h": 1.5 (half),
	//  "s": 1.5 (single), "d": 1.5 (double), "sub": 2^-24 (half subnormal), "z": -0.0 (half)}}]}
	data := unhex("bf646e616d657f616463656d6fff646a6f62739fa3626964190001647479706561746461726773a5" +
		"6168f93e006173fa3fc000006164fb3ff8000000000000637375" + "62f90001617af98000ffff")
	p := mustParse(t, data)
	if p.Name != "demo" || p.Jobs[0].ID != 1 {
		t.Fatalf("got %+v", p)
	}
	args := p.Jobs[0].Args
	for _, k := range []string{"h", "s", "d"} {
		if args[k] != 1.5 {
			t.Errorf("args.%s = %#v, want 1.5", k, args[k])
		}
	}
	if args["sub"] != 5.960464477539063e-08 {
		t.Errorf("args.sub = %#v, want 2^-24", args["sub"])
	}
	if z, ok := args["z"].(float64); !ok || z != 0 || !signbit(z) {
		t.Errorf("args.z = %#v, want -0.0", args["z"])
	}
}

func signbit(f float64) bool { return 1/f < 0 }

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// A document of one byte per job must not make Parse allocate without bound.
func TestParseLimits(t *testing.T) {
	n := pipeline.MaxJobs + 1
	data := append([]byte{0xa1, 0x64, 'j', 'o', 'b', 's', 0x99, byte(n >> 8), byte(n)}, bytes.Repeat([]byte{0xa0}, n)...)
	wantProblems(t, parseProblems(t, data), "jobs: 10001 entries is more than the 10000 a document may have")
}
