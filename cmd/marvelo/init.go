package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a new project: a worker with one Go job, a pipeline and a Makefile",
		ArgsUsage: "DIR",
		Description: `Creates DIR with:
   main.go        a worker of your own: the builtin jobs plus a Go job "scale"
   pipeline.json  counter → scale → csv_sink
   Makefile       make build (bin/worker), make run (broker + your worker + submit), make validate
   go.mod         requiring marvelo (with a replace directive pointing at --marvelo when given
                  or when this marvelo binary sits in a marvelo source tree)
DIR must not exist or be empty.

Example:
   marvelo init myproject && cd myproject && make run`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "module", Usage: "Go module path of the new project (default: the folder name)"},
			&cli.StringFlag{Name: "marvelo", Usage: "path of a marvelo source tree to build against (replace directive)"},
		},
		Action: initAction,
	}
}

type initData struct {
	Module, Name, Replace string
}

func initAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return cliutil.UsageError(errors.New("init: want exactly one folder"))
	}
	dir := c.Args().First()
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return cliutil.UsageError(fmt.Errorf("init: %s exists and is not empty", dir))
	}
	name := filepath.Base(filepath.Clean(dir))
	d := initData{Module: c.String("module"), Name: name, Replace: c.String("marvelo")}
	if d.Module == "" {
		d.Module = name
	}
	if d.Replace == "" {
		d.Replace = marveloSourceTree()
	}
	if d.Replace != "" {
		abs, err := filepath.Abs(d.Replace)
		if err != nil {
			return cliutil.Failure(err)
		}
		d.Replace = abs
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return cliutil.Failure(fmt.Errorf("init: %w", err))
	}
	for file, text := range initFiles {
		t := template.Must(template.New(file).Delims("[[", "]]").Parse(text))
		f, err := os.Create(filepath.Join(dir, file))
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
	fmt.Fprintf(os.Stderr, "created %s: main.go, pipeline.json, Makefile, go.mod\nnext: cd %s && make run\n", dir, dir)
	return nil
}

// marveloSourceTree finds the marvelo source tree this binary was built in (bin/marvelo inside
// the repository), so a new project builds against the same code.
func marveloSourceTree() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	root := filepath.Dir(filepath.Dir(exe))
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module github.com/marvelo/marvelo\n") {
		return ""
	}
	return root
}

var initFiles = map[string]string{
	"go.mod": `module [[.Module]]

go 1.26

require github.com/marvelo/marvelo v0.0.0
[[if .Replace]]
replace github.com/marvelo/marvelo => [[.Replace]]
[[end]]`,
	"main.go": `// Command worker is a marvelo worker carrying the builtin jobs and this project's own.
package main

import (
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker"
)

// Scale multiplies every value by Factor.
type Scale struct {
	Factor float64 ` + "`json:\"factor\" marvelo:\"required\"`" + `
}

// Run is called once per compute block: one argument per input.
func (s *Scale) Run(ctx *job.Context, x float64) (float64, error) {
	return s.Factor * x, nil
}

func main() {
	reg := builtin.Registry()
	reg.Register("scale", "multiplies its input by factor", func() any { return &Scale{} })
	worker.Main(reg)
}
`,
	"pipeline.json": `{
  "name": "[[.Name]]",
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 10}, "outputs": [1]},
    {"id": 2, "type": "scale", "args": {"factor": 2.5}, "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": "out.csv", "echo": true}, "inputs": [2], "groups": ["LOCAL"]}
  ]
}
`,
	"Makefile": `# make run: a throwaway broker on 127.0.0.1:4322, this project's worker, and the pipeline.
MARVELO ?= marvelo
BROKER  ?= marvelo-broker
URL     := nats://127.0.0.1:4322

.PHONY: build run validate
build:
	go mod tidy
	go build -o bin/worker .

validate:
	$(MARVELO) validate pipeline.json

run: build
	@$(BROKER) --listen 127.0.0.1:4322 --memory & echo $$! > .broker.pid
	@bin/worker --broker $(URL) --name [[.Name]]-worker & echo $$! > .worker.pid
	@for i in $$(seq 100); do $(MARVELO) workers --broker $(URL) 2>/dev/null | grep -q [[.Name]]-worker && break; sleep 0.1; done
	@$(MARVELO) submit pipeline.json --broker $(URL) --follow; rc=$$?; \
		kill $$(cat .worker.pid) $$(cat .broker.pid); rm -f .worker.pid .broker.pid; exit $$rc
`,
}
