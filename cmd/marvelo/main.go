// Command marvelo submits, runs and inspects marvelo pipelines. See `marvelo --help`.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/worker"
)

func main() {
	app := &cli.App{
		Name:  "marvelo",
		Usage: "run distributed signal-processing pipelines on NATS",
		Description: `A pipeline is a graph of jobs joined by numbered pipes, written as JSON (pipeline.json)
and submitted as CBOR (pipeline.cbor); every command that takes a pipeline accepts either.

Examples:
   marvelo run testdata/pipelines/demo.json          # everything in one process
   marvelo validate pipeline.json
   marvelo encode pipeline.json -o pipeline.cbor
   marvelo submit pipeline.cbor --broker nats://head:4222 --wait`,
		Commands: []*cli.Command{
			local.RunCommand(registry),
			submitCommand(),
			statusCommand(),
			stopCommand(),
			resetCommand(),
			workersCommand(),
			logsCommand(),
			encodeCommand(),
			decodeCommand(),
			validateCommand(),
			importXMLCommand(),
			graphCommand(),
			benchCommand(),
			initCommand(),
			worker.TypesCommand(registry),
		},
		ExitErrHandler: cliutil.HandleExitError,
	}
	if err := app.Run(cliutil.FlagsFirst(app, os.Args)); err != nil {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "marvelo:", msg)
		}
		os.Exit(cliutil.ExitCode(err))
	}
}
