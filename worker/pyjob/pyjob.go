// Package pyjob runs Python jobs: classes written as MARVELO's users write them (a PythonJob with
// setup and run), named in a document by "python": {"class": "module:Class"}. The Python package
// `marvelo` (PythonJob, LocalJob, Head, the runner and marvelo.testing, and the `fission` shim so
// modules written for the original import unchanged) lives in python/ and is embedded in the
// worker binary: Install writes it to disk once per content, so a worker machine needs nothing but
// an interpreter.
//
// A Python job runs as an executable job whose program is the runner (`python -m marvelo.runner`):
// the same adapter, round engine, acknowledgements and failover as every executable. The streams
// always carry heads (the job sees self.head, and answers a round it skips with the corrupted bit),
// and each input block carries its round's SQN, so an exception names the round it failed at. The
// runner's side of the contract is in python/marvelo/runner.py; docs/python-jobs.md is the
// author's guide.
package pyjob

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/execjob"
)

// packageFiles is the Python package the worker carries. Only the package folders are embedded,
// not python/tests.
//
//go:embed all:python/marvelo all:python/fission
var packageFiles embed.FS

// EnvInterpreter names the environment variable that picks the interpreter when neither the job
// nor the worker's --python does.
const EnvInterpreter = "MARVELO_PYTHON"

// EnvJob is the environment variable that hands the runner its job (JobSpec as JSON).
const EnvJob = "MARVELO_PYTHON_JOB"

// DefaultInterpreter is the interpreter looked up on PATH when nothing else names one.
const DefaultInterpreter = "python3"

// packageDigest is the hash of the embedded package's files: the name of its folder on disk.
var packageDigest = sync.OnceValues(func() (string, error) {
	h := sha256.New()
	err := walkPackage(func(path string, data []byte) error {
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(data))
		h.Write(data)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
})

// walkPackage calls fn with each file of the package, in a stable order, leaving out compiled
// files (a __pycache__ left in the source tree by a test run is not part of the package).
func walkPackage(fn func(path string, data []byte) error) error {
	return fs.WalkDir(packageFiles, "python", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "__pycache__" {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".pyc") {
			return nil
		}
		data, err := packageFiles.ReadFile(path)
		if err != nil {
			return err
		}
		return fn(strings.TrimPrefix(path, "python/"), data)
	})
}

