package worker

import (
	"math"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestJobUsage: a Go job reports the worker's own process, an executable its program's, kept
// once the program has exited; an executable not started reports nothing.
func TestJobUsage(t *testing.T) {
	var u jobUsage
	if cpu, mem := u.sample(); cpu < 0 || mem == 0 {
		t.Errorf("a Go job (the worker's process): cpu %v s, mem %d B", cpu, mem)
	}
	var exe jobUsage
	exe.setPid(noProcess)
	if cpu, mem := exe.sample(); cpu != 0 || mem != 0 {
		t.Errorf("an executable not started: cpu %v s, mem %d B, want none", cpu, mem)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep program: %v", err)
	}
	exe.setPid(cmd.Process.Pid)
	_, mem := exe.sample()
	_, self := u.sample()
	if mem == 0 || mem >= self {
		t.Errorf("the program's memory %d B: want its own (above 0, below this test's %d B)", mem, self)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if _, after := exe.sample(); after != mem {
		t.Errorf("after the program exited: mem %d B, want the last sample %d B", after, mem)
	}
}

// TestDiskFreeOfAWorkDirNotMadeYet: a worker's working directory is made when its first job
// runs; before, its heartbeats reported 0 % disk free (statfs of a missing folder). The file
// system is that of its nearest existing parent, and its free share is reported.
func TestDiskFreeOfAWorkDirNotMadeYet(t *testing.T) {
	base := t.TempDir()
	want := diskFree(base)
	if want <= 0 {
		t.Skipf("the file system of %s reports %.1f%% free", base, want)
	}
	got := (&metricsReader{dir: filepath.Join(base, "work", "not", "made")}).sample().DiskFree
	if got <= 0 || got > 100 || math.Abs(got-want) > 1 {
		t.Errorf("disk free %.2f%% for a working directory not made yet, want %.2f%% (its parent's file system)", got, want)
	}
}
