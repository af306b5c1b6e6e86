package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
)

// netHost is a network namespace joined to this machine by a veth pair: a separate host for
// the tests, made here and removed afterwards. Its only route leads to this machine.
type netHost struct {
	ns, hostIP, nsIP string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newNetHost makes namespace k (10.213.k.0/24: this machine .1, the namespace .2), or skips the
// test with the reason when namespaces cannot be made here.
func newNetHost(t *testing.T, k int) netHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root; skipping the separate-hosts case")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2); skipping the separate-hosts case")
	}
	h := netHost{ns: fmt.Sprintf("marvelo-e2e-%d-%d", os.Getpid(), k), hostIP: fmt.Sprintf("10.213.%d.1", k), nsIP: fmt.Sprintf("10.213.%d.2", k)}
	hostEnd, nsEnd := fmt.Sprintf("mvh%d-%d", k, os.Getpid()%10000), fmt.Sprintf("mvn%d-%d", k, os.Getpid()%10000)
	steps := [][]string{
		{"netns", "add", h.ns},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd},
		{"link", "set", nsEnd, "netns", h.ns},
		{"addr", "add", h.hostIP + "/24", "dev", hostEnd},
		{"link", "set", hostEnd, "up"},
		{"netns", "exec", h.ns, "ip", "addr", "add", h.nsIP + "/24", "dev", nsEnd},
		{"netns", "exec", h.ns, "ip", "link", "set", nsEnd, "up"},
		{"netns", "exec", h.ns, "ip", "link", "set", "lo", "up"},
		{"netns", "exec", h.ns, "ip", "route", "add", "default", "via", h.hostIP},
	}
	t.Cleanup(func() {
		_ = ipCmd("link", "del", hostEnd)
		_ = ipCmd("netns", "del", h.ns)
	})
	for i, s := range steps {
		if err := ipCmd(s...); err != nil {
			if i < 2 {
				t.Skipf("cannot make network namespaces here (%v); skipping the separate-hosts case", err)
			}
			t.Fatal(err)
		}
	}
	return h
}

// TestWorkersOnSeparateHosts runs each worker in its own network namespace: it reaches the
// broker over a network, not loopback, so the broker must listen there and require its token.
func TestWorkersOnSeparateHosts(t *testing.T) {
	h1 := newNetHost(t, 1)
	h2 := newNetHost(t, 2)
	port := testkit.FreePort(t)
	c := &cluster{t: t, listen: fmt.Sprintf("%s:%d", h1.hostIP, port), url: fmt.Sprintf("nats://%s:%d", h1.hostIP, port),
		token: "netns-token", workers: map[string]*proc{}, dir: t.TempDir()}
	c.startBroker()
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []netHost{h1, h2} {
		name := fmt.Sprintf("host%d", i+1)
		p := start(t, "worker "+name, ipPath, "netns", "exec", h.ns, filepath.Join(binDir, "marvelo-worker"),
			"--broker", c.url, "--name", name, "--auth-token", c.token, "--slots", "4", "--workdir", filepath.Join(c.dir, name))
		c.workers[name] = p
		c.waitFor("worker "+name+" to register from its namespace", func() bool { return c.workerAlive(name) })
	}
	doc := c.writeDoc("hosts.json", `{"name": "hosts", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 50}, "outputs": [1], "node": "host1"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "host2"},
    {"id": 3, "type": "csv_sink", "args": {"path": "hosts.csv"}, "inputs": [2], "groups": ["LOCAL"]}]}`)
	c.submit(doc, "--wait")
	st := c.status("hosts")
	if jobWorker(st, 1) != "host1" || jobWorker(st, 2) != "host2" {
		t.Fatalf("placement: job 1 on %s, job 2 on %s", jobWorker(st, 1), jobWorker(st, 2))
	}
	checkExactlyOnce(t, filepath.Join(c.dir, "hosts.csv"), 50)
}
