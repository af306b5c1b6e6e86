package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"text/template"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a new project: your own worker with a Go job, a Python job, a pipeline, tests and a Makefile",
		ArgsUsage: "DIR",
		Description: `Creates DIR with a project that works on its own:
   main.go             a worker of your own: the builtin jobs plus a Go job "scale"
   scale_test.go       a test of the Go job (package pipeline/jobtest) and of the whole
                       pipeline in one process (cmd/local), checking its exact rows
   jobs/offset.py      a Python job: class Offset(PythonJob), as MARVELO's users write them
   jobs/test_offset.py its unittest test (marvelo.testing.emulate), run by make test through
                       bin/worker python (the marvelo package the worker carries)
   pipeline.json       counter → scale → Offset → csv_sink
   Makefile            make test, make validate, make run (bin/worker run pipeline.json: one
                       process, embedded broker), make build; only go and python3 are needed
   go.mod, go.sum      requiring marvelo

How go.mod finds marvelo: it builds against a marvelo source tree, through a replace
directive, with go.mod and go.sum carrying that tree's requirements, so the project builds
offline from the same module cache. The tree is --marvelo DIR (or $MARVELO_SOURCE), else the
one this binary was built from (found beside bin/marvelo, or where the build recorded it: a
binary copied to ~/bin still finds it), else the one the working directory is in. Without
any, a marvelo of a published version requires that version (init runs go mod tidy, which
fetches it through the Go module proxy); any other refuses at once, before writing anything,
and says to give --marvelo. DIR must not exist or be empty.

Example:
   marvelo init demo && cd demo && make test && make run`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "module", Usage: "Go module path of the new project (default: the folder name)"},
			&cli.StringFlag{Name: "marvelo", EnvVars: []string{"MARVELO_SOURCE"}, Usage: "path of a marvelo source tree to build against (replace directive)"},
		},
		Action: initAction,
	}
}

type initData struct {
	Module, Name, Replace, Version, GoVersion, Go string
	// Requires are marvelo's own requirements, copied so that the project builds without tidy.
	Requires []string
}

func initAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return cliutil.UsageError(errors.New("init: want exactly one folder (see marvelo init --help)"))
	}
	dir := c.Args().First()
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return cliutil.UsageError(fmt.Errorf("init: %s exists and is not empty", dir))
	}
	name := filepath.Base(filepath.Clean(dir))
	if err := protocol.CheckName("pipeline", name); err != nil {
		return cliutil.UsageError(fmt.Errorf("init: the folder name becomes the pipeline's name: %w", err))
	}
	d := initData{Module: c.String("module"), Name: name, Replace: c.String("marvelo"), Version: "v0.0.0", Go: "go"}
	if d.Module == "" {
		d.Module = name
	}
	if d.Replace == "" {
		d.Replace = marveloSourceTree()
	}
	if d.Replace == "" && !published(builtVersion) {
		return cliutil.UsageError(noSourceTree())
	}
	if bin, err := exec.LookPath("go"); err == nil {
		if abs, err := filepath.Abs(bin); err == nil {
			d.Go = abs
		}
	}
	var sum []byte
	if d.Replace != "" {
		abs, err := filepath.Abs(d.Replace)
		if err != nil {
			return cliutil.Failure(err)
		}
		d.Replace = abs
		mod, err := os.ReadFile(filepath.Join(abs, "go.mod"))
		if err != nil || !isMarveloModule(mod) {
			return cliutil.UsageError(fmt.Errorf("init: --marvelo %s is not a marvelo source tree (no go.mod of github.com/marvelo/marvelo)", abs))
		}
		d.GoVersion, d.Requires = modRequirements(mod)
		if sum, err = os.ReadFile(filepath.Join(abs, "go.sum")); err != nil {
			return cliutil.Failure(fmt.Errorf("init: %w", err))
		}
	} else {
		d.Version = builtVersion
	}
	if d.GoVersion == "" {
		d.GoVersion = strings.TrimPrefix(runtime.Version(), "go")
	}
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o755); err != nil {
		return cliutil.Failure(fmt.Errorf("init: %w", err))
	}
	for file, text := range initFiles {
		t := template.Must(template.New(file).Delims("[[", "]]").Parse(text))
		mode := os.FileMode(0o644)
		f, err := os.OpenFile(filepath.Join(dir, file), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
		if err != nil {
			return cliutil.Failure(fmt.Errorf("init: %w", err))
		}
		err = t.Execute(f, d)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return cliutil.Failure(fmt.Errorf("init: %s: %w", file, err))
		}
	}
	if sum != nil {
		if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
			return cliutil.Failure(fmt.Errorf("init: %w", err))
		}
	} else if err := tidy(c, d.Go, dir); err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "created %s: main.go, scale_test.go, jobs/offset.py, jobs/test_offset.py, pipeline.json, Makefile, go.mod\nnext: cd %s && make test && make run\n", dir, dir)
	return nil
}

func isMarveloModule(mod []byte) bool {
	return strings.Contains(string(mod), "module github.com/marvelo/marvelo\n")
}

