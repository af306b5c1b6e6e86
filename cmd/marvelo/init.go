package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"text/template"

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
   scale_test.go       a test of the Go job (package pipeline/jobtest), of the Python job
                       (worker/exectest) and of the whole pipeline in one process (cmd/local)
   jobs/offset/        offset.py, an executable job in Python
   pipeline.json       counter → scale → offset.py → csv_sink
   Makefile            make test, make validate, make run (bin/worker run pipeline.json: one
                       process, embedded broker), make build; only go is needed, found where
                       init found it
   go.mod, go.sum      requiring marvelo

How go.mod finds marvelo: when init runs from a marvelo source tree (bin/marvelo built there,
go run in it, or --marvelo DIR), a replace directive points at that tree and go.mod and go.sum
carry its requirements, so the project builds offline from the same module cache. Otherwise it
requires the version this binary was built from (go build then fetches it through the Go module
proxy). DIR must not exist or be empty.

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
	} else if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			d.Version = v
		}
	}
	if d.GoVersion == "" {
		d.GoVersion = strings.TrimPrefix(runtime.Version(), "go")
	}
	if err := os.MkdirAll(filepath.Join(dir, "jobs", "offset"), 0o755); err != nil {
		return cliutil.Failure(fmt.Errorf("init: %w", err))
	}
	for file, text := range initFiles {
		t := template.Must(template.New(file).Delims("[[", "]]").Parse(text))
		mode := os.FileMode(0o644)
		if strings.HasSuffix(file, ".py") {
			mode = 0o755
		}
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
	}
	fmt.Fprintf(c.App.ErrWriter, "created %s: main.go, scale_test.go, jobs/offset/offset.py, pipeline.json, Makefile, go.mod\nnext: cd %s && make test && make run\n", dir, dir)
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

// marveloSourceTree finds a marvelo source tree to build against: the one this binary was built
// in (bin/marvelo inside the repository), or the one the working directory is in (go run).
func marveloSourceTree() string {
	var starts []string
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(filepath.Dir(exe)))
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
	"github.com/marvelo/marvelo/worker"
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
	worker.Main(reg, local.RunCommand(reg))
}
`,
	"scale_test.go": `package main

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/jobtest"
	"github.com/marvelo/marvelo/worker/exectest"
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

// The Python job, through the same adapter a worker uses.
func TestOffset(t *testing.T) {
	json := []jobtest.Pipe{{Codec: "json"}}
	h := exectest.New(t, pipeline.Exec{Path: "./jobs/offset/offset.py", Params: []string{"--add", "1"}},
		jobtest.Config{InputPipes: json, OutputPipes: json})
	if got, want := h.Feed(0, 1.5, 2).Run().Values(0), []any{2.5, int64(3)}; !reflect.DeepEqual(got, want) {
		t.Errorf("offset: got %v, want %v", got, want)
	}
}

// The whole pipeline in this process: an embedded broker and this project's worker.
func TestPipeline(t *testing.T) {
	doc, err := os.ReadFile("pipeline.json")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	_, err = local.Run(context.Background(), doc, local.Options{Registry: registry(), WorkDir: t.TempDir(), BaseDir: ".", Output: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "26") { // (10 × 2.5) + 1, the last row
		t.Errorf("output lacks the last value 26:\n%s", out.String())
	}
}
`,
	"jobs/offset/offset.py": `#!/usr/bin/env python3
"""offset.py - an executable job: adds --add to every number it reads.

The worker starts it as ` + "`./offset.py --add N -i IN -o OUT`" + `; IN and OUT are named pipes
carrying one JSON value per line (the pipes' codec is json). It must answer every line it reads
with one line; it ends when its input ends.
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--add", type=float, default=0)
    ap.add_argument("-i", dest="inp", required=True)
    ap.add_argument("-o", dest="out", required=True)
    args = ap.parse_args()
    with open(args.inp) as inp, open(args.out, "w", buffering=1) as out:
        for line in inp:
            value = json.loads(line) + args.add
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            out.write(json.dumps(value) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
`,
	"pipeline.json": `{
  "name": "[[.Name]]",
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 10}, "outputs": [1]},
    {"id": 2, "type": "scale", "args": {"factor": 2.5}, "inputs": [1], "outputs": [2]},
    {"id": 3, "name": "offset", "exec": {"path": "./offset.py", "params": ["--add", "1"], "dependencies": "jobs/offset"},
     "inputs": [2], "outputs": [3]},
    {"id": 4, "type": "csv_sink", "args": {"path": "out.csv", "echo": true}, "inputs": [3], "groups": ["LOCAL"]}
  ],
  "pipes": [
    {"id": 2, "codec": "json"},
    {"id": 3, "codec": "json"}
  ]
}
`,
	"Makefile": `# make test      the tests of the jobs and of the whole pipeline
# make validate  check pipeline.json against this project's job types
# make run       run pipeline.json in one process (embedded broker, this project's worker)
# make build     bin/worker, which also works for a broker: bin/worker --broker nats://head:4222
# Only Go is needed; GO is where marvelo init found it.
GO ?= [[.Go]]

.PHONY: build test validate run clean
build: bin/worker

bin/worker: $(wildcard *.go) go.mod go.sum
	$(GO) build -o bin/worker .

test:
	$(GO) test ./...

validate: bin/worker
	bin/worker validate pipeline.json

run: bin/worker
	bin/worker run pipeline.json

clean:
	rm -rf bin out.csv
`,
	".gitignore": `bin/
out.csv
`,
}
