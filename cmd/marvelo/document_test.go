package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
)

const fixtures = "../../testdata/pipelines"

type result struct {
	code           int
	stdout, stderr string
}

// runDocCmd runs `marvelo ARGS...` in process with the document commands, the way main does,
// and returns the exit code and what went to stdout and stderr (main's error line included).
func runDocCmd(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{
		Name:           "marvelo",
		Commands:       []*cli.Command{encodeCommand(), decodeCommand(), validateCommand(), graphCommand()},
		Reader:         strings.NewReader(stdin),
		Writer:         &stdout,
		ErrWriter:      &stderr,
		ExitErrHandler: cliutil.HandleExitError,
	}
	r := result{}
	if err := app.Run(cliutil.FlagsFirst(app, append([]string{"marvelo"}, args...))); err != nil {
		stderr.WriteString("marvelo: " + err.Error() + "\n")
		r.code = cliutil.ExitCode(err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func (r result) want(t *testing.T, code int, stdout ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateCommand(t *testing.T) {
	demo := filepath.Join(fixtures, "demo.json")
	runDocCmd(t, "", "validate", demo).want(t, 0, demo+": ok (6 jobs, 5 pipes)\n")
	runDocCmd(t, "", "validate", filepath.Join(fixtures, "demo.cbor")).want(t, 0, "demo.cbor: ok (6 jobs, 5 pipes)")

	bad := writeFile(t, "bad.json", `{"jobs": [
		{"id": 1, "type": "counter", "outputs": [3]},
		{"id": 2, "type": "counter", "outputs": [3]},
		{"id": 3, "type": "csv_sink", "inputs": [3]}],
		"pipes": [{"id": 3, "codec": "bytes"}]}`)
	r := runDocCmd(t, "", "validate", bad)
	r.want(t, 2,
		bad+": name: name is required (line 1, column 1)\n"+
			bad+": jobs[1].outputs[0]: pipe 3: source defined twice: job 1 (counter) and job 2 (counter) (line 3, column 44)\n"+
			bad+": jobs[2].args.path: job 3 (csv_sink): missing required arg \"path\" (string) (line 4, column 3)\n"+
			bad+": pipes[0].block_size: pipe 3: codec bytes needs block_size of at least 1 (line 5, column 13)\n")
	if !strings.Contains(r.stderr, bad+": invalid pipeline document (4 problems)") {
		t.Errorf("stderr: %s", r.stderr)
	}

	// Decoding problems are reported the same way, with their paths.
	typo := writeFile(t, "typo.json", `{"name": "x", "jobs": [], "pipes": [{"id": 1, "blockcount": 2}]}`)
	runDocCmd(t, "", "validate", typo).want(t, 2, typo+": pipes[0].blockcount: unknown key (did you mean block_count?) (line 1, column 47)\n")

	// The job types are those the workers carry (knownJobType).
	unknown := writeFile(t, "unknown.json", `{"name": "x", "jobs": [{"id": 1, "type": "frobnicate"}]}`)
	runDocCmd(t, "", "validate", unknown).want(t, 2, unknown+`: jobs[0].type: job 1 (frobnicate): unknown job type "frobnicate"`)

	runDocCmd(t, "", "validate").want(t, 2)
	runDocCmd(t, "", "validate", "a.json", "b.json").want(t, 2)
	if r := runDocCmd(t, "", "validate", filepath.Join(t.TempDir(), "missing.json")); r.code != 2 || !strings.Contains(r.stderr, "missing.json") {
		t.Errorf("missing file: code %d, stderr %s", r.code, r.stderr)
	}
}

func TestEncodeDecodeCommands(t *testing.T) {
	demoJSON, err := os.ReadFile(filepath.Join(fixtures, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	demoCBOR, err := os.ReadFile(filepath.Join(fixtures, "demo.cbor"))
	if err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "demo.cbor")
	runDocCmd(t, "", "encode", filepath.Join(fixtures, "demo.json"), "-o", out).want(t, 0)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, demoCBOR) {
		t.Errorf("encode -o wrote %x, want demo.cbor", got)
	}
	// Without -o the CBOR goes to stdout; "-" reads stdin.
	if r := runDocCmd(t, string(demoJSON), "encode", "-"); r.code != 0 || r.stdout != string(demoCBOR) {
		t.Errorf("encode - : code %d, stdout %x", r.code, r.stdout)
	}
	// decode prints the JSON document, from CBOR or JSON alike.
	if r := runDocCmd(t, "", "decode", filepath.Join(fixtures, "demo.cbor")); r.code != 0 || r.stdout != string(demoJSON) {
		t.Errorf("decode demo.cbor: code %d\n%s", r.code, r.stdout)
	}
	if r := runDocCmd(t, "", "decode", filepath.Join(fixtures, "demo.json")); r.stdout != string(demoJSON) {
		t.Errorf("decode demo.json:\n%s", r.stdout)
	}

	// An invalid document is exit code 2, its problems named by file.
	bad := writeFile(t, "bad.json", `{"name": "x", "jobs": [{"id": 1, "type": "counter", "outputs": [1]}]}`)
	r := runDocCmd(t, "", "encode", bad)
	r.want(t, 2)
	if !strings.Contains(r.stderr, bad+": pipe 1: no destination") || r.stdout != "" {
		t.Errorf("encode of an invalid document: stdout %q stderr %q", r.stdout, r.stderr)
	}
	runDocCmd(t, "", "encode", "--no-validate", bad).want(t, 0)
	garbage := writeFile(t, "garbage.json", `{"name": `)
	if r := runDocCmd(t, "", "decode", garbage); r.code != 2 || !strings.Contains(r.stderr, garbage+": invalid JSON at line 1") {
		t.Errorf("decode of malformed JSON: code %d, stderr %s", r.code, r.stderr)
	}
	runDocCmd(t, "", "decode", "--bogus", filepath.Join(fixtures, "demo.json")).want(t, 2)
}

func TestGraphCommand(t *testing.T) {
	demo := filepath.Join(fixtures, "demo.json")
	r := runDocCmd(t, "", "graph", demo)
	r.want(t, 0, `digraph "demo" {`, `j0 [label="counter 1"];`, `j3 -> j4 [label="4 cbor"];`, `[label="csv_sink 6", style="rounded,bold"]`)
	p, err := pipeline.ParseFile(demo)
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != string(pipeline.EncodeDOT(p)) {
		t.Error("graph output differs from EncodeDOT")
	}

	dot := filepath.Join(t.TempDir(), "g.dot")
	runDocCmd(t, "", "graph", demo, "-o", dot).want(t, 0)
	if got, _ := os.ReadFile(dot); string(got) != r.stdout {
		t.Errorf("graph -o g.dot wrote:\n%s", got)
	}
	runDocCmd(t, "", "graph", demo, "-o", "g.txt").want(t, 2)
}

// -o x.svg runs dot; without dot on PATH the error says what is missing.
func TestGraphCommandSVG(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("uses a shell script as a stand-in for dot")
	}
	demo := filepath.Join(fixtures, "demo.json")
	svg := filepath.Join(t.TempDir(), "g.svg")
	path := os.Getenv("PATH")

	t.Setenv("PATH", t.TempDir())
	r := runDocCmd(t, "", "graph", demo, "-o", svg)
	if r.code != 1 || !strings.Contains(r.stderr, "needs Graphviz's dot command") {
		t.Errorf("without dot: code %d, stderr %s", r.code, r.stderr)
	}

	// A stand-in dot that records its arguments and copies the graph to the -o file.
	bin := t.TempDir()
	script := "#!/bin/sh\necho \"$@\" > \"$3.args\"\ncat > \"$3\"\n"
	if err := os.WriteFile(filepath.Join(bin, "dot"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+path) // the stand-in comes first
	runDocCmd(t, "", "graph", demo, "-o", svg).want(t, 0)
	args, _ := os.ReadFile(svg + ".args")
	if got := strings.TrimSpace(string(args)); got != "-Tsvg -o "+svg {
		t.Errorf("dot ran with %q", got)
	}
	if got, _ := os.ReadFile(svg); !bytes.HasPrefix(got, []byte(`digraph "demo"`)) {
		t.Errorf("dot got:\n%s", got)
	}
}

// Every document command documents itself: a usage line, a description and an example.
func TestDocumentCommandsHelp(t *testing.T) {
	for _, name := range []string{"encode", "decode", "validate", "graph"} {
		r := runDocCmd(t, "", name, "--help")
		r.want(t, 0, "USAGE:\n   marvelo "+name+" FILE", "DESCRIPTION:", "Example:\n      marvelo "+name+" ")
	}
}
