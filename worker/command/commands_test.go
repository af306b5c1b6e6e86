package command_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker/command"
)

type gain struct {
	DB float64 `json:"db" marvelo:"required,min=-60,max=60" help:"gain in decibels"`
}

func (g *gain) Run(ctx *job.Context, x float64) (float64, error) { return x, nil }

func appRun(t *testing.T, args ...string) (string, int) {
	t.Helper()
	reg := builtin.Registry()
	reg.Register("gain", "amplifies", func() any { return &gain{} })
	app := command.App(reg)
	var out bytes.Buffer
	app.Writer = &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.Run(append([]string{"myworker"}, args...))
	code := 0
	var coder cli.ExitCoder
	if errors.As(err, &coder) {
		code = coder.ExitCode()
	} else if err != nil {
		code = 1
	}
	return out.String(), code
}

func TestWorkerValidatesAgainstItsOwnTypes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(good, []byte(`{"name": "p", "jobs": [{"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
		{"id": 2, "type": "gain", "args": {"db": 6}, "inputs": [1], "outputs": [2]}, {"id": 3, "type": "discard", "inputs": [2]}]}`), 0o644)
	os.WriteFile(bad, []byte(`{"name": "p", "jobs": [{"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
		{"id": 2, "type": "gain", "args": {"db": 99}, "inputs": [1], "outputs": [2]}, {"id": 3, "type": "discard", "inputs": [2]}]}`), 0o644)
	if out, code := appRun(t, "validate", good); code != 0 || !strings.Contains(out, "ok (3 jobs, 2 pipes)") {
		t.Errorf("validate good: %d %s", code, out)
	}
	if out, code := appRun(t, "validate", bad); code != 2 || !strings.Contains(out, `jobs[1].args.db: job 2 (gain): arg "db": 99 is out of range: must be at most 60`) {
		t.Errorf("validate bad: %d %s", code, out)
	}
	if _, code := appRun(t, "validate", filepath.Join(dir, "missing.json")); code != 2 {
		t.Errorf("validate missing file: exit %d, want 2", code)
	}
}

func TestWorkerListsItsTypes(t *testing.T) {
	out, code := appRun(t, "types")
	if code != 0 || !strings.Contains(out, "gain — amplifies") || !strings.Contains(out, "db  number -60..60  required  gain in decibels") {
		t.Errorf("types: %d\n%s", code, out)
	}
}
