package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
)

// registry holds the Go job types this marvelo binary carries: the builtin ones.
var registry = builtin.Registry()

// knownJobType reports whether a Go job type is carried by this binary (marvelo run, validate).
func knownJobType(name string) bool { return registry.Has(name) }

// typesCommand lists the job types of a registry; marvelo and every worker built with
// worker.Main share it.
func typesCommand(reg *job.Registry) *cli.Command {
	return &cli.Command{
		Name:      "types",
		Usage:     "list the Go job types with their args, defaults and descriptions",
		UsageText: "marvelo types [--json] [TYPE...]",
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
						return cliutil.UsageError(fmt.Errorf("types: unknown job type %q (known: %s)", n, strings.Join(reg.Names(), ", ")))
					}
					picked = append(picked, s)
				}
				specs = picked
			}
			if c.Bool("json") {
				out, err := json.MarshalIndent(specs, "", "  ")
				if err != nil {
					return cliutil.Failure(err)
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
