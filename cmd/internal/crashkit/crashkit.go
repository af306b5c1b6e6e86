// Package crashkit cuts the power of a node in a test, for real: a store lies on an ext4 file
// system on a loop device; the test kills the processes writing to it (SIGKILL) and at once copies
// the loop device's backing file. The copy holds what the device had received, and nothing of
// what was still in the kernel's page cache: it is the disk as a power failure or a kernel crash
// leaves it. The test then mounts the copy (ext4 replays its journal) and starts again on it.
//
// Device-mapper (dm-flakey, dm-log-writes) is not in every kernel (not in the development VM's);
// copying the backing file needs nothing of it. ext4 is mounted with commit=300 so its own 5 s
// journal commit writes nothing the processes did not sync; a test must cut the power well within
// the kernel's 30 s writeback of dirty pages (vm.dirty_expire_centisecs), or the lazily written
// data reaches the device anyway and the test's control (a lazy sync loses what it acknowledged)
// proves nothing.
//
// It needs root, loop devices, losetup, mkfs.ext4 and mount, so the tests that use it run only
// with MARVELO_CRASH_TEST=1 (make test-crash).
package crashkit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	// Env turns the crash tests on: MARVELO_CRASH_TEST=1.
	Env = "MARVELO_CRASH_TEST"
	// MountOptions: see the package comment.
	MountOptions = "commit=300,nodiscard"
)

// Require skips the test unless MARVELO_CRASH_TEST=1 and fails it, saying what is missing, where
// a loop device cannot be made.
func Require(t testing.TB) {
	t.Helper()
	if os.Getenv(Env) != "1" {
		t.Skip("mounts loop devices as root: " + Env + "=1 (make test-crash)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the crash test mounts loop devices: run it as root")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount", "cp"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the crash test needs %s: %v", tool, err)
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Fatalf("no loop devices here: %v", err)
	}
}

// Disk is an ext4 file system on a loop device, mounted at Dir; Image is the device's backing
// file. The test's cleanup unmounts it and detaches the device.
type Disk struct {
	Image string
	Dir   string
}

// NewDisk makes an empty ext4 file system of size bytes in a sparse file of the test's temporary
// folder and mounts it. JetStream refuses a stream whose limits the file system's free space
// cannot hold: a broker's log stream reserves 256 MiB, each of a pipeline's pipes 64 MiB.
func NewDisk(t testing.TB, size int64) *Disk {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatalf("the disk image: %v", err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatalf("the disk image: %v", err)
	}
	run(t, "mkfs.ext4", "-q", "-F", img)
	return &Disk{Image: img, Dir: mount(t, img)}
}

// AfterPowerCut copies the disk's backing file as it is on the device at this moment — without
// what the page cache still holds — and mounts the copy: the disk as the power cut left it. Call
// it at once after killing every process that writes to the disk; the disk itself stays mounted
// until the test ends.
func (d *Disk) AfterPowerCut(t testing.TB) *Disk {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "crashed.img")
	run(t, "cp", "--sparse=always", d.Image, dst)
	return &Disk{Image: dst, Dir: mount(t, dst)}
}

// mount attaches img to a free loop device and mounts it on a new temporary folder, which it
// returns.
func mount(t testing.TB, img string) string {
	t.Helper()
	dev := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	dir := t.TempDir()
	run(t, "mount", "-t", "ext4", "-o", MountOptions, dev, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		t.Fatalf("%s: %v", name, err)
	}
	return string(out)
}
