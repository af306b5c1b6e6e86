//go:build linux

package execjob

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// TestStdoutAndStderrLinesComeInTheOrderWritten: a Python program prints to stdout (print, no
// flush) and to stderr in turn, each line once the one before has left its pipe (FIONREAD 0 on
// the pipe: the worker has read it). The lines reach the log in the order printed: Python's
// stdout is not block-buffered (PYTHONUNBUFFERED), and one reader hands the two streams' lines
// on in the order it read them.
func TestStdoutAndStderrLinesComeInTheOrderWritten(t *testing.T) {
	py := pythonPath(t)
	t.Setenv("PYTHONUNBUFFERED", "") // restored after the test; unset meanwhile, as on most machines
	os.Unsetenv("PYTHONUNBUFFERED")
	prog := `import fcntl, struct, sys, termios, time
def read_by_the_worker(f):
    while struct.unpack("i", fcntl.ioctl(f.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]:
        time.sleep(0.0002)
for i in range(60):
    f = sys.stderr if i % 3 == 2 else sys.stdout
    print("line", i, file=f)
    read_by_the_worker(f)
`
	spec := Spec{JobID: 3, WorkDir: t.TempDir(), Exec: pipeline.Exec{Path: py, Params: []string{"-c", prog}}}
	logs := &logRec{}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p, err := Start(ctx, spec, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 60 {
		stream := Stdout
		if i%3 == 2 {
			stream = Stderr
		}
		want = append(want, fmt.Sprintf("%s: line %d", stream, i))
	}
	if got := logs.all(); !slices.Equal(got, want) {
		t.Errorf("lines out of the order written:\n%q\nwant\n%q", got, want)
	}
}

// pythonPath is the interpreter of the Python tests: $MARVELO_PYTHON, else python3 on PATH.
func pythonPath(t *testing.T) string {
	t.Helper()
	if py := os.Getenv("MARVELO_PYTHON"); py != "" {
		return py
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 is not on PATH (set MARVELO_PYTHON): skipping")
	}
	return py
}
