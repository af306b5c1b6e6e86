package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// startBroker runs bin as a broker with an operator token on a random loopback port, and returns
// its URL once its control plane answers. The process is killed at the end of the test.
func startBroker(t *testing.T, bin, token string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	cmd := exec.Command(bin, "--listen", addr, "--memory", "--no-local", "--auth-token", token)
	cmd.Dir = t.TempDir()
	testkit.Start(t, "marvelo-broker", cmd)
	url := "nats://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	testkit.WaitFor(t, 30*time.Second, "the broker at "+url+" to answer", func() bool {
		nc, err := nats.Connect(url, nats.Token(token))
		if err != nil {
			return false
		}
		defer nc.Close()
		var r protocol.WorkersReply
		return client.New(nc).Call(ctx, protocol.SubjWorkers, struct{}{}, &r) == nil
	})
	return url
}

// TestEnrolmentAsAWorkerOrReadOnlyIdentityFailsWithin2sNamingTheIdentityAndTheRight: worker
// add, operator add and worker remove, run with a worker's or a read-only operator's
// credentials against a real broker process, exit 1 within 2 s (not after a timeout), say which
// identity may not publish to which enrolment subject and that it is an operator's right, and
// leave no credentials file behind.
func TestEnrolmentAsAWorkerOrReadOnlyIdentityFailsWithin2sNamingTheIdentityAndTheRight(t *testing.T) {
	bin := testkit.GoBuild(t, ".", "marvelo-broker")
	url := startBroker(t, bin, "op-token")
	dir := t.TempDir()
	run := func(args ...string) (string, int, time.Duration) {
		cmd := exec.Command(bin, append(args, "--broker", url)...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		var exit *exec.ExitError
		switch {
		case err == nil:
			return stderr.String(), 0, took
		case errors.As(err, &exit):
			return stderr.String(), exit.ExitCode(), took
		}
		t.Fatalf("marvelo-broker %s: %v", strings.Join(args, " "), err)
		return "", 0, 0
	}
	for _, id := range [][]string{{"worker", "add", "w1"}, {"operator", "add", "ro", "--read-only"}} {
		if errOut, code, _ := run(append(id, "--auth-token", "op-token")...); code != 0 {
			t.Fatalf("marvelo-broker %s: exit %d: %s", strings.Join(id, " "), code, errOut)
		}
	}
	for _, who := range []struct{ creds, says string }{
		{"w1.creds", `identity "w1" (a worker)`},
		{"ro.creds", `identity "ro" (a read-only operator)`},
	} {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"worker", "add", "x"}, "enrol worker x: permission denied: " + who.says +
				" may not publish to marvelo.api.identity.add: enrolling identities is an operator's right"},
			{[]string{"operator", "add", "y"}, "enrol operator y: permission denied: " + who.says +
				" may not publish to marvelo.api.identity.add: enrolling identities is an operator's right"},
			{[]string{"worker", "remove", "w1"}, "remove identity w1: permission denied: " + who.says +
				" may not publish to marvelo.api.identity.remove: removing identities is an operator's right"},
		} {
			what := fmt.Sprintf("marvelo-broker %s --creds %s", strings.Join(tc.args, " "), who.creds)
			errOut, code, took := run(append(tc.args, "--creds", who.creds)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("%s: exit %d, %q; want exit 1 and %q", what, code, errOut, tc.want)
			}
			if took > 2*time.Second {
				t.Errorf("%s: returned after %v, want within 2s", what, took)
			}
		}
		for _, f := range []string{"x.creds", "y.creds"} {
			if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("as %s: %s left behind (%v)", who.creds, f, err)
			}
		}
	}
	// The operator's token still may.
	if errOut, code, _ := run("worker", "remove", "w1", "--auth-token", "op-token"); code != 0 {
		t.Errorf("worker remove w1 with the operator's token: exit %d: %s", code, errOut)
	}
}

// TestWorkerEnrolledWithGroupsMayRegisterWithThoseOnly: `worker add wg --groups ga` against a real
// broker process; a registration of wg naming group gb is refused naming both, one naming ga is
// accepted; a group that is not a name is refused at the command line (exit 2).
func TestWorkerEnrolledWithGroupsMayRegisterWithThoseOnly(t *testing.T) {
	bin := testkit.GoBuild(t, ".", "marvelo-broker")
	url := startBroker(t, bin, "op-token")
	dir := t.TempDir()
	cmd := exec.Command(bin, "worker", "add", "wg", "--groups", "ga", "--broker", url, "--auth-token", "op-token")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("worker add wg --groups ga: %v\n%s", err, out)
	}
	bad := exec.Command(bin, "worker", "add", "wx", "--groups", "a.b", "--broker", url, "--auth-token", "op-token")
	bad.Dir = dir
	if out, err := bad.CombinedOutput(); bad.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), `"a.b"`) {
		t.Fatalf("worker add --groups a.b: %v, exit %d: %s; want exit 2 naming the group", err, bad.ProcessState.ExitCode(), out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "wg.creds"))
	if err != nil {
		t.Fatal(err)
	}
	name, token, err := protocol.ParseCreds(data)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nats.Token(token), nats.CustomInboxPrefix(protocol.InboxPrefix(name)))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info := protocol.WorkerInfo{Name: "wg", Slots: 1, Host: "h", PID: 1, Started: time.Now(), Version: protocol.Version}
	info.Groups = []string{"gb"}
	var r protocol.Reply
	err = client.New(nc).Call(ctx, protocol.From(protocol.SubjRegister, "wg"), info, &r)
	if want := "worker identity wg is enrolled for groups ga, not gb: refused"; err != nil || r.OK || !strings.Contains(r.Error, want) {
		t.Fatalf("registration with group gb: %v %+v, want refused with %q", err, r, want)
	}
	info.Groups = []string{"ga"}
	r = protocol.Reply{}
	if err := client.New(nc).Call(ctx, protocol.From(protocol.SubjRegister, "wg"), info, &r); err != nil || !r.OK {
		t.Fatalf("registration with group ga: %v %+v", err, r)
	}
}
