package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker"
)

// RunCommand is the run command of marvelo and of every worker of your own (command.Main(reg,
// local.RunCommand(reg))): the whole pipeline in this process with the job types of reg.
func RunCommand(reg *job.Registry) *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "run a pipeline to its end in this process (embedded broker and worker)",
		ArgsUsage: "pipeline.json|pipeline.cbor",
		Description: `Starts an embedded NATS server with JetStream in memory, the control plane and one worker
that takes every group (LOCAL included), submits the pipeline over a real NATS connection,
prints each job's output prefixed with the job's name and id, and waits until every job has
ended. Relative paths in job args resolve against --workdir.

Exit codes: 0 every job finished, 1 a job failed (the error is printed), 2 the document is
invalid, 130 interrupted (the pipeline is stopped cleanly first).

Example:
   marvelo run testdata/pipelines/demo.json
   marvelo run pipeline.cbor --workdir /tmp/out --events
   bin/worker run pipeline.json      # a worker of your own, with its own job types`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "workdir", Value: ".", Usage: "working directory of the jobs (where relative paths such as a csv_sink's land)"},
			&cli.BoolFlag{Name: "events", Usage: "also print pipeline events (placements, job states) to stderr"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log the embedded broker and worker to stderr"},
			&cli.StringFlag{Name: "python", EnvVars: []string{"MARVELO_PYTHON"}, Usage: "interpreter of the Python jobs that name none (default python3 on PATH)"},
		},
		Action: func(c *cli.Context) error { return runAction(c, reg) },
	}
}

func runAction(c *cli.Context, registry *job.Registry) error {
	if c.NArg() != 1 {
		return cliutil.UsageError(fmt.Errorf("run: want exactly one pipeline file, got %d arguments", c.NArg()))
	}
	path := c.Args().First()
	doc, err := os.ReadFile(path)
	if err != nil {
		return cliutil.UsageError(fmt.Errorf("run: %w", err))
	}
	p, err := pipeline.Check(doc, pipeline.ValidateOptions{Types: registry.Spec, TypeNames: registry.Names()})
	if err != nil {
		return cliutil.UsageError(worker.PrefixProblems(path, err))
	}
	opts := Options{WorkDir: c.String("workdir"), Registry: registry, Output: c.App.Writer, Input: os.Stdin,
		BaseDir: filepath.Dir(path), Python: c.String("python")}
	if c.Bool("events") {
		opts.Events = c.App.ErrWriter
	}
	if c.Bool("verbose") {
		opts.Logger = slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := Run(ctx, doc, opts)
	switch {
	case err == nil:
		fmt.Fprintf(c.App.ErrWriter, "pipeline %s finished: %d jobs\n", st.Name, len(st.Jobs))
		return nil
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(c.App.ErrWriter, "pipeline %s stopped (interrupted)\n", p.Name)
		return cli.Exit("", cliutil.ExitSignaled)
	case errors.Is(err, ErrInvalid):
		return cliutil.UsageError(fmt.Errorf("%s: %w", path, err))
	}
	return cliutil.Failure(err)
}
