package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/testkit"
)

// enrol makes an identity on the broker at url with the real marvelo-broker (KIND add NAME) and
// returns its credentials file.
func enrol(t *testing.T, brokerBin, url, token, kind, name string, extra ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name+".creds")
	args := append([]string{kind, "add", name, "--broker", url, "--auth-token", token, "--out", file}, extra...)
	if out, err := exec.Command(brokerBin, args...).CombinedOutput(); err != nil {
		t.Fatalf("marvelo-broker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return file
}

// TestOperatorCommandsAsAWorkerOrReadOnlyIdentityFailWithin2sNamingTheIdentityAndTheRight: the
// marvelo binary, run with a worker's or a read-only operator's credentials against a broker on
// a random loopback port, exits 1 within 2 s (not after a timeout) from every command that needs
// a right the identity lacks, saying which identity may not publish to which subject and whose
// right that is.
func TestOperatorCommandsAsAWorkerOrReadOnlyIdentityFailWithin2sNamingTheIdentityAndTheRight(t *testing.T) {
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:-1", Memory: true, AuthToken: "op-token", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	marvelo := testkit.GoBuild(t, ".", "marvelo")
	brokerBin := testkit.GoBuild(t, "../marvelo-broker", "marvelo-broker")
	url := b.ClientURL()
	w1 := enrol(t, brokerBin, url, "op-token", "worker", "w1")
	ro := enrol(t, brokerBin, url, "op-token", "operator", "ro", "--read-only")
	const (
		worker = `permission denied: identity "w1" (a worker) may not publish to `
		reader = `permission denied: identity "ro" (a read-only operator) may not publish to `
		ops    = "an operator's right"
		reads  = "an operator's or a read-only operator's right"
	)
	for _, tc := range []struct {
		creds string
		args  []string
		want  string
	}{
		{w1, []string{"stop", "p"}, worker + "marvelo.api.stop: stopping pipelines is " + ops},
		{w1, []string{"rm", "p"}, worker + "marvelo.api.remove: removing pipelines is " + ops},
		{w1, []string{"reset", "p"}, worker + "marvelo.api.reset: resetting a pipeline's sources is " + ops},
		{w1, []string{"drain", "w1"}, worker + "marvelo.api.drain: draining workers is " + ops},
		{w1, []string{"uncordon", "w1"}, worker + "marvelo.api.uncordon: uncordoning workers is " + ops},
		{w1, []string{"status"}, worker + "marvelo.api.status: reading the status of pipelines is " + reads},
		{w1, []string{"workers"}, worker + "marvelo.api.workers: listing the workers is " + reads},
		{w1, []string{"logs", "p"}, worker + "marvelo.api.status: reading the status of pipelines is " + reads},
		{ro, []string{"stop", "p"}, reader + "marvelo.api.stop: stopping pipelines is " + ops},
		{ro, []string{"rm", "p"}, reader + "marvelo.api.remove: removing pipelines is " + ops},
		{ro, []string{"reset", "p"}, reader + "marvelo.api.reset: resetting a pipeline's sources is " + ops},
		{ro, []string{"drain", "w1"}, reader + "marvelo.api.drain: draining workers is " + ops},
		{ro, []string{"uncordon", "w1"}, reader + "marvelo.api.uncordon: uncordoning workers is " + ops},
	} {
		args := append(tc.args, "--broker", url, "--creds", tc.creds)
		cmd := exec.Command(marvelo, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("marvelo %s: %v, want exit 1; stderr: %s", strings.Join(args, " "), err, stderr.String())
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("marvelo %s as %s: stderr %q, want it to say %q", strings.Join(tc.args, " "), filepath.Base(tc.creds), stderr.String(), tc.want)
		}
		if took > 2*time.Second {
			t.Errorf("marvelo %s as %s: returned after %v, want within 2s", strings.Join(tc.args, " "), filepath.Base(tc.creds), took)
		}
	}
}
