package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
)

// useIdentities turns per-worker identities on for a cluster (clusterOpts.identities, or
// MARVELO_E2E_IDENTITIES=1 for tests without a worker token): they need an operator token.
func (c *cluster) useIdentities(o clusterOpts) {
	c.identities = o.identities || (os.Getenv("MARVELO_E2E_IDENTITIES") == "1" && o.workerToken == "")
	if c.identities && c.token == "" {
		c.token = "e2e-operator-token"
	}
}

// enrol makes worker name's identity once and returns its credentials file.
func (c *cluster) enrol(name string) string {
	c.t.Helper()
	return c.enrolAs("worker", name)
}

// enrolAs makes an identity of a kind (worker, operator) once with marvelo-broker KIND add and
// returns its credentials file.
func (c *cluster) enrolAs(kind, name string, extra ...string) string {
	c.t.Helper()
	file := filepath.Join(c.dir, name+".creds")
	if _, err := os.Stat(file); err == nil {
		return file
	}
	args := append([]string{kind, "add", name, "--broker", c.url, "--auth-token", c.token, "--out", file}, extra...)
	if out, err := exec.Command(filepath.Join(binDir, "marvelo-broker"), args...).CombinedOutput(); err != nil {
		c.t.Fatalf("enrol %s %s: %v\n%s", kind, name, err, out)
	}
	return file
}
