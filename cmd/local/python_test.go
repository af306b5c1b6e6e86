package local

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// Python jobs end to end: classes written as MARVELO's users write them (imported through the
// fission shim), run by the worker's Python runner between Go jobs, each result checked at the
// sink.

// marveloJobs is a job module in the original's style, beside the seed page's examples
// (testdata/python/seed/src/seed.py, copied into the project by pythonProject).
const marveloJobs = `import marvelo
from fission.core.jobs import PythonJob, LocalJob

from seed import CountJob, SumJob, MultiplySumJob, LocalMultiplySumJob  # the seed page's examples


class Scale(PythonJob):
    def __init__(self, factor=1, outputs=None, **kwargs):
        self.factor = factor
        super().__init__(outputs=outputs, **kwargs)

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        self.rounds = 0

    def run(self, value):
        self.rounds += 1
        return value * self.factor


class Reduce(PythonJob):
    def run(self, values):
        return sum(values)


class OddOnly(PythonJob):
    def run(self, value):
        if value % 2 == 0:
            return None
        return value


class Operator(PythonJob):
    """An operator's source that has nothing to say: the optional pipe keeps its default."""

    def run(self):
        return
        yield


class UpToThree(PythonJob):
    def run(self, value):
        if value > 3:
            raise marvelo.End
        return value


class Apply(PythonJob):
    def run(self, value, factor):
        return value * factor


class Boom(PythonJob):
    def run(self, value):
        if value == 3:
            return 1 / 0
        return value
`

// numpyJobs moves arrays of 100,000 float64 values.
const numpyJobs = `import numpy as np
from marvelo import PythonJob

N = 100_000


def expected(i):
    return np.arange(N, dtype=np.float64) * 0.5 + i


class Arrays(PythonJob):
    def run(self):
        for i in range(1, 4):
            if i == 3:
                self.finish()
            yield expected(i)


class Twice(PythonJob):
    def run(self, v):
        return v * 2.0


class Check(PythonJob):
    def __init__(self, path, **kwargs):
        super().__init__(**kwargs)
        self.path = path

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        self.out = open(self.path, "w")
        self.i = 0

    def run(self, v):
        self.i += 1
        ok = isinstance(v, np.ndarray) and v.dtype == np.float64 and np.array_equal(v, expected(self.i) * 2.0)
        self.out.write("%d,%d,%s\n" % (self.i, len(v), ok))
        self.out.flush()
`

// pythonProject writes a module into a dependencies folder of a fresh project folder.
func pythonProject(t *testing.T, module, source string) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "src")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, module+".py"), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	seed, err := os.ReadFile("../../testdata/python/seed/src/seed.py")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed.py"), seed, 0o644); err != nil {
		t.Fatal(err)
	}
	return base
}

// needPython skips when this machine has no interpreter for Python jobs, and when one of modules
// is not importable by it; under CI a missing interpreter or module fails instead (.ci/run
// installs them).
func needPython(t *testing.T, modules ...string) {
	t.Helper()
	interp, err := pyjob.Interpreter("", "")
	if err == nil && len(modules) > 0 {
		err = exec.Command(interp, "-c", "import "+strings.Join(modules, ", ")).Run()
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("Python jobs need an interpreter with %v here: %v", modules, err)
	}
	t.Skipf("no Python interpreter with %v: %v", modules, err)
}

func py(class string) *pipeline.Python {
	return &pipeline.Python{Class: class, Dependencies: "src"}
}

