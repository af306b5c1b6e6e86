// Package command is the command line of a worker binary: the stock marvelo-worker and a worker
// of your own (Main). The runtime it drives is package worker, which imports no CLI library.
package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
)

// Main is the entry point of a worker binary: the stock marvelo-worker calls it with the builtin
// job types, and a worker of your own calls it with a registry holding your types too. Besides
// running jobs for a broker, the binary has the commands validate FILE and types for its own
// types, and the commands given (local.RunCommand adds run FILE: the whole pipeline in one
// process with an embedded broker; worker cannot import the broker itself):
//
//	func main() {
//		reg := builtin.Registry()
//		reg.Register("scale", "multiplies by factor", func() any { return &Scale{} })
//		command.Main(reg, local.RunCommand(reg))
//	}
func Main(reg *job.Registry, commands ...*cli.Command) {
	app := App(reg, commands...)
	if len(os.Args) > 0 && !strings.HasPrefix(filepath.Base(os.Args[0]), "marvelo-worker") {
		app.Name = filepath.Base(os.Args[0]) // a worker of your own goes by its own name
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, app.Name+":", err)
		var coder cli.ExitCoder
		if errors.As(err, &coder) {
			os.Exit(coder.ExitCode())
		}
		os.Exit(1)
	}
}

// App is the worker's command line, for Main and for tests.
func App(reg *job.Registry, commands ...*cli.Command) *cli.App {
	// --version alone: -v is --verbose.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit"}
	return &cli.App{
		Version:              protocol.BuildVersion(),
		EnableBashCompletion: true,
		Commands:             append([]*cli.Command{ValidateCommand(reg), TypesCommand(reg), PythonCommand(), TestJobCommand()}, commands...),
		Name:                 "marvelo-worker",
		Usage:                "run the marvelo jobs a broker assigns to this machine",
		UsageText:            "marvelo-worker --broker nats://HEAD:4222 [--name N] [--groups dsp,mic] [--slots K] [--workdir DIR] [--auth-token T | --creds FILE] [--tls-ca F] [--python INTERP]",
		Description: `Connects to the broker, registers with its name, groups, slots and the Go job types it carries
(` + strings.Join(reg.Names(), ", ") + `), sends heartbeats with CPU, memory, swap and disk
metrics, and runs the jobs assigned to it. It reconnects forever when the broker is away.
Every worker belongs to the group ALL as well as to the groups given.

Without a command it is a worker; the commands check documents against its own job types.

Example:
   marvelo-worker --broker nats://head.local:4222 --groups dsp,mic --slots 4
   marvelo-worker --broker nats://head.local:4222 --creds mic1.creds --groups mic
   marvelo-worker --broker nats://head.local:4222 --python /opt/dsp-venv/bin/python
   marvelo-worker types`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "broker", Value: nats.DefaultURL, EnvVars: []string{"MARVELO_BROKER"}, Usage: "NATS URL of the broker; comma-separated URLs of several head nodes (a cluster)"},
			&cli.StringFlag{Name: "name", Usage: "worker name, unique among live workers (default: the host name)"},
			&cli.StringFlag{Name: "groups", Usage: "comma-separated groups this worker belongs to, besides ALL"},
			&cli.IntFlag{Name: "slots", Value: runtime.NumCPU(), Usage: "jobs run at once"},
			&cli.StringFlag{Name: "workdir", Value: worker.DefaultWorkDir(), Usage: "folder for the jobs' working directories"},
			&cli.StringFlag{Name: "auth-token", EnvVars: []string{"MARVELO_AUTH_TOKEN"}, Usage: "token the broker requires"},
			&cli.StringFlag{Name: "creds", EnvVars: []string{"MARVELO_CREDS"}, Usage: "this worker's credentials file (marvelo-broker worker add); its name is the worker's"},
			&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate to verify the broker's TLS certificate"},
			&cli.IntFlag{Name: "data-connections", Value: worker.DefaultDataConnections(), Usage: "NATS connections the jobs' pipes share besides the worker's own, made as jobs need them, each job on the next in turn (0: the pipes use the worker's own connection; the default is 4, or 1 on one CPU)"},
			&cli.DurationFlag{Name: "heartbeat", Value: 500 * time.Millisecond, Usage: "interval between heartbeats"},
			&cli.StringFlag{Name: "python", EnvVars: []string{"MARVELO_PYTHON"}, Usage: "interpreter of the Python jobs that name none (a path, e.g. a venv's bin/python, or a name on PATH; default python3)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cli.Exit(fmt.Sprintf("unexpected arguments: %v", c.Args().Slice()), 2)
			}
			return runCLI(c, reg)
		},
	}
}

func runCLI(c *cli.Context, reg *job.Registry) error {
	level := slog.LevelInfo
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	name := c.String("name")
	if n := c.Int("data-connections"); n < 0 {
		return cli.Exit(fmt.Sprintf("--data-connections %d: want 0 or more", n), 2)
	}
	var extra []nats.Option
	if f := c.String("creds"); f != "" {
		id, opts, err := worker.Creds(f)
		if err != nil {
			return cli.Exit(err.Error(), 2)
		}
		if name != "" && name != id {
			return cli.Exit(fmt.Sprintf("--name %s: the credentials %s are worker %s's", name, f, id), 2)
		}
		name, extra = id, opts
	}
	if name == "" {
		name = worker.DefaultName()
	}
	// The broker maps the server's event of this connection's close to this worker by its name.
	extra = append(extra, nats.Name(protocol.WorkerConnName(name)))
	nc, err := worker.Connect(c.String("broker"), c.String("auth-token"), c.String("tls-ca"), log, extra...)
	if err != nil {
		return err
	}
	defer nc.Close()
	w, err := worker.New(nc, worker.Options{
		Name: name, Groups: splitList(c.String("groups")), Slots: c.Int("slots"),
		WorkDir: c.String("workdir"), Registry: reg, Heartbeat: c.Duration("heartbeat"), Logger: log,
		Python: c.String("python"),
	})
	if err != nil {
		if !nc.IsConnected() {
			return worker.DescribeConnectError(c.String("broker"), errors.Join(nc.LastError(), err))
		}
		return cli.Exit(err.Error(), 2)
	}
	w.SetDataConnections(c.Int("data-connections"))
	if err := w.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		if !nc.IsConnected() {
			return worker.DescribeConnectError(c.String("broker"), errors.Join(nc.LastError(), err))
		}
		return err
	}
	log.Info("worker stopped")
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
