// Package testkit holds the helpers that the test packages under cmd/ share: polling until a
// condition holds, with a deadline; a buffer that a child process may write while the test reads
// it; free loopback ports; building a command of this tree and running it as a child process for
// the length of a test.
//
// It is an ordinary package so that several test packages can import it, but only tests use it:
// no command and no library imports it. Being under cmd/internal, it is out of reach of broker,
// worker, pipeline and codec (docs/DESIGN.md §2: those never import cmd/), whose tests keep
// helpers of their own.
package testkit

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/broker/freeport"
)

// WaitFor polls cond every 50 ms until it holds, and fails the test naming what it waited for
// when limit passes or the test ends first.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitEvery(t, limit, 50*time.Millisecond, what, cond)
}

// WaitEvery is WaitFor polling every every: for a cheap condition, in-process, that a test wants
// to catch soon after it holds.
func WaitEvery(t testing.TB, limit, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		select {
		case <-time.After(every):
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		}
	}
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call, for a broker started as
// a separate process. It lies outside the kernel's ephemeral range (freeport.Loopback), so no
// listener on port 0 and no outgoing connection can take it before the broker binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct ports as FreePort does: a cluster's ports, all named before its
// first server starts.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Loopback(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// LockedBuffer is a bytes.Buffer that a child process's output may be copied into while the test
// reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// GoBuild builds the Go package pkg (a path as `go build` takes it, relative to the test's
// folder) into a fresh temporary folder as name, and returns the binary's path.
func GoBuild(t testing.TB, pkg, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// Process is a child process started by Start.
type Process struct {
	Cmd  *exec.Cmd
	Out  *LockedBuffer // its standard output and standard error, as they come
	done chan struct{}
	err  error
}

// Start runs cmd in the background, in a process group of its own, with its standard output and
// standard error in the process's Out. At the end of the test the whole group is killed, and the
// output is logged if the test failed.
func Start(t testing.TB, name string, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Out: &LockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.Out.String())
		}
	})
	return p
}

// Done is closed once the process has exited and its output is all in Out.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what waiting for the process returned; it is set once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Kill kills the process's whole group and waits for the process to exit.
func (p *Process) Kill() {
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}
