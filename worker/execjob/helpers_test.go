//go:build linux

package execjob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
)

// testTimeout bounds every wait of the tests: a hang fails instead of blocking the run.
const testTimeout = 20 * time.Second

// modes are the two stream modes every behaviour is tested in.
var modes = []string{pipeline.ModeFIFO, pipeline.ModeFD}

// repoRoot is the module root, for testdata/exec.
var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// buildDir holds programs compiled once for the whole test binary.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "execjob-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// sh is a prelude for test scripts: open_in/open_out N VALUE make descriptor N read or write a
// stream value, a named pipe (fifo mode) or an inherited descriptor number (fd mode).
const sh = `#!/bin/sh
open_in() { case $2 in *[!0-9]*) eval "exec $1<\"\$2\"" ;; *) eval "exec $1<&$2" ;; esac; }
open_out() { case $2 in *[!0-9]*) eval "exec $1>\"\$2\"" ;; *) eval "exec $1>&$2" ;; esac; }
`

// script writes an executable POSIX sh script into dir.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(sh+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	buildMu  sync.Mutex
	builtErr = map[string]error{}

	catOnce sync.Once
	catBin  string
	catErr  error
)

// compileC compiles a C file of testdata/exec (once per test binary); skips without a compiler.
func compileC(tb testing.TB, name string) string {
	tb.Helper()
	cc, err := exec.LookPath("cc")
	if err != nil {
		tb.Skipf("no C compiler (cc) on PATH: skipping the test of %s.c", name)
	}
	out := filepath.Join(buildDir, name)
	buildMu.Lock()
	defer buildMu.Unlock()
	err, done := builtErr[out]
	if !done {
		src := filepath.Join(repoRoot, "testdata", "exec", name+".c")
		msg, cerr := exec.Command(cc, "-O2", "-o", out, src).CombinedOutput()
		if cerr != nil {
			err = fmt.Errorf("cc %s: %v\n%s", src, cerr, msg)
		}
		builtErr[out] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// buildGo builds a Go command of testdata/exec (once per test binary).
func buildGo(tb testing.TB, name string) string {
	tb.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(buildDir, name)
	buildMu.Lock()
	defer buildMu.Unlock()
	err, done := builtErr[out]
	if !done {
		cmd := exec.Command(gobin, "build", "-o", out, "./testdata/exec/"+name)
		cmd.Dir = repoRoot
		if msg, berr := cmd.CombinedOutput(); berr != nil {
			err = fmt.Errorf("go build %s: %v\n%s", name, berr, msg)
		}
		builtErr[out] = err
	}
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not on PATH: skipping the Python example")
	}
}

func mustCodec(t testing.TB, name string, size int) codec.Codec {
	t.Helper()
	c, err := codec.New(name, size)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ports makes ports with the given pipe ids, all of one codec and block count.
func ports(c codec.Codec, blockCount int, ids ...int) []Port {
	out := make([]Port, len(ids))
	for k, id := range ids {
		out[k] = Port{Pipe: id, Codec: c, BlockCount: blockCount}
	}
	return out
}

// logRec records log lines and lets a test wait for one.
type logRec struct {
	mu      sync.Mutex
	lines   []string
	waiters []logWaiter
}

type logWaiter struct {
	substr string
	ch     chan string
}

func (l *logRec) log(stream, line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	entry := stream + ": " + line
	l.lines = append(l.lines, entry)
	kept := l.waiters[:0]
	for _, w := range l.waiters {
		if strings.Contains(entry, w.substr) {
			w.ch <- entry
			continue
		}
		kept = append(kept, w)
	}
	l.waiters = kept
}

// waitFor returns the first logged line containing substr, waiting for it if needed.
func (l *logRec) waitFor(t *testing.T, substr string) string {
	t.Helper()
	l.mu.Lock()
	for _, e := range l.lines {
		if strings.Contains(e, substr) {
			l.mu.Unlock()
			return e
		}
	}
	ch := make(chan string, 1)
	l.waiters = append(l.waiters, logWaiter{substr, ch})
	l.mu.Unlock()
	select {
	case e := <-ch:
		return e
	case <-time.After(testTimeout):
		t.Fatalf("no log line with %q after %v; log:\n%s", substr, testTimeout, l.String())
		return ""
	}
}

func (l *logRec) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *logRec) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

type block struct {
	payload []byte
	head    uint32
}

func (b block) String() string { return fmt.Sprintf("%d:%q", b.head, b.payload) }

type outResult struct {
	blocks []block
	err    error // the error that ended the output; nil for io.EOF
}

// drain reads every output in its own goroutine until it ends.
func drain(p *Process, n int) <-chan []outResult {
	ch := make(chan []outResult, 1)
	res := make([]outResult, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Go(func() {
			for {
				payload, head, err := p.ReadOutput(k, nil)
				if err == io.EOF {
					return
				}
				if err != nil {
					res[k].err = err
					return
				}
				res[k].blocks = append(res[k].blocks, block{payload, head})
			}
		})
	}
	go func() { wg.Wait(); ch <- res }()
	return ch
}

// feed writes the blocks of every input round by round (block_count blocks of each input per
// round), then closes the inputs.
func feed(ctx context.Context, p *Process, spec Spec, inputs [][]block) error {
	rounds := -1
	for k, blocks := range inputs {
		r := len(blocks) / spec.Inputs[k].BlockCount
		if rounds < 0 || r < rounds {
			rounds = r
		}
	}
	payloads := make([][][]byte, len(inputs))
	heads := make([][]uint32, len(inputs))
	for r := 0; r < rounds; r++ {
		for k, blocks := range inputs {
			bc := spec.Inputs[k].BlockCount
			payloads[k], heads[k] = payloads[k][:0], heads[k][:0]
			for _, b := range blocks[r*bc : (r+1)*bc] {
				payloads[k] = append(payloads[k], b.payload)
				heads[k] = append(heads[k], b.head)
			}
		}
		if err := p.WriteRound(ctx, payloads, heads); err != nil {
			return err
		}
	}
	return p.CloseInputs()
}

type runResult struct {
	outs     []outResult
	writeErr error
	waitErr  error
	logs     *logRec
	p        *Process
}

// runJob starts spec, feeds the inputs, drains the outputs and waits, all bounded by testTimeout.
func runJob(t *testing.T, spec Spec, inputs [][]block) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	logs := &logRec{}
	p, err := Start(ctx, spec, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	outs := drain(p, len(spec.Outputs))
	r := runResult{logs: logs, p: p}
	r.writeErr = feed(ctx, p, spec, inputs)
	select {
	case r.outs = <-outs:
	case <-ctx.Done():
		t.Fatalf("outputs did not end within %v; log:\n%s", testTimeout, logs)
	}
	r.waitErr = p.Wait()
	if ctx.Err() != nil {
		t.Fatalf("job did not end within %v; log:\n%s", testTimeout, logs)
	}
	return r
}

// ok fails the test unless the run went through without any error.
func (r runResult) ok(t *testing.T) runResult {
	t.Helper()
	if r.writeErr != nil {
		t.Errorf("writing: %v", r.writeErr)
	}
	for k, o := range r.outs {
		if o.err != nil {
			t.Errorf("output %d: %v", k, o.err)
		}
	}
	if r.waitErr != nil {
		t.Errorf("wait: %v", r.waitErr)
	}
	if t.Failed() {
		t.Logf("log:\n%s", r.logs)
	}
	return r
}

func jsonBlocks(values ...string) []block {
	out := make([]block, len(values))
	for i, v := range values {
		out[i] = block{payload: []byte(v)}
	}
	return out
}

func payloads(bs []block) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b.payload)
	}
	return out
}

