package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestInitProjectWorksOnItsOwn is the new user's loop: init a project, then its own make test,
// make validate and make run, from a bare environment (PATH without go or marvelo, the Go module
// proxy off: the project builds offline against this source tree), and a change to the Go job
// shows in make test and make run.
func TestInitProjectWorksOnItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a project")
	}
	if raceEnabled {
		t.Skip("runs separate processes: nothing for the race detector")
	}
	for _, tool := range []string{"make", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	dir := filepath.Join(t.TempDir(), "demo")
	if code := runCmd(t, []*cli.Command{initCommand()}, "init", dir, "--marvelo", "../.."); code != 0 {
		t.Fatalf("init: exit %d", code)
	}
	home, _ := os.UserHomeDir()
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + home, "GOPROXY=off", "GOFLAGS=-mod=readonly"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "TMPDIR"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	make := func(target string) string {
		t.Helper()
		cmd := exec.Command("make", "-s", target)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", target, err, out)
		}
		return string(out)
	}
	if out := make("test"); !strings.Contains(out, "test_adds_to_every_value") || !strings.Contains(out, "\nOK") || !strings.Contains(out, "ok  \tdemo") {
		t.Errorf("make test did not run both the Go and the Python tests:\n%s", out)
	}
	if out := make("validate"); !strings.Contains(out, "pipeline.json: ok (4 jobs, 3 pipes)") {
		t.Errorf("make validate:\n%s", out)
	}
	if out := make("run"); !strings.Contains(out, "csv_sink 4 | 26") || !strings.Contains(out, "pipeline demo finished") {
		t.Errorf("make run lacks the last row 26 = 10 × 2.5 + 1:\n%s", out)
	}

	// Change the Go job: multiply by factor, then add 100.
	main := filepath.Join(dir, "main.go")
	src, err := os.ReadFile(main)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(src), "return s.Factor * x, nil", "return s.Factor*x + 100, nil", 1)
	if changed == string(src) {
		t.Fatal("main.go has no line to change")
	}
	if err := os.WriteFile(main, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("make", "-s", "test")
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "TestScale") {
		t.Errorf("make test after the change: %v, want TestScale to fail:\n%s", err, out)
	}
	if out := make("run"); !strings.Contains(out, "csv_sink 4 | 126") {
		t.Errorf("make run after the change lacks 126 = 10 × 2.5 + 100 + 1:\n%s", out)
	}
}
