package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// chromium returns the path of Debian's chromium; without it the test is skipped, or fails on
// CI (.ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: CI must install it (apt-get install chromium; see .ci/run)")
	}
	t.Skip("chromium is not installed (apt-get install chromium): the live view's browser test is skipped")
	return ""
}

// headless runs chromium without a window on a fresh profile, lets the page run for three
// seconds of virtual time (its fetches are waited for) and returns what it printed.
func headless(t *testing.T, browser string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	args = append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=3000"}, args...)
	cmd := exec.CommandContext(ctx, browser, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Chromium starts helper processes: a timeout ends them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

var (
	uiURLRE   = regexp.MustCompile(`live view on (http://\S+/)`)
	blocksOut = regexp.MustCompile(`data-job="1" data-field="blocks_out">([0-9,]+)<`)
)

// counterIn reads job 1's blocks out from the page's jobs table, -1 if absent.
func counterIn(dom string) int {
	m := blocksOut.FindStringSubmatch(dom)
	if m == nil {
		return -1
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		return -1
	}
	return n
}

// TestLiveViewInABrowser: marvelo-broker --ui serves the live view of a pipeline running on two
// workers; headless Chromium, authenticated with the operator token, shows every job by name in
// the graph and the jobs table, both workers, the writer's lines in the log tail, and a counter
// that moves from one load of the page to the next. A screenshot is kept in the test's folder and
// copied to /tmp/marvelo-liveview.png. Without credentials the view answers 401 with a basic
// challenge.
func TestLiveViewInABrowser(t *testing.T) {
	browser := chromium(t)
	const token = "live-view-token"
	c := newCluster(t, clusterOpts{token: token, brokerArgs: []string{"--ui", "127.0.0.1:0"}})
	var ui string
	c.waitFor("the broker to print the live view's address", func() bool {
		m := uiURLRE.FindStringSubmatch(c.broker.out.String())
		if m != nil {
			ui = m[1]
		}
		return m != nil
	})

	resp, err := http.Get(ui + "api/pipelines")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("without credentials: %s, WWW-Authenticate %q; want 401 with a basic challenge", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}

	c.startWorkers("w1", "w2")
	doc := c.writeDoc("live.json", `{"name": "live", "jobs": [
    {"id": 1, "name": "ticker", "type": "counter", "args": {"count": 600, "interval": "20ms"}, "outputs": [1], "node": "w1"},
    {"id": 2, "name": "relay", "type": "forward", "inputs": [1], "outputs": [2], "node": "w2"},
    {"id": 3, "name": "writer", "type": "csv_sink", "args": {"path": "live.csv", "echo": true}, "inputs": [2], "node": "w2"}]}`)
	c.submit(doc)
	defer c.marvelo("stop", "live", "--force")
	c.waitFor("the pipeline to run on both workers", func() bool {
		st := c.status("live")
		return st.State == protocol.StateRunning && len(st.Jobs) == 3 && st.Jobs[0].Stats.BlocksOut > 0 && st.Jobs[2].Stats.BlocksIn > 0
	})

	// The operator token as the basic password: the browser authenticates the page with it, and
	// its fetches with the same credentials.
	u, err := url.Parse(ui)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("operator", token)
	u.Fragment = "live"
	page := u.String()

	first := headless(t, browser, "--dump-dom", page)
	for _, want := range []string{
		`class="jname">ticker<`, `class="jname">relay<`, `class="jname">writer<`, // the graph
		`data-field="name">#1 ticker<`, `data-field="name">#2 relay<`, `data-field="name">#3 writer<`, // the jobs table
		`data-worker="w1"`, `data-worker="w2"`, `data-pipe="1"`, `data-pipe="2"`, `class="status ok"`,
	} {
		if !strings.Contains(first, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if t.Failed() {
		t.Fatalf("the page:\n%s", first)
	}
	n1 := counterIn(first)
	if n1 < 0 {
		t.Fatalf("no counter of job 1 in the page:\n%s", first)
	}
	var n2 int
	var second string
	deadline := time.Now().Add(15 * time.Second)
	for {
		second = headless(t, browser, "--dump-dom", page)
		n2 = counterIn(second)
		if n2 > n1 && strings.Contains(second, "writer#3@w2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job 1's blocks out went from %d to %d in the page, the log tail has no line of the writer:\n%s", n1, n2, second)
		}
	}
	t.Logf("job 1's blocks out in the page: %d, then %d", n1, n2)

	shot := filepath.Join(t.TempDir(), "liveview.png")
	headless(t, browser, "--window-size=1280,900", "--screenshot="+shot, page)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s: %d bytes, not a PNG of a page", shot, len(png))
	}
	if err := os.WriteFile("/tmp/marvelo-liveview.png", png, 0o644); err != nil {
		t.Errorf("copy of the screenshot: %v", err)
	} else {
		t.Logf("screenshot: %s (copied to /tmp/marvelo-liveview.png)", shot)
	}
}

// TestLiveViewRefusesToListenBeyondLoopbackWithoutAToken: anyone on the network could read the
// pipelines and their logs; the broker says so and exits 1.
func TestLiveViewRefusesToListenBeyondLoopbackWithoutAToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "marvelo-broker"), "--memory", "--no-local",
		"--listen", fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)), "--ui", "0.0.0.0:0")
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "without --auth-token") {
		t.Fatalf("exit %d (%v), want 1 naming --auth-token:\n%s", code, err, out)
	}
}