func equalBlocks(t *testing.T, what string, got, want []block) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d blocks %v, want %d %v", what, len(got), got, len(want), want)
		return
	}
	for i := range got {
		if string(got[i].payload) != string(want[i].payload) || got[i].head != want[i].head {
			t.Errorf("%s: block %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// groupLiveAfterKill is groupLive once the SIGKILLs sent to the group have been acted on. A
// killed process dies when the kernel next schedules it, not at the kill: on a loaded machine a
// killed `sleep` was seen in state R just after Wait returned. So this polls, bounded by
// killSettle, and returns what is still alive then.
func groupLiveAfterKill(pgid int) []string {
	deadline := time.NewTimer(killSettle)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		live := groupLive(pgid)
		if len(live) == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return live
		}
	}
}

// killSettle bounds the wait for killed processes to die.
const killSettle = 2 * time.Second

// groupLive lists the live processes of process group pgid. Zombies count as gone: they are
// dead and wait only for their parent (init, for orphans) to reap them.
func groupLive(pgid int) []string {
	var live []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 || f[2] != fmt.Sprint(pgid) {
			continue
		}
		if f[0] != "Z" && f[0] != "X" {
			live = append(live, e.Name()+" "+s[:i+1]+" "+f[0])
		}
	}
	return live
}

func isExitError(err error) (*ExitError, bool) {
	var ee *ExitError
	ok := errors.As(err, &ee)
	return ee, ok
}

// dupFile duplicates f's descriptor, as a fork does, without touching f's mode.
func dupFile(t *testing.T, f *os.File) *os.File {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	var derr error
	if err := rc.Control(func(d uintptr) { fd, derr = syscall.Dup(int(d)) }); err != nil || derr != nil {
		t.Fatalf("dup: %v %v", err, derr)
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), f.Name()+" (dup)")
}

// wchan is what the kernel says process pid waits in.
func wchan(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "wchan"))
	if err != nil {
		return err.Error()
	}
	return "wchan " + string(b)
}
