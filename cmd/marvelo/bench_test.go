package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

// The bench's engine and its tests are in cmd/internal/bench; these check the command line.

// runBench runs `marvelo bench ARGS...` in process, the way main does.
func runBench(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{
		Name:           "marvelo",
		Commands:       []*cli.Command{benchCommand()},
		Writer:         &stdout,
		ErrWriter:      &stderr,
		ExitErrHandler: cliutil.HandleExitError,
	}
	r := result{}
	if err := app.Run(cliutil.FlagsFirst(app, append([]string{"marvelo", "bench"}, args...))); err != nil {
		stderr.WriteString("marvelo: " + err.Error() + "\n")
		r.code = cliutil.ExitCode(err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func TestBenchTable(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	r := runBench(t, "--quick", "--count", "2000", "--rate", "2000", "--stages", "2", "linear")
	r.want(t, 0, "THROUGHPUT", "LATENCY", "linear (2 forwards)", "64 B", "2,000", "p99.9 ms")
	if strings.Contains(r.stdout, "fanin") || strings.Contains(r.stdout, "core") {
		t.Errorf("table has rows or columns not asked for:\n%s", r.stdout)
	}
}

func TestBenchStagesListRunsLinearOncePerCount(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	r := runBench(t, "--quick", "--count", "0", "--rate", "2000", "--stages", "1,3", "linear")
	r.want(t, 0, "LATENCY", "linear (1 forward)", "linear (3 forwards)")
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nosuch"}, `unknown scenario "nosuch"`},
		{[]string{"--size", "4"}, "block size 4"},
		{[]string{"--size", "64", "--sizes", "8,64"}, "not both"},
		{[]string{"--sizes", "8,x"}, `"x" is not a number`},
		{[]string{"--rate", "-5"}, "rate -5"},
		{[]string{"--count", "0", "--rate", "0"}, "nothing to measure"},
		{[]string{"--runs", "0"}, "--runs 0"},
		{[]string{"--stages", "-1"}, "--stages -1"},
		{[]string{"--stages", "1,x"}, `--stages "1,x"`},
		{[]string{"--qos", "best"}, `--qos "best"`},
		{[]string{"--codec", "xml"}, `--codec "xml"`},
		{[]string{"chain", "--broker", "nats://127.0.0.1:4222"}, "chain measures chaining on the one embedded worker"},
	} {
		r := runBench(t, tc.args...)
		if r.code != cliutil.ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("bench %v: exit %d, stderr %q; want exit %d and %q", tc.args, r.code, r.stderr, cliutil.ExitUsage, tc.want)
		}
	}
}

func TestBenchHelp(t *testing.T) {
	r := runBench(t, "--help")
	r.want(t, 0, "linear", "fanin", "exec", "--baseline", "--broker", "--sizes", "--rate", "--quick", "--cpuprofile", "Examples:",
		"jobs spread: every hop through the broker", "broker B/block", "marvelo bench chain --sizes 64,4096 --baseline")
}