func TestPythonJobsWrittenForMARVELORunUnchanged(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	sums, reduced, products := filepath.Join(base, "sums.csv"), filepath.Join(base, "reduced.csv"), filepath.Join(base, "products.csv")
	p := &pipeline.Pipeline{Name: "marvelo-jobs", Jobs: []pipeline.Job{
		// A generator source with two outputs, joined again by a two-input job.
		{ID: 1, Python: py("jobs:CountJob"), Outputs: []int{1, 2}},
		{ID: 2, Python: py("jobs:SumJob"), Inputs: []int{1, 2}, Outputs: []int{3}},
		{ID: 3, Type: "csv_sink", Args: map[string]any{"path": sums}, Inputs: []int{3}},
		// A Go source, a constructor with keywords, a block_count reducer.
		{ID: 4, Type: "counter", Args: map[string]any{"count": 20}, Outputs: []int{4}},
		{ID: 5, Python: py("jobs:Scale"), Args: map[string]any{"factor": 2.5}, Inputs: []int{4}, Outputs: []int{5}},
		{ID: 6, Python: py("jobs:Reduce"), Inputs: []int{5}, Outputs: []int{6}},
		{ID: 7, Type: "csv_sink", Args: map[string]any{"path": reduced}, Inputs: []int{6}},
		// A variadic run in a class inheriting LocalJob first.
		{ID: 8, Type: "counter", Args: map[string]any{"count": 4}, Outputs: []int{8}},
		{ID: 9, Type: "counter", Args: map[string]any{"count": 4}, Outputs: []int{9}},
		{ID: 10, Type: "counter", Args: map[string]any{"count": 4}, Outputs: []int{10}},
		{ID: 11, Python: py("jobs:LocalMultiplySumJob"), Inputs: []int{8, 9, 10}, Outputs: []int{11}},
		{ID: 12, Type: "csv_sink", Args: map[string]any{"path": products}, Inputs: []int{11}},
	}, Pipes: []pipeline.Pipe{{ID: 5, BlockCount: 5}}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := csvLines(t, sums), "pipe_3"+strings.Repeat(" 31", 30); got != want {
		t.Errorf("sums: %s, want %s", got, want)
	}
	// Sums of five of 2.5·i.
	if got, want := csvLines(t, reduced), "pipe_6 37.5 100 162.5 225"; got != want {
		t.Errorf("reduced: %s, want %s", got, want)
	}
	// i × (i + i).
	if got, want := csvLines(t, products), "pipe_11 2 8 18 32"; got != want {
		t.Errorf("products: %s, want %s", got, want)
	}
}

func TestPythonJobReturningNoneLeavesAnExactDummy(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "python-none", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 6}, Outputs: []int{1}},
		{ID: 2, Python: py("jobs:OddOnly"), Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{2}},
	}}
	st, err := runInDir(t, env, p, base)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	// A dummy is the zero value shaped like the block before it (as for a Go job's ErrSkip).
	if got, want := csvLines(t, out), "pipe_2 1 0 3 0 5 0"; got != want {
		t.Errorf("csv: %s, want %s", got, want)
	}
	for _, j := range st.Jobs {
		if j.ID == 3 && j.Stats.Dummies != 3 {
			t.Errorf("the sink counted %d dummies, want 3 (one per round returning None)", j.Stats.Dummies)
		}
	}
}

func TestPythonJobExceptionNamesTheJobTheRoundAndTheError(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "python-boom", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 6}, Outputs: []int{1}},
		{ID: 2, Python: py("jobs:Boom"), Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "discard", Inputs: []int{2}},
	}}
	_, err := runInDir(t, env, p, base)
	if err == nil {
		t.Fatal("a job raising ZeroDivisionError finished")
	}
	t.Logf("the error: %v", err)
	for _, want := range []string{"job 2 (Boom)", "SQN 3", "ZeroDivisionError", "1 / 0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
}

func TestPythonJobRequiringAMissingModuleIsPlacedNowhere(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	job := py("jobs:Scale")
	job.Requires = []string{"no_such_module_marvelo"}
	p := &pipeline.Pipeline{Name: "python-requires", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 6}, Outputs: []int{1}},
		{ID: 2, Python: job, Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "discard", Inputs: []int{2}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := env.RunPipeline(ctx, p.Name, encode(t, p), Options{BaseDir: base})
		done <- err
	}()
	// The pipeline waits, degraded, for a worker that can run the job; its reason names the module.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var reason string
	for !strings.Contains(reason, "no_such_module_marvelo") {
		select {
		case err := <-done:
			t.Fatalf("the run ended (%v) before saying why job 2 could not be placed", err)
		case <-ctx.Done():
			t.Fatalf("no reason naming the missing module; the last was %q", reason)
		case <-tick.C:
		}
		if sts, err := env.Client.Status(ctx, p.Name); err == nil && len(sts) == 1 {
			reason = sts[0].Reason
			for _, j := range sts[0].Jobs {
				if j.ID == 2 && j.Worker != "" {
					t.Fatalf("job 2 was placed on %s although its interpreter lacks the module it requires", j.Worker)
				}
			}
		}
	}
	cancel()
	<-done
}

