package command

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/worker"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// PythonCommand runs the Python interpreter with the `marvelo` package this binary carries on
// its path: `marvelo python -m unittest` tests Python jobs without a cluster, exactly against the
// package the workers run them with.
func PythonCommand() *cli.Command {
	return &cli.Command{
		Name:      "python",
		Usage:     "run Python with the marvelo package (PythonJob, marvelo.testing) on its path",
		UsageText: "python [--python INTERP] [--dir DIR] -- ARGS...",
		Description: `Runs the interpreter of Python jobs (--python, else $MARVELO_PYTHON, else python3 on PATH)
with ARGS, the marvelo package this binary carries first on PYTHONPATH and DIR (default the
current folder) after it, in DIR. Its exit status is the command's. Put ARGS after --.

Example:
   marvelo python -- -m unittest discover -s jobs
   marvelo python --dir jobs -- -c "import marvelo; print(marvelo.__version__)"`,
		Flags: pythonFlags(),
		Action: func(c *cli.Context) error {
			return runPython(c, c.Args().Slice())
		},
	}
}

// TestJobCommand runs one Python job's class on values given on the command line or in files,
// through marvelo.testing: one JSON line of outputs per round.
func TestJobCommand() *cli.Command {
	return &cli.Command{
		Name:      "test-job",
		Usage:     "run a Python job's class on values, without a cluster, and print its outputs",
		UsageText: "test-job module:Class [--dir DIR] [--args JSON] [--input JSON_LIST]... [--input-file FILE]... [--codec C] [--outputs N] [--rounds N] [--arrays numpy]",
		Description: `Imports module:Class from DIR (the job's dependencies folder; default the current folder),
constructs it with --args (its constructor keywords, a JSON object), runs setup() and then one
round per value: --input gives one input's values as a JSON list (repeat it per input, in the
job's input order), --input-file reads such a list from a file. A source (no --input) runs
--rounds rounds, or until it finishes. Every value goes through the pipes' codec (--codec cbor,
json or bytes) as in a pipeline. Prints each round's outputs as one JSON line; exit 1 with the
job's error (job, round, traceback) when it fails.

Example:
   marvelo test-job jobs:SumJob --dir src --input '[1,2,3]' --input '[10,20,30]'
   marvelo test-job offset:Offset --dir jobs --args '{"add": 1}' --input '[1.5, 2]'
   marvelo test-job tdoa:Microphone --dir src --args '{"mic": 1}' --rounds 2`,
		Flags: append(pythonFlags(),
			&cli.StringFlag{Name: "args", Usage: "the class's constructor keywords, a JSON object"},
			&cli.GenericFlag{Name: "input", Value: &repeated{}, Usage: "one input's values, a JSON list (once per input, in order)"},
			&cli.GenericFlag{Name: "input-file", Value: &repeated{}, Usage: "a file holding one input's values as a JSON list"},
			&cli.StringFlag{Name: "codec", Usage: "the pipes' codec: cbor (default), json or bytes"},
			&cli.IntFlag{Name: "outputs", Usage: "how many outputs the job has (default: as its results say)"},
			&cli.IntFlag{Name: "rounds", Usage: "rounds of a source to run"},
			&cli.StringFlag{Name: "arrays", Usage: `"numpy": arrays of numbers reach the job as numpy arrays (the job key python.arrays)`},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return cli.Exit("test-job: want exactly one module:Class (see --help)", exitUsage)
			}
			args := []string{"-m", "marvelo.testing", c.Args().First()}
			for _, name := range []string{"args", "codec", "arrays"} {
				if c.IsSet(name) {
					args = append(args, "--"+name, c.String(name))
				}
			}
			for _, name := range []string{"input", "input-file"} {
				for _, v := range c.Generic(name).(*repeated).values {
					args = append(args, "--"+name, v)
				}
			}
			for _, name := range []string{"outputs", "rounds"} {
				if c.IsSet(name) {
					args = append(args, "--"+name, fmt.Sprint(c.Int(name)))
				}
			}
			return runPython(c, args)
		},
	}
}

func pythonFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "python", EnvVars: []string{pyjob.EnvInterpreter}, Usage: "the interpreter (default python3 on PATH)"},
		&cli.StringFlag{Name: "dir", Value: ".", Usage: "the import root and working directory (a job's dependencies folder)"},
	}
}

// runPython runs the interpreter with args, the package installed in the user's cache.
func runPython(c *cli.Context, args []string) error {
	interp, err := pyjob.Interpreter("", c.String("python"))
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	root, err := pyjob.Install(filepath.Join(worker.DefaultWorkDir(), ".marvelo-cache"))
	if err != nil {
		return cli.Exit(err.Error(), exitFailure)
	}
	dir, err := filepath.Abs(c.String("dir"))
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	cmd := exec.CommandContext(c.Context, interp, args...)
	cmd.Dir = dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, c.App.Writer, c.App.ErrWriter
	path := []string{root, dir}
	if old := os.Getenv("PYTHONPATH"); old != "" {
		path = append(path, old)
	}
	cmd.Env = append(os.Environ(), "PYTHONPATH="+strings.Join(path, string(os.PathListSeparator)))
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return cli.Exit("", exit.ExitCode())
	case err != nil:
		return cli.Exit(fmt.Sprintf("%s: %v", interp, err), exitFailure)
	}
	return nil
}

// repeated collects every value of a flag given several times, as it is: a JSON list's commas
// are not separators (a StringSliceFlag would split "[1,2]").
type repeated struct{ values []string }

func (r *repeated) Set(v string) error { r.values = append(r.values, v); return nil }
func (r *repeated) String() string     { return strings.Join(r.values, " ") }
