package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/worker/pyjob"
)

// TestTDOAExampleFindsTheDelayWithTheMicrophonesOnTwoWorkers runs the shipped multi-microphone
// example (testdata/python/tdoa: two Python microphone sources, a numpy GCC-PHAT job, a LOCAL
// csv_sink) with each microphone on a worker of its own, and checks the physical answer: the
// second microphone hears the source 37 samples later, in every one of the 20 frames.
func TestTDOAExampleFindsTheDelayWithTheMicrophonesOnTwoWorkers(t *testing.T) {
	interp, err := pyjob.Interpreter("", "")
	if err == nil {
		err = exec.Command(interp, "-c", "import numpy").Run()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the example needs Python with numpy (.ci/run installs python3-numpy): %v", err)
		}
		t.Skipf("no Python with numpy here: %v", err)
	}
	c := newCluster(t, clusterOpts{})
	example := "../../../testdata/python/tdoa"
	for _, f := range []string{"pipeline.json", "src/tdoa.py"} {
		b, err := os.ReadFile(filepath.Join(example, f))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(c.dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.startWorker("pi1", "--groups", "mic1")
	c.startWorker("pi2", "--groups", "mic2")
	c.submit(filepath.Join(c.dir, "pipeline.json"), "--wait")
	st := c.status("tdoa")
	for id, w := range map[int]string{1: "pi1", 2: "pi2", 4: "head"} {
		if got := jobWorker(st, id); got != w {
			t.Errorf("job %d ran on %q, want %q", id, got, w)
		}
	}
	want := "pipe_3" + strings.Repeat(" 37", 20)
	if got := strings.Join(readLines(t, filepath.Join(c.dir, "tdoa.csv")), " "); got != want {
		t.Fatalf("tdoa.csv: %s\nwant %s", got, want)
	}
}
