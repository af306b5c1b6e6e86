package pyjob

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// interpreter is the one the tests run: $MARVELO_PYTHON (the Makefile sets Debian's, which sees
// python3-numpy and python3-cbor2), else python3 on PATH.
func interpreter(t *testing.T) string {
	t.Helper()
	interp, err := Interpreter("", "")
	if err != nil {
		t.Skipf("no Python here: %v", err)
	}
	return interp
}

func TestInstallWritesThePackageOncePerContent(t *testing.T) {
	dir := t.TempDir()
	roots := make([]string, 4)
	var wg sync.WaitGroup
	for i := range roots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			root, err := Install(dir)
			if err != nil {
				t.Error(err)
			}
			roots[i] = root
		}()
	}
	wg.Wait()
	for _, r := range roots[1:] {
		if r != roots[0] {
			t.Fatalf("Install gave %s and %s", roots[0], r)
		}
	}
	for _, f := range []string{"marvelo/__init__.py", "marvelo/runner.py", "fission/core/jobs.py"} {
		if _, err := os.Stat(filepath.Join(roots[0], f)); err != nil {
			t.Errorf("package file %s: %v", f, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("the cache holds %d entries, want the one package folder (no temporary folder left)", len(entries))
	}
}

func TestInterpreterKeepsAVirtualEnvironmentsSymlink(t *testing.T) {
	real := interpreter(t)
	venv := filepath.Join(t.TempDir(), "venv", "bin")
	if err := os.MkdirAll(venv, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(venv, "python")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	got, err := Interpreter(link, "")
	if err != nil {
		t.Fatal(err)
	}
	if got != link {
		t.Fatalf("Interpreter(%s) = %s, want the link itself (a venv's python must stay the venv's)", link, got)
	}
}

func TestInterpreterPrefersTheJobThenTheWorkerThenTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	job, worker, env := mk("job-python"), mk("worker-python"), mk("env-python")
	t.Setenv(EnvInterpreter, env)
	for _, c := range []struct{ job, worker, want string }{
		{job, worker, job}, {"", worker, worker}, {"", "", env},
	} {
		if got, err := Interpreter(c.job, c.worker); err != nil || got != c.want {
			t.Errorf("Interpreter(%q, %q) = %q, %v; want %q", c.job, c.worker, got, err, c.want)
		}
	}
	if _, err := Interpreter(filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing interpreter: %v", err)
	}
}

func TestCheckNamesTheInterpreterAndTheModuleItCannotImport(t *testing.T) {
	interp := interpreter(t)
	var c Checker
	err := c.Check(context.Background(), interp, []string{"json", "no_such_module_marvelo"})
	if err == nil {
		t.Fatal("a missing module passed the check")
	}
	for _, want := range []string{interp, "no_such_module_marvelo", "ModuleNotFoundError"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if err := c.Check(context.Background(), interp, []string{"json"}); err != nil {
		t.Errorf("json: %v", err)
	}
}

func TestCheckFilesNamesAMissingFolderAndAMissingModule(t *testing.T) {
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "src", "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"src/jobs.py", "src/pkg/__init__.py"} {
		if err := os.WriteFile(filepath.Join(base, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	job := func(class, deps string) *pipeline.Job {
		return &pipeline.Job{ID: 3, Python: &pipeline.Python{Class: class, Dependencies: deps}}
	}
	for _, c := range []struct {
		job  *pipeline.Job
		want string // "" for no problem
	}{
		{job("jobs:Sum", "src"), ""},
		{job("pkg:Sum", "src"), ""},
		{job("pkg.inner:Sum", "src"), "module pkg.inner of class pkg.inner:Sum is not in the dependencies folder"},
		{job("jobs:Sum", "nowhere"), "dependencies folder " + filepath.Join(base, "nowhere") + " can't be found"},
		{job("jobs:Sum", ""), ""},
	} {
		probs := CheckFiles(base, c.job, 0)
		switch {
		case c.want == "" && len(probs) > 0:
			t.Errorf("%s in %q: %v", c.job.Python.Class, c.job.Python.Dependencies, probs)
		case c.want != "" && (len(probs) != 1 || !strings.Contains(probs[0].Message, c.want)):
			t.Errorf("%s in %q: %v, want %q", c.job.Python.Class, c.job.Python.Dependencies, probs, c.want)
		}
	}
}

// TestPythonPackageUnitTests runs the Python package's own tests (python/tests, unittest) with
// the interpreter the jobs would get, so they are part of make test.
func TestPythonPackageUnitTests(t *testing.T) {
	interp := interpreter(t)
	cmd := exec.Command(interp, "-m", "unittest", "discover", "-s", "tests")
	cmd.Dir = "python"
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -m unittest: %v\n%s", interp, err, out)
	}
	t.Logf("%s", lastLines(string(out), 3))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
