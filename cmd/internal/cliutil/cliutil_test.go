package cliutil_test

import (
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

// testApp has the shape of the marvelo commands: global flags, and subcommands with string, bool
// and int flags, aliases included.
func testApp(action func(*cli.Context) error) *cli.App {
	if action == nil {
		action = func(*cli.Context) error { return nil }
	}
	return &cli.App{
		Name:           "marvelo",
		Writer:         io.Discard,
		ErrWriter:      io.Discard,
		ExitErrHandler: cliutil.HandleExitError,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}},
		},
		Commands: []*cli.Command{
			{
				Name:    "submit",
				Aliases: []string{"s"},
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "broker", Aliases: []string{"b"}},
					&cli.BoolFlag{Name: "wait"},
					&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}},
					&cli.IntFlag{Name: "job"},
				},
				Action: action,
			},
			{
				Name:   "logs",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "token", Required: true}},
				Action: action,
			},
			{Name: "run", Action: action},
		},
	}
}

func TestFlagsFirst(t *testing.T) {
	tests := []struct {
		name string
		args string
		want string
	}{
		{"flag after the file", "marvelo submit p.cbor --wait", "marvelo submit --wait p.cbor"},
		{"already first", "marvelo submit --wait p.cbor", "marvelo submit --wait p.cbor"},
		{"value flag first", "marvelo submit --broker URL p.cbor", "marvelo submit --broker URL p.cbor"},
		{"value flag after", "marvelo submit p.cbor --broker URL", "marvelo submit --broker URL p.cbor"},
		{"value flag with =", "marvelo submit p.cbor --broker=URL", "marvelo submit --broker=URL p.cbor"},
		{"short alias with value", "marvelo submit p.cbor -b URL --wait", "marvelo submit -b URL --wait p.cbor"},
		{"bool alias", "marvelo submit p.cbor -f", "marvelo submit -f p.cbor"},
		{"bool with =", "marvelo submit p.cbor --wait=false", "marvelo submit --wait=false p.cbor"},
		{"int flag", "marvelo submit p.cbor --job 3 q.cbor", "marvelo submit --job 3 p.cbor q.cbor"},
		{"value that looks like a flag", "marvelo submit p.cbor --broker -x", "marvelo submit --broker -x p.cbor"},
		{"mixed", "marvelo submit a --wait b --broker URL c -f", "marvelo submit --wait --broker URL -f a b c"},
		{"stdin dash is positional", "marvelo submit - --wait", "marvelo submit --wait -"},
		{"-- stops", "marvelo submit p.cbor -- --wait", "marvelo submit p.cbor -- --wait"},
		{"-- keeps the rest in place", "marvelo submit p.cbor --wait -- -f x", "marvelo submit --wait p.cbor -- -f x"},
		{"command alias", "marvelo s p.cbor --wait", "marvelo s --wait p.cbor"},
		{"unknown subcommand untouched", "marvelo frob p.cbor --wait", "marvelo frob p.cbor --wait"},
		{"global flags before the subcommand", "marvelo --config c.toml -v submit p.cbor --wait", "marvelo --config c.toml -v submit --wait p.cbor"},
		{"global flag with =", "marvelo --config=c.toml submit p.cbor --wait", "marvelo --config=c.toml submit --wait p.cbor"},
		{"global flags only", "marvelo --verbose", "marvelo --verbose"},
		{"global value flag without a command", "marvelo --config submit", "marvelo --config submit"},
		{"no arguments", "marvelo", "marvelo"},
		{"subcommand alone", "marvelo submit", "marvelo submit"},
		{"-- before the subcommand", "marvelo -- submit p.cbor --wait", "marvelo -- submit p.cbor --wait"},
		{"unknown flag moves too", "marvelo submit p.cbor --nope", "marvelo submit --nope p.cbor"},
	}
	app := testApp(nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := strings.Fields(tt.args)
			orig := append([]string(nil), args...)
			got := cliutil.FlagsFirst(app, args)
			if want := strings.Fields(tt.want); !reflect.DeepEqual(got, want) {
				t.Errorf("FlagsFirst(%q) = %q, want %q", tt.args, got, want)
			}
			if !reflect.DeepEqual(args, orig) {
				t.Errorf("FlagsFirst changed its argument to %q", args)
			}
		})
	}
}

