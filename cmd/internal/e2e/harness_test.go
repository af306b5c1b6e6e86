// Package e2e runs marvelo as its users do: the three binaries built from this tree, a broker
// and workers as separate OS processes on 127.0.0.1 (random free ports), driven through the
// marvelo command line.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode")
		return 0
	}
	dir, err := os.MkdirTemp("", "marvelo-e2e-bin-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: no go command to build the binaries:", err)
		return 1
	}
	cmd := exec.Command(goTool, "build", "-o", dir+string(os.PathSeparator), "./cmd/marvelo", "./cmd/marvelo-broker", "./cmd/marvelo-worker")
	cmd.Dir = "../../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the binaries: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

// proc is one marvelo process under test.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *testkit.LockedBuffer
	done <-chan struct{}
	kit  *testkit.Process
}

// start runs a binary in the background; it is killed at the end of the test, and its output is
// shown when the test fails.
func start(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	return startEnv(t, name, bin, nil, args...)
}

// startEnv is start with an environment of its own (nil: the test's).
func startEnv(t *testing.T, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(binDir, bin)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	kit := testkit.Start(t, name, cmd)
	return &proc{t: t, name: name, cmd: cmd, out: kit.Out, done: kit.Done(), kit: kit}
}

// stop sends SIGTERM and waits, bounded, for the process to exit.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.t.Errorf("%s did not exit within 15s of SIGTERM", p.name)
		p.kill()
	}
}

func (p *proc) kill() { p.kit.Kill() }

// cluster is a broker and its workers.
type cluster struct {
	t           *testing.T
	url         string
	listen      string
	token       string
	workerToken string
	store       string
	broker      *proc
	workers     map[string]*proc
	dir         string
	identities  bool // each worker enrolled with an identity of its own (security_test.go)
	brokerArgs  []string
}

type clusterOpts struct {
	token       string
	workerToken string
	store       bool
	// identities enrols every worker as itself (marvelo-broker worker add) and starts it with
	// --creds; MARVELO_E2E_IDENTITIES=1 turns it on for every test that sets no worker token.
	identities bool
	// brokerArgs are more flags of the broker (disconnect_test.go).
	brokerArgs []string
}

func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	port := testkit.FreePort(t)
	c := &cluster{t: t, listen: fmt.Sprintf("127.0.0.1:%d", port), url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		token: o.token, workerToken: o.workerToken, workers: map[string]*proc{}, dir: t.TempDir(), brokerArgs: o.brokerArgs}
	c.useIdentities(o)
	if o.store {
		c.store = filepath.Join(c.dir, "store")
	}
	c.startBroker()
	return c
}

func (c *cluster) startBroker() {
	c.t.Helper()
	args := []string{"--listen", c.listen, "--workdir", c.dir, "--heartbeat-timeout", "1500ms"}
	if c.store != "" {
		args = append(args, "--store", c.store)
	} else {
		args = append(args, "--memory")
	}
	if c.token != "" {
		args = append(args, "--auth-token", c.token)
	}
	if c.workerToken != "" {
		args = append(args, "--worker-token", c.workerToken)
	}
	args = append(args, c.brokerArgs...)
	c.broker = start(c.t, "marvelo-broker", "marvelo-broker", args...)
	c.waitFor("the broker to answer", func() bool {
		_, _, code := c.marvelo("workers")
		return code == 0
	})
}

// startWorker starts a worker process and waits until the broker lists it.
// startWorkers starts one worker per name, with no extra flags.
func (c *cluster) startWorkers(names ...string) {
	for _, n := range names {
		c.startWorker(n)
	}
}

func (c *cluster) startWorker(name string, extra ...string) *proc {
	c.t.Helper()
	return c.startWorkerEnv(name, nil, extra...)
}

// startWorkerEnv is startWorker with an environment of its own (nil: the test's).
func (c *cluster) startWorkerEnv(name string, env []string, extra ...string) *proc {
	c.t.Helper()
	args := append([]string{"--broker", c.url, "--name", name, "--workdir", filepath.Join(c.dir, name), "--heartbeat", "200ms"}, extra...)
	if os.Getenv("MARVELO_E2E_VERBOSE") == "1" {
		args = append(args, "--verbose") // debug logs of every worker, to trace a stall
	}
	switch {
	case c.identities:
		args = append(args, "--creds", c.enrol(name))
	case c.workerToken != "":
		args = append(args, "--auth-token", c.workerToken)
	case c.token != "":
		args = append(args, "--auth-token", c.token)
	}
	p := startEnv(c.t, "worker "+name, "marvelo-worker", env, args...)
	c.workers[name] = p
	c.waitFor("worker "+name+" to register", func() bool { return c.workerAlive(name) })
	return p
}

func (c *cluster) workerAlive(name string) bool {
	out, _, code := c.marvelo("workers", "--json")
	if code != 0 {
		return false
	}
	var ws []protocol.WorkerStatus
	if json.Unmarshal([]byte(out), &ws) != nil {
		return false
	}
	for _, w := range ws {
		if w.Name == name && w.Alive {
			return true
		}
	}
	return false
}

// marvelo runs the marvelo command against the cluster and returns stdout, stderr, exit code.
func (c *cluster) marvelo(args ...string) (string, string, int) {
	c.t.Helper()
	return runMarvelo(c.t, c.dir, c.operatorArgs(args...)...)
}

// operatorArgs are a marvelo command's arguments with this cluster's broker and operator token.
func (c *cluster) operatorArgs(args ...string) []string {
	args = append(args, "--broker", c.url)
	if c.token != "" {
		args = append(args, "--auth-token", c.token)
	}
	return args
}

func runMarvelo(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "marvelo"), args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), stderr.String(), 0
	case errors.As(err, &exit):
		return stdout.String(), stderr.String(), exit.ExitCode()
	}
	t.Fatalf("marvelo %v: %v", args, err)
	return "", "", -1
}

// status returns a pipeline's status through `marvelo status --json`.
func (c *cluster) status(name string) protocol.PipelineStatus {
	c.t.Helper()
	out, errOut, code := c.marvelo("status", name, "--json")
	if code != 0 {
		c.t.Fatalf("marvelo status %s: exit %d: %s", name, code, errOut)
	}
	var sts []protocol.PipelineStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		c.t.Fatalf("marvelo status %s --json: %v\n%s", name, err, out)
	}
	return sts[0]
}

// waitFor polls cond, bounded, until it holds.
func (c *cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	testkit.WaitFor(c.t, 30*time.Second, what, cond)
}

// writeDoc writes a pipeline document into the cluster's folder and returns its path.
func (c *cluster) writeDoc(name, doc string) string {
	c.t.Helper()
	path := filepath.Join(c.dir, name)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return path
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func jobWorker(st protocol.PipelineStatus, id int) string {
	for _, j := range st.Jobs {
		if j.ID == id {
			return j.Worker
		}
	}
	return ""
}

func readLinesIfAny(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// addDependencies copies example executables of testdata/exec into a dependencies folder of the
// cluster's folder, where pipeline documents written by writeDoc find it.
func (c *cluster) addDependencies(folder string, files ...string) {
	c.t.Helper()
	dir := filepath.Join(c.dir, folder)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join("../../../testdata/exec", f))
		if err != nil {
			c.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			c.t.Fatal(err)
		}
	}
}

// submit submits a pipeline document through the marvelo command and fails the test if the
// command does not succeed.
func (c *cluster) submit(doc string, extra ...string) {
	c.t.Helper()
	args := append([]string{"submit", doc}, extra...)
	if _, errOut, code := c.marvelo(args...); code != 0 {
		c.t.Fatalf("marvelo %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
}