func TestNumpyArraysOf100kFloatsCrossFiveJobsExactly(t *testing.T) {
	needPython(t, "numpy")
	base := pythonProject(t, "arrays", numpyJobs)
	env := startEnv(t, nil)
	out := filepath.Join(base, "check.csv")
	np := func(class string) *pipeline.Python {
		return &pipeline.Python{Class: class, Dependencies: "src", Arrays: pipeline.ArraysNumpy, Requires: []string{"numpy"}}
	}
	p := &pipeline.Pipeline{Name: "python-numpy", Jobs: []pipeline.Job{
		{ID: 1, Python: np("arrays:Arrays"), Outputs: []int{1}},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Python: np("arrays:Twice"), Inputs: []int{2}, Outputs: []int{3}},
		{ID: 4, Type: "forward", Inputs: []int{3}, Outputs: []int{4}},
		{ID: 5, Python: np("arrays:Check"), Args: map[string]any{"path": out}, Inputs: []int{4}},
	}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := csvLines(t, out), "1,100000,True 2,100000,True 3,100000,True"; got != want {
		t.Errorf("check: %s, want %s", got, want)
	}
}

// TestPythonJobWhoseClassCannotBeLoadedFailsBeforeAnyJobRuns: a class missing from its module
// is found while the job is prepared, so the pipeline fails before it runs (the counter before
// it never sends a block), with an error naming the module, the class and the interpreter.
func TestPythonJobWhoseClassCannotBeLoadedFailsBeforeAnyJobRuns(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "python-noclass", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 6}, Outputs: []int{1}},
		{ID: 2, Python: py("jobs:Nope"), Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "discard", Inputs: []int{2}},
	}}
	st, err := runInDir(t, env, p, base)
	if err == nil {
		t.Fatal("a pipeline whose class does not exist ran")
	}
	interp, _ := pyjob.Interpreter("", "")
	for _, want := range []string{"job 2 (Nope)", "module jobs", "has no class Nope", interp} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q:\n%v", want, err)
		}
	}
	for _, j := range st.Jobs {
		if j.Stats.BlocksOut > 0 {
			t.Errorf("job %d sent %d blocks: the pipeline ran", j.ID, j.Stats.BlocksOut)
		}
	}
}

// TestPythonJobWithAnOptionalOperatorPipeUsesItsDefault: a job whose second input is an optional
// pipe (an operator's parameter, as MARVELO's OptionalMixIn pipes) runs every round on the
// pipe's default while the operator sends nothing, and the pipeline still finishes.
func TestPythonJobWithAnOptionalOperatorPipeUsesItsDefault(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "python-optional", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 10}, Outputs: []int{1}},
		{ID: 2, Python: py("jobs:Operator"), Outputs: []int{2}},
		{ID: 3, Python: py("jobs:Apply"), Inputs: []int{1, 2}, Outputs: []int{3}},
		{ID: 4, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{3}},
	}, Pipes: []pipeline.Pipe{{ID: 2, Optional: &pipeline.Optional{Default: 3}}}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := csvLines(t, out), "pipe_3 3 6 9 12 15 18 21 24 27 30"; got != want {
		t.Errorf("csv: %s, want %s", got, want)
	}
}

// TestPythonJobRaisingEndEndsWithTheRoundsBefore: marvelo.End ends a connector at once: its
// sink gets the rounds before and the pipeline finishes, however many rounds were given to the
// program after the one that raised it.
func TestPythonJobRaisingEndEndsWithTheRoundsBefore(t *testing.T) {
	needPython(t)
	base := pythonProject(t, "jobs", marveloJobs)
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "python-end", Jobs: []pipeline.Job{
		// More rounds than a program may hold unanswered (16384): the engine, blocked on the full
		// queue of a program that has exited, must notice the exit.
		{ID: 1, Type: "counter", Args: map[string]any{"count": 20000}, Outputs: []int{1}},
		{ID: 2, Python: py("jobs:UpToThree"), Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{2}},
	}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := csvLines(t, out), "pipe_2 1 2 3"; got != want {
		t.Errorf("csv: %s, want %s", got, want)
	}
}