// TestFlagsFirstParses runs the reordered arguments through urfave/cli, as main does.
func TestFlagsFirstParses(t *testing.T) {
	tests := []struct {
		args       string
		wantBroker string
		wantWait   bool
		wantFollow bool
		wantArgs   []string
	}{
		{"marvelo submit p.cbor --wait", "", true, false, []string{"p.cbor"}},
		{"marvelo submit --broker nats://h:4222 p.cbor", "nats://h:4222", false, false, []string{"p.cbor"}},
		{"marvelo submit p.cbor --broker nats://h:4222 --wait -f", "nats://h:4222", true, true, []string{"p.cbor"}},
		{"marvelo submit p.cbor --broker=nats://h --follow", "nats://h", false, true, []string{"p.cbor"}},
		{"marvelo -v submit p.cbor q.cbor --wait", "", true, false, []string{"p.cbor", "q.cbor"}},
		{"marvelo submit --wait -- -p.cbor", "", true, false, []string{"-p.cbor"}},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			var ran bool
			app := testApp(func(c *cli.Context) error {
				ran = true
				if got := c.String("broker"); got != tt.wantBroker {
					t.Errorf("broker = %q, want %q", got, tt.wantBroker)
				}
				if got := c.Bool("wait"); got != tt.wantWait {
					t.Errorf("wait = %v, want %v", got, tt.wantWait)
				}
				if got := c.Bool("follow"); got != tt.wantFollow {
					t.Errorf("follow = %v, want %v", got, tt.wantFollow)
				}
				if got := c.Args().Slice(); !reflect.DeepEqual(got, tt.wantArgs) {
					t.Errorf("args = %q, want %q", got, tt.wantArgs)
				}
				return nil
			})
			if err := app.Run(cliutil.FlagsFirst(app, strings.Fields(tt.args))); err != nil {
				t.Fatal(err)
			}
			if !ran {
				t.Error("the action did not run")
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, cliutil.ExitOK},
		{"cli.Exit 2", cli.Exit("bad", 2), 2},
		{"cli.Exit 130", cli.Exit("", cliutil.ExitSignaled), 130},
		{"cli.Exit 0", cli.Exit("", 0), 0},
		{"cli.Exit 7", cli.Exit("x", 7), 7},
		{"UsageError", cliutil.UsageError(errors.New("no file")), cliutil.ExitUsage},
		{"Failure", cliutil.Failure(errors.New("job failed")), cliutil.ExitFailure},
		{"wrapped exit coder", fmt.Errorf("context: %w", cli.Exit("x", 3)), 3},
		{"plain error", errors.New("connection refused"), cliutil.ExitFailure},
		{"wrapped plain error", fmt.Errorf("submit: %w", errors.New("boom")), cliutil.ExitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cliutil.ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestUsageAndFailureMessages(t *testing.T) {
	if got := cliutil.UsageError(errors.New("no file")).Error(); got != "no file" {
		t.Errorf("UsageError message %q", got)
	}
	if got := cliutil.Failure(errors.New("job failed")).Error(); got != "job failed" {
		t.Errorf("Failure message %q", got)
	}
}

// TestExitCodeOfUsageErrors runs the app on bad command lines: urfave/cli's own errors must map
// to exit code 2.
func TestExitCodeOfUsageErrors(t *testing.T) {
	tests := []struct {
		args string
		want int
	}{
		{"marvelo submit --nope p.cbor", cliutil.ExitUsage},
		{"marvelo submit p.cbor --nope", cliutil.ExitUsage},
		{"marvelo --nope submit p.cbor", cliutil.ExitUsage},
		{"marvelo submit --broker", cliutil.ExitUsage},
		{"marvelo submit --job x p.cbor", cliutil.ExitUsage},
		{"marvelo submit p.cbor --job 1.5", cliutil.ExitUsage},
		{"marvelo submit --wait=maybe p.cbor", cliutil.ExitUsage},
		{"marvelo submit ---wait p.cbor", cliutil.ExitUsage},
		{"marvelo logs p1", cliutil.ExitUsage},
		{"marvelo frobnicate", cliutil.ExitUsage},
		{"marvelo submit p.cbor --wait", cliutil.ExitOK},
		{"marvelo logs p1 --token t", cliutil.ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			app := testApp(nil)
			err := app.Run(cliutil.FlagsFirst(app, strings.Fields(tt.args)))
			if tt.want == cliutil.ExitOK && err != nil {
				t.Fatalf("Run: %v", err)
			}
			if got := cliutil.ExitCode(err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", err, got, tt.want)
			}
		})
	}
}