// Install writes the embedded Python package under dir, once per content (dir/python-<digest>),
// and returns the folder to put on PYTHONPATH. Concurrent calls, in this process or others, are
// safe: the package is written to a temporary folder and renamed into place.
func Install(dir string) (string, error) {
	digest, err := packageDigest()
	if err != nil {
		return "", fmt.Errorf("python package: %w", err)
	}
	root := filepath.Join(dir, "python-"+digest)
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("python package: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".python-*")
	if err != nil {
		return "", fmt.Errorf("python package: %w", err)
	}
	defer os.RemoveAll(tmp) // nothing left once renamed
	err = walkPackage(func(path string, data []byte) error {
		file := filepath.Join(tmp, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		return os.WriteFile(file, data, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("python package: write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, root); err != nil {
		if _, statErr := os.Stat(root); statErr == nil {
			return root, nil // another job installed it first
		}
		return "", fmt.Errorf("python package: %w", err)
	}
	return root, nil
}

// Interpreter picks the interpreter of a Python job: the job's own "interpreter", else the
// worker's (--python), else $MARVELO_PYTHON, else python3. A bare name is looked up on PATH; the
// path found is used as it is, never resolved through symlinks, so a virtual environment's python
// keeps its environment. A relative path with a slash is taken against the worker's directory.
func Interpreter(job, worker string) (string, error) {
	name := job
	for _, n := range []string{worker, os.Getenv(EnvInterpreter), DefaultInterpreter} {
		if name == "" {
			name = n
		}
	}
	if !strings.ContainsRune(name, '/') {
		path, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("python interpreter %q is not on PATH (set the job's python.interpreter, the worker's --python or %s)", name, EnvInterpreter)
		}
		name = path
	}
	abs, err := filepath.Abs(name) // Abs cleans the path; it does not follow links
	if err != nil {
		return "", fmt.Errorf("python interpreter %s: %w", name, err)
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("python interpreter %s is not an executable file on this worker", abs)
	}
	return abs, nil
}

// checkScript verifies, in the interpreter itself, its version and that it imports every module
// named on its command line. It prints what is missing on one line.
const checkScript = `import importlib, sys
if sys.version_info < (3, 8):
    print("Python 3.8 or newer is needed, this is %d.%d" % sys.version_info[:2]); sys.exit(3)
missing = []
for m in sys.argv[1:]:
    try:
        importlib.import_module(m)
    except Exception as e:
        missing.append("%s (%s: %s)" % (m, type(e).__name__, e))
if missing:
    print("cannot import " + "; ".join(missing)); sys.exit(4)
`

// Checker tells whether an interpreter can run a Python job. Successes are remembered for the
// worker's life; a failure is checked again after a minute (a package may be installed since).
type Checker struct {
	mu   sync.Mutex
	seen map[string]checked
}

type checked struct {
	err error
	at  time.Time
}

// recheckFailure is how long a failed check is believed.
const recheckFailure = time.Minute

// Check runs the interpreter once with the modules the job requires. The error says which
// interpreter lacked what.
func (c *Checker) Check(ctx context.Context, interp string, requires []string) error {
	key := interp + "\x00" + strings.Join(requires, "\x00")
	c.mu.Lock()
	if r, ok := c.seen[key]; ok && (r.err == nil || time.Since(r.at) < recheckFailure) {
		c.mu.Unlock()
		return r.err
	}
	c.mu.Unlock()
	err := runCheck(ctx, interp, requires)
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]checked{}
	}
	c.seen[key] = checked{err: err, at: time.Now()}
	c.mu.Unlock()
	return err
}

func runCheck(ctx context.Context, interp string, requires []string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, interp, append([]string{"-c", checkScript}, requires...)...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if msg == "" {
		msg = err.Error()
	}
	if len(requires) > 0 {
		return fmt.Errorf("python interpreter %s (requires %s): %s", interp, strings.Join(requires, ", "), msg)
	}
	return fmt.Errorf("python interpreter %s: %s", interp, msg)
}

// classScript imports a job's module and looks its class up, as the runner will, and says on
// one line what failed.
const classScript = `import importlib, sys
module, name = sys.argv[1], sys.argv[2]
try:
    m = importlib.import_module(module)
except Exception as e:
    print("cannot import module %s (%s: %s)" % (module, type(e).__name__, e)); sys.exit(4)
if not isinstance(getattr(m, name, None), type):
    print("module %s (%s) has no class %s" % (module, getattr(m, "__file__", "?"), name)); sys.exit(4)
`

// classCheckTime bounds the class check: a module slower to import than this (scipy on a small
// board) is not refused for it; the job then reports an import failure itself when it starts.
const classCheckTime = 5 * time.Second

// CheckClass imports the job's module and finds its class with the job's interpreter and path,
// so that a job whose class cannot be loaded fails while it is prepared, before the pipeline
// reports running. A check that runs out of time passes. Successes are remembered per
// interpreter, import root content and class.
func (r *Runtime) CheckClass(ctx context.Context, spec execjob.Spec, class, rootKey string) error {
	module, name, _ := strings.Cut(class, ":")
	key := "class\x00" + spec.Exec.Path + "\x00" + rootKey + "\x00" + class
	if r.checker.passed(key) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, classCheckTime)
	defer cancel()
	cmd := exec.CommandContext(ctx, spec.Exec.Path, "-c", classScript, module, name)
	cmd.Dir, cmd.Env = spec.WorkDir, append(os.Environ(), spec.Env...)
	out, err := cmd.CombinedOutput()
	switch {
	case err == nil:
		r.checker.remember(key)
		return nil
	case ctx.Err() != nil:
		return nil // slow, not broken: the runner says so if it is
	}
	msg := strings.TrimSpace(string(out))
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%s (class %s, interpreter %s, import root %s)", msg, class, spec.Exec.Path, spec.WorkDir)
}

// passed reports whether key was checked with success.
func (c *Checker) passed(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.seen[key]
	return ok && r.err == nil
}

// remember records key as checked with success.
func (c *Checker) remember(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]checked{}
	}
	c.seen[key] = checked{at: time.Now()}
}

