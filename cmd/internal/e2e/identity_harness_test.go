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
	file := filepath.Join(c.dir, name+".creds")
	if _, err := os.Stat(file); err == nil {
		return file
	}
	cmd := exec.Command(filepath.Join(binDir, "marvelo-broker"), "worker", "add", name,
		"--broker", c.url, "--auth-token", c.token, "--out", file)
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("enrol worker %s: %v\n%s", name, err, out)
	}
	return file
}