// modRequirements returns the go version and the requirements of a go.mod, one "path version"
// each.
func modRequirements(mod []byte) (goVersion string, reqs []string) {
	inBlock := false
	for _, line := range strings.Split(string(mod), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case strings.HasPrefix(line, "go "):
			goVersion = strings.TrimSpace(strings.TrimPrefix(line, "go "))
		case line == "require (":
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case inBlock && line != "":
			reqs = append(reqs, line)
		case strings.HasPrefix(line, "require "):
			reqs = append(reqs, strings.TrimSpace(strings.TrimPrefix(line, "require ")))
		}
	}
	return goVersion, reqs
}

// builtFrom is this file where the build compiled it: in the source tree the binary was built
// from, which the binary thus knows wherever it is copied to (unless built with -trimpath, when
// the path is not absolute).
var builtFrom = func() string {
	_, file, _, _ := runtime.Caller(0)
	return file
}()

// builtVersion is the version of marvelo this binary was built as: "(devel)" or empty for a
// build in a source tree, a pseudo-version for one stamped from a commit, a release's version
// for `go install github.com/marvelo/marvelo/cmd/marvelo@vX.Y.Z`.
var builtVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return ""
}()

// pseudoVersion is the tail of a Go pseudo-version (v0.0.0-20240102150405-abcdef123456): a
// commit's version, which the Go module proxy has only if the commit is public.
var pseudoVersion = regexp.MustCompile(`[-.]?[0-9]{14}-[0-9a-f]{12}$`)

// published reports whether a project can require marvelo at version v from the Go module
// proxy: a release's version, not a local build's "(devel)" or a commit's pseudo-version.
func published(v string) bool {
	return semverRelease.MatchString(v) && !pseudoVersion.MatchString(v)
}

var semverRelease = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// noSourceTree says why init cannot make a project that builds, and what to give it.
func noSourceTree() error {
	where := "this marvelo was built without recording its source tree (-trimpath)"
	if root, ok := treeOf(builtFrom); ok {
		where = "this marvelo was built from " + root + ", which is no longer a marvelo source tree"
	}
	version := builtVersion
	if version == "" {
		version = "unknown"
	}
	return fmt.Errorf("init: a project builds against marvelo's source, and none was found: %s, the working directory is in none, "+
		"and its version (%s) is not one the Go module proxy has, so a go.mod requiring it would not build. "+
		"Give a marvelo source tree: marvelo init --marvelo /path/to/marvelo DIR (or set MARVELO_SOURCE=/path/to/marvelo)", where, version)
}

// treeOf is the root of the source tree a file of cmd/marvelo was compiled from, when the path
// is absolute.
func treeOf(file string) (string, bool) {
	if !filepath.IsAbs(file) {
		return "", false
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file))), true
}

// tidy completes the go.mod and go.sum of a project that requires a published marvelo (go mod
// tidy fetches it through the Go module proxy). On failure the project's files are removed and
// the error says how to go on.
func tidy(c *cli.Context, goBin, dir string) error {
	ctx, cancel := context.WithTimeout(c.Context, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "mod", "tidy")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if entries, rerr := os.ReadDir(dir); rerr == nil {
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return cliutil.Failure(fmt.Errorf("init: go mod tidy in %s, to fetch marvelo %s: %v\n%s\n"+
		"init removed what it wrote. Give a marvelo source tree instead: marvelo init --marvelo /path/to/marvelo %s",
		dir, builtVersion, err, strings.TrimSpace(string(out)), dir))
}

// marveloSourceTree finds a marvelo source tree to build against: the one this binary was built
// in (bin/marvelo inside the repository, or where the build recorded it: the binary may have
// been copied elsewhere), or the one the working directory is in (go run).
func marveloSourceTree() string {
	var starts []string
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(filepath.Dir(exe)))
	}
	if root, ok := treeOf(builtFrom); ok {
		starts = append(starts, root)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			starts = append(starts, d)
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	for _, root := range starts {
		if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err == nil && isMarveloModule(b) {
			return root
		}
	}
	return ""
}