// PortSpec is one pipe as the runner sees it.
type PortSpec struct {
	Pipe       int    `json:"pipe"`
	Codec      string `json:"codec"`
	BlockSize  int    `json:"block_size"`
	BlockCount int    `json:"block_count"`
	Dtype      string `json:"dtype"`
}

// JobSpec is what the runner is told of its job, in $MARVELO_PYTHON_JOB.
type JobSpec struct {
	Job      int            `json:"job"`
	Name     string         `json:"name"`
	Pipeline string         `json:"pipeline"`
	Class    string         `json:"class"`
	Args     map[string]any `json:"args"`
	Arrays   string         `json:"arrays"`
	HeadSize int            `json:"head_size"`
	Inputs   []PortSpec     `json:"inputs"`
	Outputs  []PortSpec     `json:"outputs"`
}

// NewJobSpec describes a Python job's class and pipes for the runner.
func NewJobSpec(a *protocol.Assignment) JobSpec {
	j := &a.Job
	spec := JobSpec{
		Job: j.ID, Name: j.DisplayName(), Pipeline: a.Pipeline, Class: j.Python.Class, Args: j.Args,
		Arrays: j.Python.Arrays, HeadSize: j.EffectiveHeadSize(),
		Inputs: portSpecs(a.Inputs), Outputs: portSpecs(a.Outputs),
	}
	if spec.Args == nil {
		spec.Args = map[string]any{}
	}
	return spec
}

func portSpecs(bs []protocol.PipeBinding) []PortSpec {
	out := make([]PortSpec, len(bs))
	for k, b := range bs {
		out[k] = PortSpec{Pipe: b.ID, Codec: b.Codec, BlockSize: b.BlockSize, BlockCount: max(b.BlockCount, 1), Dtype: b.Dtype}
	}
	return out
}

// Runtime is what a worker needs to start Python jobs: where the package goes, the interpreter
// it was told to use, and the checks it has made.
type Runtime struct {
	// Dir holds the installed package (the worker's cache folder).
	Dir string
	// Interpreter is the worker's --python ("" for $MARVELO_PYTHON, then python3).
	Interpreter string
	checker     Checker
}

// CanRun says why this worker cannot run a Python job, if it cannot: no interpreter, or one that
// does not import what the job requires. It runs the interpreter (once per interpreter and
// module list).
func (r *Runtime) CanRun(ctx context.Context, py *pipeline.Python) error {
	interp, err := Interpreter(py.Interpreter, r.Interpreter)
	if err != nil {
		return err
	}
	return r.checker.Check(ctx, interp, py.Requires)
}

// Spec builds the executable spec that runs a Python job's class through the runner, in
// workDir (its import root: the unpacked dependencies, or the job's folder).
func (r *Runtime) Spec(a *protocol.Assignment, worker, workDir string) (execjob.Spec, error) {
	j := a.Job
	label := fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
	if j.Python == nil {
		return execjob.Spec{}, fmt.Errorf("%s: not a Python job", label)
	}
	interp, err := Interpreter(j.Python.Interpreter, r.Interpreter)
	if err != nil {
		return execjob.Spec{}, fmt.Errorf("%s: %w", label, err)
	}
	root, err := Install(r.Dir)
	if err != nil {
		return execjob.Spec{}, fmt.Errorf("%s: %w", label, err)
	}
	js, err := json.Marshal(NewJobSpec(a))
	if err != nil {
		return execjob.Spec{}, fmt.Errorf("%s: args: %w", label, err)
	}
	runner := *a
	runner.Job.Exec = &pipeline.Exec{Path: interp, Params: []string{"-m", "marvelo.runner"}, Mode: pipeline.ModeFD}
	spec, err := execjob.SpecFromAssignment(&runner, worker, workDir)
	if err != nil {
		return execjob.Spec{}, err
	}
	spec.Name = j.DisplayName()
	spec.Head, spec.InputSQN = true, true
	spec.Env = append(spec.Env,
		EnvJob+"="+string(js),
		"PYTHONPATH="+pythonPath(root, workDir),
	)
	return spec, nil
}

// pythonPath puts the package first, then the job's import root, then what the worker had.
func pythonPath(root, workDir string) string {
	parts := []string{root, workDir}
	if old := os.Getenv("PYTHONPATH"); old != "" {
		parts = append(parts, old)
	}
	return strings.Join(slices.Compact(parts), string(os.PathListSeparator))
}
