package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
	"github.com/marvelo/marvelo/worker/command"
)

// The document commands: encode, decode, validate and graph. Each takes one FILE, JSON, YAML or
// CBOR judged by content ("-" reads standard input), and leaves the work to package pipeline.

func outputFlag(usage string) cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: usage}
}

func encodeCommand() *cli.Command {
	return &cli.Command{
		Name:      "encode",
		Usage:     "encode a pipeline document as CBOR",
		UsageText: "marvelo encode FILE [-o OUT.cbor] [--no-validate]",
		Description: `Reads a pipeline document (JSON, YAML or CBOR, judged by content; "-" reads standard input),
checks it as validate does (all but the job type check) and writes it as CBOR in core
deterministic encoding (RFC 8949 §4.2): the same document always gives the same bytes.
Without -o the CBOR goes to standard output.

Example:
   marvelo encode pipeline.json -o pipeline.cbor`,
		Flags: []cli.Flag{
			outputFlag("write the CBOR to `FILE` instead of standard output"),
			&cli.BoolFlag{Name: "no-validate", Usage: "encode the document even if it fails validation"},
		},
		Action: func(c *cli.Context) error {
			name, p, err := loadDocument(c)
			if err != nil {
				return err
			}
			if !c.Bool("no-validate") {
				if err := pipeline.Validate(p, pipeline.ValidateOptions{}); err != nil {
					return cliutil.UsageError(prefixLines(name, err))
				}
			}
			data, err := pipeline.EncodeCBOR(p)
			if err != nil {
				return cliutil.Failure(err)
			}
			return writeOutput(c, c.String("output"), data)
		},
	}
}

func decodeCommand() *cli.Command {
	return &cli.Command{
		Name:      "decode",
		Usage:     "print a pipeline document as indented JSON",
		UsageText: "marvelo decode FILE [-o OUT.json]",
		Description: `Reads a pipeline document (CBOR, JSON or YAML, judged by content; "-" reads standard
input), decodes it strictly and prints it as JSON indented by two spaces. It does not validate the
graph: use validate for that.

Example:
   marvelo decode pipeline.cbor`,
		Flags: []cli.Flag{outputFlag("write the JSON to `FILE` instead of standard output")},
		Action: func(c *cli.Context) error {
			_, p, err := loadDocument(c)
			if err != nil {
				return err
			}
			data, err := pipeline.EncodeJSON(p)
			if err != nil {
				return cliutil.Failure(err)
			}
			return writeOutput(c, c.String("output"), data)
		},
	}
}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check a pipeline document and report every problem",
		UsageText: "marvelo validate FILE [--json] [--broker URL]",
		Description: `Decodes a pipeline document (JSON, YAML or CBOR, judged by content; "-" reads standard
input) and reports every problem at once, each with its JSON path and, for JSON and YAML, its
line and column: decoding problems (unknown keys, wrong types), graph problems (ids, pipe
ends, codecs, synchronous cycles, ...), the args of every Go job checked against its type
(unknown, missing, wrong type, out of range), and the files the document names, as far as
they can be checked here (dependencies folders, an executable's program, its execute bit
and its #! interpreter, a Python job's module), relative to the document.

Job types are those this marvelo carries (marvelo types); with --broker, those the live
workers of that broker carry. Prints "FILE: ok (N jobs, M pipes)", or every problem, one per
line, prefixed with the file name; the exit code is then 2. Warnings (an executable job's
pipe without a codec is cbor) are printed before and leave the document valid.

Example:
   marvelo validate pipeline.json
   marvelo validate --json pipeline.json
   marvelo validate --broker nats://head:4222 pipeline.json`,
		Flags: append([]cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON: {file, ok, jobs, pipes, problems: [{path, message, kind}]}"},
		}, brokerFlags()...),
		Action: func(c *cli.Context) error {
			name, data, err := readDocument(c)
			if err != nil {
				return err
			}
			opts := localTypes()
			if c.IsSet("broker") {
				if opts, err = brokerTypes(c, nil); err != nil {
					return err
				}
			}
			return command.ReportCheck(c, name, data, opts)
		},
	}
}

// localTypes checks job types against this marvelo's: the builtin ones.
func localTypes() pipeline.ValidateOptions {
	return pipeline.ValidateOptions{Types: registry.Spec, TypeNames: registry.Names(),
		UnknownTypeHint: "this marvelo carries only the builtin types (marvelo types); check a pipeline of your own job types " +
			"with your worker (a project of marvelo init: bin/worker validate pipeline.json)"}
}

// brokerTypes looks job types up among the live workers of the broker named by --broker,
// connecting to it unless cl is given.
func brokerTypes(c *cli.Context, cl *client.Client) (pipeline.ValidateOptions, error) {
	if cl == nil {
		nc, own, err := connect(c)
		if err != nil {
			return pipeline.ValidateOptions{}, err
		}
		defer nc.Close()
		cl = own
	}
	ws, err := cl.Workers(c.Context)
	if err != nil {
		return pipeline.ValidateOptions{}, cliutil.Failure(fmt.Errorf("%s: listing the workers of %s: %w", c.Command.Name, c.String("broker"), err))
	}
	var live []protocol.WorkerInfo
	var names []string
	for _, w := range ws {
		if w.Alive {
			live = append(live, w.WorkerInfo)
			names = append(names, w.Types...)
		}
	}
	slices.Sort(names)
	url := c.String("broker")
	return pipeline.ValidateOptions{Types: protocol.SpecLookup(live), TypeNames: slices.Compact(names),
		UnknownTypeHint: fmt.Sprintf("no live worker of %s carries it; start a worker built with it (a project of marvelo init: bin/worker --broker %s)", url, url)}, nil
}