var initFiles = map[string]string{
	"go.mod": `module [[.Module]]

go [[.GoVersion]]

require github.com/marvelo/marvelo [[.Version]]
[[if .Requires]]
require (
[[range .Requires]]	[[.]] // indirect
[[end]])
[[end]][[if .Replace]]
replace github.com/marvelo/marvelo => [[.Replace]]
[[end]]`,
	"main.go": `// Command worker is a marvelo worker carrying the builtin jobs and this project's own. Besides
// working for a broker (bin/worker --broker nats://head:4222) it runs a pipeline on its own
// (bin/worker run pipeline.json), checks one (bin/worker validate pipeline.json) and lists its
// job types (bin/worker types).
package main

import (
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker/command"
)

// Scale multiplies every value by Factor. Its exported fields are its args, checked by validate
// and at submit: the pipeline sets them in "args".
type Scale struct {
	Factor float64 ` + "`json:\"factor\" marvelo:\"required\" help:\"what every value is multiplied by\"`" + `
}

// Run is called once per compute block: one argument per input, the result goes to every output.
func (s *Scale) Run(ctx *job.Context, x float64) (float64, error) {
	return s.Factor * x, nil
}

// registry holds the job types this worker carries: the builtin ones and this project's.
func registry() *job.Registry {
	reg := builtin.Registry()
	reg.Register("scale", "multiplies its input by factor", func() any { return &Scale{} })
	return reg
}

func main() {
	reg := registry()
	command.Main(reg, local.RunCommand(reg))
}
`,
	"scale_test.go": `package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/jobtest"
)

// The Go job, in process: values in, values out.
func TestScale(t *testing.T) {
	res := jobtest.New(t, &Scale{Factor: 2.5}, jobtest.Config{Inputs: 1, Outputs: 1}).Feed(0, 1.0, 2.0, -4.0).Run()
	if got, want := res.Values(0), []any{2.5, 5.0, -10.0}; !reflect.DeepEqual(got, want) {
		t.Errorf("scale: got %v, want %v", got, want)
	}
}

// The job as the pipeline builds it: its args are checked against the type.
func TestScaleArgs(t *testing.T) {
	if _, err := registry().New("scale", map[string]any{"factor": "big"}); err == nil {
		t.Error("scale accepted a factor that is not a number")
	}
}

// The whole pipeline in this process: an embedded broker and this project's worker, the Python
// job run by the worker's Python runner. Every row of out.csv is checked.
func TestPipeline(t *testing.T) {
	doc, err := os.ReadFile("pipeline.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out strings.Builder
	_, err = local.Run(context.Background(), doc, local.Options{Registry: registry(), WorkDir: dir, BaseDir: ".", Output: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	csv, err := os.ReadFile(filepath.Join(dir, "out.csv"))
	if err != nil {
		t.Fatal(err)
	}
	// counter 1…10, × 2.5 (scale), + 1 (Offset)
	want := "pipe_3\n3.5\n6\n8.5\n11\n13.5\n16\n18.5\n21\n23.5\n26\n"
	if string(csv) != want {
		t.Errorf("out.csv:\n%s\nwant:\n%s", csv, want)
	}
}
`,
	"jobs/offset.py": `"""A Python job: adds ` + "`add`" + ` to every value it gets.

It is written as MARVELO's users write jobs: a PythonJob whose run() is called once per round
with one argument per input, its return value going to every output. The document's "args" are
its constructor's keywords. Test it with ` + "`make test`" + ` (jobs/test_offset.py) or by hand:
    bin/worker test-job offset:Offset --dir jobs --args '{"add": 1}' --input '[1.5, 2]'
"""
from marvelo import PythonJob


class Offset(PythonJob):
    def __init__(self, add=0, **kwargs):
        super().__init__(**kwargs)
        self.add = add

    def run(self, value):
        return value + self.add
`,
	"jobs/test_offset.py": `"""Tests of the Python job, without a cluster: run with make test (bin/worker python)."""
import unittest

from marvelo.testing import emulate

from offset import Offset


class OffsetTest(unittest.TestCase):
    def test_adds_to_every_value(self):
        job = emulate(Offset(add=1))
        self.assertEqual(job(1.5), [2.5])
        self.assertEqual(job(2), [3])

    def test_rounds_through_the_pipes_codec(self):
        values = [1, 2, 3]
        json = {"codec": "json"}
        result = emulate(Offset(add=0.5), inputs=[values], input_pipes=[json], output_pipes=[json])
        self.assertEqual(result.outputs[0], [1.5, 2.5, 3.5])


if __name__ == "__main__":
    unittest.main()
`,
	"pipeline.json": `{
  "name": "[[.Name]]",
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 10}, "outputs": [1]},
    {"id": 2, "type": "scale", "args": {"factor": 2.5}, "inputs": [1], "outputs": [2]},
    {"id": 3, "python": {"class": "offset:Offset", "dependencies": "jobs"}, "args": {"add": 1},
     "inputs": [2], "outputs": [3]},
    {"id": 4, "type": "csv_sink", "args": {"path": "out.csv", "echo": true}, "inputs": [3], "groups": ["LOCAL"]}
  ]
}
`,
	"Makefile": `# make test      the tests of the jobs (Go and Python) and of the whole pipeline
# make validate  check pipeline.json against this project's job types
# make run       run pipeline.json in one process (embedded broker, this project's worker)
# make build     bin/worker, which also works for a broker: bin/worker --broker nats://head:4222
# Go and Python are needed; GO is where marvelo init found it, PYTHON the Python jobs'
# interpreter (bin/worker --python, or $MARVELO_PYTHON; default python3 on PATH).
GO ?= [[.Go]]
PYTHON ?= $(MARVELO_PYTHON)

.PHONY: build test validate run clean
build: bin/worker

bin/worker: $(wildcard *.go) go.mod go.sum
	$(GO) build -o bin/worker .

test: bin/worker
	$(GO) test ./...
	bin/worker python $(if $(PYTHON),--python $(PYTHON)) --dir jobs -- -m unittest -v

validate: bin/worker
	bin/worker validate pipeline.json

run: bin/worker
	bin/worker run pipeline.json

clean:
	rm -rf bin out.csv
`,
	".gitignore": `bin/
out.csv
__pycache__/
.marvelo/
.marvelo-cache/
`,
}
