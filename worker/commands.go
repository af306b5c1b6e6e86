package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// The document commands every worker binary has besides running jobs: validate and types. They
// need no broker; `marvelo validate` and `marvelo types` are the same code.

// Exit codes (the rule of every marvelo binary, DESIGN.md §4): bad usage or an unreadable or
// invalid file 2, a failure 1.
const (
	exitFailure = 1
	exitUsage   = 2
)

// ValidateCommand checks pipeline documents against the registry's job types.
func ValidateCommand(reg *job.Registry) *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a pipeline document against this worker's job types and report every problem",
		UsageText: "validate [--json] FILE",
		Description: `Reports every problem of a pipeline document (JSON or CBOR) at once, each with its JSON
path: decoding problems, graph problems and every Go job's args checked against the types
this binary carries. Exit code 2 when there is any.

Example:
   bin/worker validate pipeline.json`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit(fmt.Sprintf("validate needs exactly one FILE argument, got %d", c.NArg()), exitUsage)
			}
			name := c.Args().First()
			data, err := os.ReadFile(name)
			if err != nil {
				return cli.Exit(err.Error(), exitUsage)
			}
			return ReportCheck(c, name, data, pipeline.ValidateOptions{Types: reg.Spec, TypeNames: reg.Names(),
				UnknownTypeHint: "this worker does not carry it (" + c.App.Name + " types lists what it does)"})
		},
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// countPipes counts distinct pipes, used by a job or only listed.
func countPipes(p *pipeline.Pipeline) int {
	ids := map[int]bool{}
	for _, j := range p.Jobs {
		for _, id := range append(append([]int(nil), j.Inputs...), j.Outputs...) {
			ids[id] = true
		}
	}
	for _, pp := range p.Pipes {
		ids[pp.ID] = true
	}
	return len(ids)
}

// CheckResult is what validate --json prints.
type CheckResult struct {
	File     string             `json:"file"`
	OK       bool               `json:"ok"`
	Jobs     int                `json:"jobs"`
	Pipes    int                `json:"pipes"`
	Problems []pipeline.Problem `json:"problems"`
	// Warnings are allowed but likely not meant (pipeline.Notes): they leave OK true.
	Warnings []pipeline.Problem `json:"warnings,omitempty"`
}

// ReportCheck checks a document (pipeline.Check with opts, then the files it names: CheckFiles)
// and prints the result to c.App.Writer (as JSON with --json): every problem with its JSON path
// and its line and column, one per line, prefixed with name, and exit code 2; or "name: ok (N
// jobs, M pipes)", after a line for each warning (pipeline.Notes). It is `marvelo validate` and
// the `validate` command of every worker built with Main.
func ReportCheck(c *cli.Context, name string, data []byte, opts pipeline.ValidateOptions) error {
	p, err := pipeline.Check(data, opts)
	res := CheckResult{File: name, OK: err == nil, Problems: []pipeline.Problem{}}
	if p != nil {
		res.Jobs, res.Pipes = len(p.Jobs), countPipes(p)
	}
	if err != nil {
		res.Problems = ProblemsOf(err)
	}
	if files := CheckFiles(name, p); len(files) > 0 {
		pipeline.Locate(data, files)
		res.Problems = append(res.Problems, files...)
		res.OK = false
		if err == nil {
			err = &pipeline.ValidationError{Problems: files}
		}
	}
	if p != nil {
		res.Warnings = pipeline.Notes(p)
		pipeline.Locate(data, res.Warnings)
	}
	if c.Bool("json") {
		out, jerr := json.MarshalIndent(res, "", "  ")
		if jerr != nil {
			return cli.Exit(jerr.Error(), exitFailure)
		}
		fmt.Fprintf(c.App.Writer, "%s\n", out)
	} else {
		for _, w := range res.Warnings {
			fmt.Fprintf(c.App.Writer, "%s: warning: %s\n", name, w.Located())
		}
		if err == nil {
			fmt.Fprintf(c.App.Writer, "%s: ok (%d jobs, %d pipes)\n", name, res.Jobs, res.Pipes)
		}
		for _, pr := range res.Problems {
			fmt.Fprintf(c.App.Writer, "%s: %s\n", name, pr.Located())
		}
	}
	if err != nil {
		return cli.Exit(fmt.Sprintf("%s: invalid pipeline document (%s)", name, plural(len(res.Problems), "problem")), exitUsage)
	}
	return nil
}

// CheckFiles checks what the document in the file name names on disk, relative to the
// document's folder, as far as it can be checked here (nothing for a document read from standard
// input): a Python job's dependencies folder and module (pyjob.CheckFiles), an executable job's
// dependencies folder and program (checkExecFiles). Each problem has kind files and names job,
// key and file.
func CheckFiles(name string, p *pipeline.Pipeline) []pipeline.Problem {
	if p == nil || name == "-" || name == "<stdin>" {
		return nil
	}
	var out []pipeline.Problem
	for i := range p.Jobs {
		out = append(out, pyjob.CheckFiles(filepath.Dir(name), &p.Jobs[i], i)...)
		out = append(out, checkExecFiles(filepath.Dir(name), &p.Jobs[i], i)...)
	}
	return out
}

