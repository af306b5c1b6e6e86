package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The newcomer's traps (issue 24) that marvelo run shows from a document alone.

// TestExecWritingJSONLinesOnAnUndeclaredPipeNamesTheCodec: sum.sh writes JSON lines on pipe 2,
// which the document does not declare, so it is cbor. The job fails before any block is taken
// (CBOR would read "-19\n" as the integers -14, -19 and 10: garbage rows, then "answered 30
// times, more than the 10 rounds"), and the error names the job, the pipe, its codec, what the
// bytes look like and what to declare.
func TestExecWritingJSONLinesOnAnUndeclaredPipeNamesTheCodec(t *testing.T) {
	dir := t.TempDir()
	script, err := os.ReadFile("../../testdata/exec/sum.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sum.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(dir, "pipeline.json")
	if err := os.WriteFile(doc, []byte(`{"name": "undeclared", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 10}, "outputs": [1]},
    {"id": 2, "exec": {"path": "./sum.sh", "params": ["--add", "-20"]}, "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": "out.csv", "echo": true}, "inputs": [2]}],
  "pipes": [{"id": 1, "codec": "json"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runApp(t, "run", doc, "--workdir", t.TempDir())
	if r.code != 1 {
		t.Fatalf("marvelo run: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{"job 2 (sum.sh)", `output pipe 2 is cbor (the default), but the program wrote JSON lines ("-19\n`,
		`declare {"id": 2, "codec": "json"} in "pipes"`} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("the error lacks %q:\n%s", w, r.stderr)
		}
	}
	if strings.Contains(r.stderr, "answered") {
		t.Errorf("the error counts answers instead of naming the codec:\n%s", r.stderr)
	}
	row := regexp.MustCompile(`^csv_sink 3 \| -?[0-9]`)
	for _, l := range strings.Split(r.stdout, "\n") {
		if row.MatchString(l) {
			t.Errorf("a garbage row reached the sink: %q", l)
		}
	}
}

// TestExecReadingAnUndeclaredPipeNamesItsCodec: sum.sh reads JSON lines from pipe 1, which the
// document does not declare: it reads the CBOR bytes 01 02 03, finds no line and answers none of
// its 3 rounds. The failure adds that pipe 1 is cbor by default and what to declare.
func TestExecReadingAnUndeclaredPipeNamesItsCodec(t *testing.T) {
	dir := t.TempDir()
	script, err := os.ReadFile("../../testdata/exec/sum.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sum.sh"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(dir, "pipeline.json")
	if err := os.WriteFile(doc, []byte(`{"name": "undeclaredin", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
    {"id": 2, "exec": {"path": "./sum.sh"}, "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "discard", "inputs": [2]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runApp(t, "run", doc, "--workdir", t.TempDir())
	if r.code != 1 {
		t.Fatalf("marvelo run: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for _, w := range []string{"job 2 (sum.sh): output pipe 2: the program answered 0 of the 3 rounds",
		`input pipe 1 is cbor, the default, as the document declares no codec for it (a program that reads JSON lines needs {"id": 1, "codec": "json"} in "pipes")`} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("the error lacks %q:\n%s", w, r.stderr)
		}
	}
}
