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

// Tests of the entry points (Parse, ParseFile) and the helpers the other decoding tests share;
// each reader and the builder have a test file of their own.

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
