package command_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/worker"
)

// validate checks what it can where it runs: an executable job's program in its dependencies
// folder (there, executable, its #! interpreter present), the folder itself, and a relative
// program without a folder to ship it in. Each problem names job, key and file, with the line
// and column of the key in the document.
func TestValidateChecksExecutablesWhereItRuns(t *testing.T) {
	dir := t.TempDir()
	deps := filepath.Join(dir, "deps")
	if err := os.Mkdir(deps, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]struct {
		text string
		mode os.FileMode
	}{
		"noexec.sh": {"#!/bin/sh\ncat\n", 0o644},
		"needs.sh":  {"#!/usr/bin/env nosuchinterp\n", 0o755},
		"ok.sh":     {"#!/bin/sh\ncat\n", 0o755},
	} {
		if err := os.WriteFile(filepath.Join(deps, name), []byte(f.text), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	doc := filepath.Join(dir, "p.json")
	if err := os.WriteFile(doc, []byte(`{"name": "p", "jobs": [
  {"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
  {"id": 2, "exec": {"path": "./missing.py", "dependencies": "deps"}, "inputs": [1], "outputs": [2]},
  {"id": 3, "exec": {"path": "./noexec.sh", "dependencies": "deps"}, "inputs": [2], "outputs": [3]},
  {"id": 4, "exec": {"path": "./needs.sh", "dependencies": "deps"}, "inputs": [3], "outputs": [4]},
  {"id": 5, "exec": {"path": "./ok.sh", "dependencies": "deps"}, "inputs": [4], "outputs": [5]},
  {"id": 6, "exec": {"path": "./x", "dependencies": "nodir"}, "inputs": [5], "outputs": [6]},
  {"id": 7, "exec": {"path": "./filter.py"}, "inputs": [6], "outputs": [7]},
  {"id": 8, "exec": {"path": "ok.sh", "dependencies": "deps"}, "inputs": [7], "outputs": [8]},
  {"id": 9, "type": "discard", "inputs": [8]}],
 "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}, {"id": 3, "codec": "json"}, {"id": 4, "codec": "json"},
  {"id": 5, "codec": "json"}, {"id": 6, "codec": "json"}, {"id": 7, "codec": "json"}, {"id": 8, "codec": "json"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := appRun(t, "validate", doc)
	if code != 2 {
		t.Errorf("validate: exit %d, want 2:\n%s", code, out)
	}
	for _, want := range []string{
		doc + `: jobs[1].exec.path: job 2 (missing.py): ./missing.py is not in the dependencies folder: ` + filepath.Join(deps, "missing.py") + ` does not exist (line 3, column 22)`,
		doc + `: jobs[2].exec.path: job 3 (noexec.sh): ` + filepath.Join(deps, "noexec.sh") + ` is not executable: chmod +x it (line 4, column 22)`,
		doc + `: jobs[3].exec.path: job 4 (needs.sh): ` + filepath.Join(deps, "needs.sh") + ` needs nosuchinterp, which is not on PATH (line 5, column 22)`,
		doc + `: jobs[5].exec.dependencies: job 6 (x): dependencies folder ` + filepath.Join(dir, "nodir") + ` can't be found or isn't a directory (line 7, column 37)`,
		doc + `: jobs[6].exec.path: job 7 (filter.py): ./filter.py is not beside the document: ` + filepath.Join(dir, "filter.py") + ` does not exist; ` +
			`put it there, or give the job "dependencies" (the folder holding it, relative to the document), or an absolute path (line 8, column 22)`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("validate lacks\n%s\nin:\n%s", want, out)
		}
	}
	for _, job := range []string{"jobs[4]", "jobs[7]", "jobs[8]"} {
		if strings.Contains(out, job) {
			t.Errorf("a problem for %s, which can run:\n%s", job, out)
		}
	}

	// --json: the same problems, kind files, with their line and column.
	out, _ = appRun(t, "validate", "--json", doc)
	var res worker.CheckResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if len(res.Problems) != 5 {
		t.Errorf("--json: %d problems, want 5:\n%s", len(res.Problems), out)
	}
	for _, p := range res.Problems {
		if p.Kind != "files" || p.Line == 0 || p.Column == 0 {
			t.Errorf("--json problem %+v: want kind files with line and column", p)
		}
	}
}

// An executable job's pipe without a codec is cbor: validate says so (a warning, not a
// problem: the document is valid), only for executable jobs.
func TestValidateWarnsThatAnExecutablesUndeclaredPipeIsCBOR(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "deps"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deps", "f.py"), []byte("#!/bin/sh\ncat\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(dir, "p.json")
	if err := os.WriteFile(doc, []byte(`{"name": "p", "jobs": [
  {"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
  {"id": 2, "exec": {"path": "./f.py", "dependencies": "deps"}, "inputs": [1], "outputs": [2]},
  {"id": 3, "type": "discard", "inputs": [2]}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := appRun(t, "validate", doc)
	if code != 0 || !strings.Contains(out, doc+": ok (3 jobs, 2 pipes)") {
		t.Errorf("validate: exit %d, want 0 and ok:\n%s", code, out)
	}
	for _, want := range []string{
		doc + `: warning: jobs[1].inputs[0]: job 2 (f.py): pipe 1 has no codec, so it is cbor (the default): the program must read CBOR data items`,
		doc + `: warning: jobs[1].outputs[0]: job 2 (f.py): pipe 2 has no codec, so it is cbor (the default): the program must write CBOR data items`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate lacks\n%s\nin:\n%s", want, out)
		}
	}
	if strings.Contains(out, "job 1 (counter)") || strings.Contains(out, "job 3 (discard)") {
		t.Errorf("a warning about a Go job:\n%s", out)
	}
	out, code = appRun(t, "validate", "--json", doc)
	var res worker.CheckResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || !res.OK {
		t.Fatalf("--json: %v, exit %d:\n%s", err, code, out)
	}
	if len(res.Warnings) != 2 || res.Warnings[0].Line != 3 {
		t.Errorf("--json warnings: %+v, want 2, the first on line 3", res.Warnings)
	}
}
