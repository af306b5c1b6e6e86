package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
)

// runCmd runs `marvelo ARGS...` in process with the given commands and returns the exit code.
func runCmd(t *testing.T, cmds []*cli.Command, args ...string) int {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{Name: "marvelo", Commands: cmds, Writer: &out, ErrWriter: &out, ExitErrHandler: cliutil.HandleExitError}
	if err := app.Run(cliutil.FlagsFirst(app, append([]string{"marvelo"}, args...))); err != nil {
		return cliutil.ExitCode(err)
	}
	return 0
}

func TestInitMakesAProject(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "myproj")
	if code := runCmd(t, []*cli.Command{initCommand()}, "init", dir, "--marvelo", "../.."); code != 0 {
		t.Fatalf("init: exit %d", code)
	}
	for file, want := range map[string]string{
		"go.mod":        "module myproj",
		"main.go":       "command.Main(reg, local.RunCommand(reg))",
		"pipeline.json": `"name": "myproj"`,
		"Makefile":      "$(GO) build -o bin/worker .",
	} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s: %v; lacks %q:\n%s", file, err, want, b)
		}
	}
	mod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if !strings.Contains(string(mod), "replace github.com/marvelo/marvelo => ") {
		t.Errorf("go.mod has no replace directive for --marvelo:\n%s", mod)
	}
	// The pipeline it writes is valid, its own job type aside (the project's worker has it).
	if code := runCmd(t, []*cli.Command{initCommand()}, "init", dir); code != cliutil.ExitUsage {
		t.Errorf("init into a folder that is not empty: exit %d, want 2", code)
	}
}

func TestOperationsNeedTheirArguments(t *testing.T) {
	cmds := []*cli.Command{submitCommand(), statusCommand(), stopCommand(), resetCommand(), logsCommand(), local.RunCommand(registry)}
	for _, args := range [][]string{
		{"submit"}, {"stop"}, {"reset"}, {"logs"}, {"run"},
		{"status", "a", "b"},
		{"reset", "p", "--at", "tomorrow"},
		{"submit", "/nonexistent/pipeline.json"},
	} {
		if code := runCmd(t, cmds, args...); code != cliutil.ExitUsage {
			t.Errorf("marvelo %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}
