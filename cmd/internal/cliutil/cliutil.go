// Package cliutil holds what the three marvelo commands share on the command line: flags that may
// stand after positional arguments, exit codes, and the environment variables that stand in for
// flags.
package cliutil

import (
	"errors"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes shared by every command (DESIGN.md §4).
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitUsage    = 2
	ExitSignaled = 130
)

// UsageError marks an error as bad usage or an invalid document: exit code 2.
func UsageError(err error) error { return cli.Exit(err.Error(), ExitUsage) }

// Failure marks an error as a failure of the pipeline or command: exit code 1.
func Failure(err error) error { return cli.Exit(err.Error(), ExitFailure) }

// ExitCode maps an error returned by App.Run to the process exit code: ExitOK for nil.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	msg := err.Error()
	var coder cli.ExitCoder
	if errors.As(err, &coder) {
		// urfave/cli answers an unknown command with its help action's exit code 3.
		if coder.ExitCode() == 3 && strings.HasPrefix(msg, "No help topic for ") {
			return ExitUsage
		}
		return coder.ExitCode()
	}
	// urfave/cli reports unknown flags, missing values and the like as plain errors: the flag
	// package's messages and its own for required flags.
	for _, usage := range []string{
		"flag provided but not defined", "flag needs an argument", "invalid value",
		"invalid boolean value", "invalid boolean flag", "bad flag syntax",
		"Required flag", "Required flags", "Cannot use two forms of the same flag",
	} {
		if strings.Contains(msg, usage) {
			return ExitUsage
		}
	}
	return ExitFailure
}

// HandleExitError keeps urfave/cli from exiting the process itself: main prints the error once
// and exits with ExitCode.
func HandleExitError(*cli.Context, error) {}

// FlagsFirst reorders the arguments of the subcommand named in args so that its flags come before
// its positional arguments. urfave/cli/v2 stops parsing flags at the first positional argument,
// while users type `marvelo submit p.cbor --wait` as readily as `marvelo submit --wait p.cbor`.
// Everything after a lone "--" stays where it is.
func FlagsFirst(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Global flags come before the subcommand name.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") && args[i] != "--" {
		if takesValue(app.Flags, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := findCommand(app.Commands, args[i])
	if cmd == nil {
		return args
	}
	// Descend into subcommands ("marvelo-broker worker add NAME --out F").
	for i+1 < len(args) {
		sub := findCommand(cmd.Subcommands, args[i+1])
		if sub == nil {
			break
		}
		cmd = sub
		i++
	}
	out := append([]string{}, args[:i+1]...)
	var flags, positional []string
	rest := args[i+1:]
	for k := 0; k < len(rest); k++ {
		a := rest[k]
		if a == "--" {
			positional = append(positional, rest[k:]...)
			break
		}
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			if takesValue(cmd.Flags, a) && k+1 < len(rest) {
				k++
				flags = append(flags, rest[k])
			}
			continue
		}
		positional = append(positional, a)
	}
	out = append(out, flags...)
	return append(out, positional...)
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
		for _, alias := range c.Aliases {
			if alias == name {
				return c
			}
		}
	}
	return nil
}

// takesValue reports whether arg names a flag that takes a separate value ("--broker URL" but not
// "--broker=URL" or a boolean "--wait").
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if bf, ok := f.(*cli.BoolFlag); ok && bf != nil {
				return false
			}
			return true
		}
	}
	return false
}
