// Command marvelo submits, runs and inspects marvelo pipelines. See `marvelo --help`.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/command"
)

func main() {
	app := newApp()
	if err := app.Run(cliutil.FlagsFirst(app, os.Args)); err != nil {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "marvelo:", msg)
		}
		os.Exit(cliutil.ExitCode(err))
	}
}

// newApp is marvelo's command line; tests check every command's help through it.
func newApp() *cli.App {
	// --version alone: -v is --verbose.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit"}
	return &cli.App{
		Name:    "marvelo",
		Usage:   "run distributed signal-processing pipelines on NATS",
		Version: protocol.BuildVersion(),
		Description: `A pipeline is a graph of jobs joined by numbered pipes, written as JSON (pipeline.json)
or YAML (pipeline.yaml, comments allowed) and submitted as CBOR (pipeline.cbor); every command
that takes a pipeline accepts any of the three, judged by content.

Exit codes (every command): 0 success; 1 a failure (a pipeline or job failed, the broker
refused or could not be reached); 2 bad usage or an unreadable or invalid file; 130
interrupted.

Environment: MARVELO_BROKER stands for --broker, MARVELO_AUTH_TOKEN for --auth-token, in every
command that takes them; MARVELO_SOURCE for init --marvelo.

Examples:
   marvelo init demo && cd demo && make run          # a project of your own
   marvelo run testdata/pipelines/demo.json          # everything in one process
   marvelo validate pipeline.json
   marvelo encode pipeline.json -o pipeline.cbor
   marvelo submit pipeline.cbor --broker nats://head:4222 --wait`,
		EnableBashCompletion: true,
		Commands: []*cli.Command{
			initCommand(),
			local.RunCommand(registry),
			validateCommand(),
			command.TypesCommand(registry),
			command.TestJobCommand(),
			command.PythonCommand(),
			submitCommand(),
			statusCommand(),
			stopCommand(),
			rmCommand(), // ops.go
			resetCommand(),
			workersCommand(),
			drainCommand(),
			uncordonCommand(),
			clusterCommand(),
			logsCommand(),
			topCommand(),
			encodeCommand(),
			decodeCommand(),
			importXMLCommand(),
			graphCommand(),
			benchCommand(),
			completionCommand(),
		},
		ExitErrHandler: cliutil.HandleExitError,
	}
}