// checkExecFiles checks an executable job's files here, as the job will find them: its
// dependencies folder (relative to the document) exists and holds the program; without one, a
// relative program is beside the document (where marvelo run looks for it); a program found
// here is executable and its #! interpreter is present (programReady, what a worker's bid
// checks too). A program on PATH or at an absolute path that is not here may be on the workers:
// not a problem.
func checkExecFiles(baseDir string, j *pipeline.Job, index int) []pipeline.Problem {
	e := j.Exec
	if e == nil || e.Path == "" {
		return nil // the graph check names a missing path
	}
	path := fmt.Sprintf("jobs[%d].exec", index)
	label := fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
	problem := func(key, format string, args ...any) []pipeline.Problem {
		return []pipeline.Problem{{Path: path + "." + key, Kind: pipeline.ProblemFiles, Message: label + ": " + fmt.Sprintf(format, args...)}}
	}
	if abs, err := filepath.Abs(baseDir); err == nil {
		baseDir = abs // the messages name whole paths
	}
	dir := baseDir // without dependencies, marvelo run looks beside the document
	if e.Dependencies != "" {
		dir = e.Dependencies
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(baseDir, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return problem("dependencies", "dependencies folder %s can't be found or isn't a directory", dir)
		}
	}
	local := programHere(e, dir)
	switch {
	case local == "" && filepath.IsAbs(e.Path), local == "" && !strings.ContainsRune(e.Path, '/'):
		return nil // on the workers' machines, maybe
	case local == "" && e.Dependencies != "":
		return problem("path", "%s is not in the dependencies folder: %s does not exist", e.Path, filepath.Join(dir, e.Path))
	case local == "":
		return problem("path", `%s is not beside the document: %s does not exist; put it there, or give the job "dependencies" `+
			"(the folder holding it, relative to the document), or an absolute path", e.Path, filepath.Join(dir, e.Path))
	}
	if err := programReady(local, local); err != nil {
		return problem("path", "%v", err)
	}
	return nil
}

// ProblemsOf lists the problems of a Parse, Validate or Check error.
func ProblemsOf(err error) []pipeline.Problem {
	var de *pipeline.DocumentError
	var ve *pipeline.ValidationError
	switch {
	case errors.As(err, &de):
		return de.Problems
	case errors.As(err, &ve):
		return ve.Problems
	}
	return []pipeline.Problem{{Message: err.Error()}}
}

// TypesCommand lists the job types of a registry: `marvelo types` and the `types` command of
// every worker built with Main.
func TypesCommand(reg *job.Registry) *cli.Command {
	return &cli.Command{
		Name:      "types",
		Usage:     "list the Go job types with their args, defaults and descriptions",
		UsageText: "types [--json] [TYPE...]",
		Description: `Lists every Go job type this binary carries (the builtin ones; a worker of your own lists
yours too): a one-line description, then one line per arg with its kind, default, range and
description. Names given as arguments limit the list to those types.

Example:
   marvelo types
   marvelo types --json counter`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the specs as JSON"}},
		Action: func(c *cli.Context) error {
			specs := reg.Specs()
			if c.NArg() > 0 {
				var picked []pipeline.TypeSpec
				for _, n := range c.Args().Slice() {
					s, ok := reg.Spec(n)
					if !ok {
						return cli.Exit(fmt.Sprintf("types: unknown job type %q (known: %s)", n, strings.Join(reg.Names(), ", ")), exitUsage)
					}
					picked = append(picked, s)
				}
				specs = picked
			}
			if c.Bool("json") {
				out, err := json.MarshalIndent(specs, "", "  ")
				if err != nil {
					return cli.Exit(err.Error(), exitFailure)
				}
				fmt.Fprintf(c.App.Writer, "%s\n", out)
				return nil
			}
			return printTypes(c.App.Writer, specs)
		},
	}
}

// printTypes writes the specs as text: the type and its description, then an indented table of
// its args.
func printTypes(w io.Writer, specs []pipeline.TypeSpec) error {
	for i, s := range specs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s — %s\n", s.Name, s.Description)
		if len(s.Args) == 0 {
			fmt.Fprintln(w, "    (no args)")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, a := range s.Args {
			fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\n", a.Name, argKindText(a), argDefaultText(a), a.Description)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func argKindText(a pipeline.ArgSpec) string {
	k := a.Kind
	if a.Kind == pipeline.KindArray && a.Elem != "" {
		k = "array of " + a.Elem
	}
	if len(a.Enum) > 0 {
		k += " (" + strings.Join(a.Enum, "|") + ")"
	}
	switch {
	case a.Min != nil && a.Max != nil:
		k += fmt.Sprintf(" %g..%g", *a.Min, *a.Max)
	case a.Min != nil:
		k += fmt.Sprintf(" >= %g", *a.Min)
	case a.Max != nil:
		k += fmt.Sprintf(" <= %g", *a.Max)
	}
	return k
}

func argDefaultText(a pipeline.ArgSpec) string {
	if a.Required {
		return "required"
	}
	if a.Default == nil {
		return "default: none"
	}
	b, _ := json.Marshal(a.Default)
	return "default: " + string(b)
}

// PrefixProblems names the file on every line of a Parse, Validate or Check error: one line per
// problem, "name: path: message (line L, column C)".
func PrefixProblems(name string, err error) error {
	var lines []string
	for _, p := range ProblemsOf(err) {
		for _, l := range strings.Split(p.Located(), "\n") {
			lines = append(lines, name+": "+l)
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}