func graphCommand() *cli.Command {
	return &cli.Command{
		Name:      "graph",
		Usage:     "draw a pipeline as a Graphviz graph",
		UsageText: "marvelo graph FILE [-o graph.dot|graph.svg|graph.png|graph.pdf]",
		Description: `Writes the pipeline as a Graphviz DOT digraph: one node per job ("name id"), one edge per
pipe labelled with its id and codec; async and optional pipes are dashed. Without -o the
DOT goes to standard output. An -o ending in .svg, .png or .pdf runs Graphviz's dot, which
must be installed. An invalid document is drawn as far as possible, to help find the fault.

Example:
   marvelo graph pipeline.json -o pipeline.svg`,
		Flags: []cli.Flag{outputFlag("write to `FILE`; .svg, .png and .pdf are rendered with dot")},
		Action: func(c *cli.Context) error {
			_, p, err := loadDocument(c)
			if err != nil {
				return err
			}
			dot := pipeline.EncodeDOT(p)
			out := c.String("output")
			switch ext := strings.ToLower(filepath.Ext(out)); ext {
			case "", ".dot", ".gv":
				return writeOutput(c, out, dot)
			case ".svg", ".png", ".pdf":
				return renderDOT(dot, ext[1:], out)
			default:
				return cliutil.UsageError(fmt.Errorf("graph: cannot write %s: the output must end in .dot, .gv, .svg, .png or .pdf", out))
			}
		},
	}
}

// readDocument reads the one FILE argument; "-" is standard input. It returns the name to use in
// messages.
func readDocument(c *cli.Context) (string, []byte, error) {
	if c.NArg() != 1 {
		return "", nil, cliutil.UsageError(fmt.Errorf("%s needs exactly one FILE argument, got %d (see marvelo %s --help)",
			c.Command.Name, c.NArg(), c.Command.Name))
	}
	name := c.Args().First()
	if name == "-" {
		data, err := io.ReadAll(c.App.Reader)
		if err != nil {
			return "<stdin>", nil, cliutil.Failure(fmt.Errorf("reading standard input: %w", err))
		}
		return "<stdin>", data, nil
	}
	data, err := os.ReadFile(name)
	if err != nil {
		return name, nil, cliutil.UsageError(err) // an unreadable file is bad usage: exit 2
	}
	return name, data, nil
}

// loadDocument reads and decodes the FILE argument (JSON, YAML or CBOR); an undecodable document
// is exit code 2.
func loadDocument(c *cli.Context) (string, *pipeline.Pipeline, error) {
	name, data, err := readDocument(c)
	if err != nil {
		return name, nil, err
	}
	p, err := pipeline.Parse(data)
	if err != nil {
		return name, nil, cliutil.UsageError(prefixLines(name, err))
	}
	return name, p, nil
}

// prefixLines names the file on every line of a multi-problem error.
func prefixLines(name string, err error) error { return worker.PrefixProblems(name, err) }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// writeOutput writes data to the file named by -o, or to standard output when there is none
// (or it is "-").
func writeOutput(c *cli.Context, path string, data []byte) error {
	if path == "" || path == "-" {
		if _, err := c.App.Writer.Write(data); err != nil {
			return cliutil.Failure(err)
		}
		return nil
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return cliutil.Failure(err)
	}
	return nil
}

// renderDOT runs Graphviz's dot to turn the graph into an image of the given format.
func renderDOT(dot []byte, format, out string) error {
	bin, err := exec.LookPath("dot")
	if err != nil {
		return cliutil.Failure(fmt.Errorf("graph: writing %s needs Graphviz's dot command, which was not found on PATH; "+
			"install graphviz, or write DOT with -o %s.dot", out, strings.TrimSuffix(out, filepath.Ext(out))))
	}
	cmd := exec.Command(bin, "-T"+format, "-o", out)
	cmd.Stdin = bytes.NewReader(dot)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return cliutil.Failure(fmt.Errorf("graph: dot -T%s -o %s: %v: %s", format, out, err, strings.TrimSpace(stderr.String())))
	}
	return nil
}

// warnExecPaths warns about each executable whose path no worker can have: a relative path
// without a dependencies folder to ship it in. Only a path on the worker's PATH (no slash)
// or an absolute one exists there without dependencies.
func warnExecPaths(w io.Writer, name string, p *pipeline.Pipeline) {
	for i, j := range p.Jobs {
		e := j.Exec
		if e == nil || e.Dependencies != "" || filepath.IsAbs(e.Path) || !strings.Contains(e.Path, "/") {
			continue
		}
		fmt.Fprintf(w, "%s: warning: jobs[%d].exec.path: job %d (%s): %q is relative and the job has no dependencies folder, so no worker can have it; "+
			"add \"dependencies\" with the folder holding it, or give an absolute path\n", name, i, j.ID, j.DisplayName(), e.Path)
	}
}
