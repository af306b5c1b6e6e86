package command

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker"
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

// ReportCheck checks a document (worker.CheckDocument: pipeline.Check with opts, then the files it
// names) and prints the result to c.App.Writer (as JSON with --json): every problem with its JSON
// path and its line and column, one per line, prefixed with name, and exit code 2; or "name: ok
// (N jobs, M pipes)", after a line for each warning (pipeline.Notes). It is `marvelo validate`
// and the `validate` command of every worker built with Main.
func ReportCheck(c *cli.Context, name string, data []byte, opts pipeline.ValidateOptions) error {
	res, err := worker.CheckDocument(name, data, opts)
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
