package crashkit_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/crashkit"
	"github.com/marvelo/marvelo/cmd/internal/testkit"
)

// The crash test: a power cut of the head node, for real (internal/crashkit). Each broker's store
// lies on an ext4 file system on a loop device. A child process runs the brokers (one, or three
// forming a cluster), publishes to a stream and reports how many messages JetStream acknowledged;
// the test kills it (SIGKILL) and at once copies each loop device's backing file: the disk as a
// power failure or a kernel crash leaves it. The brokers then start again on the copies, and the
// test counts what the stream kept.
//
// With --sync always every acknowledged message is there. With --sync 2m (NATS's default) the
// acknowledged messages are lost: that half is the control — a harness that lost nothing there
// would prove nothing with always.
//
// It needs root and loop devices, so it runs only with MARVELO_CRASH_TEST=1 (make test-crash).
// The same power cut of a whole pipeline: cmd/internal/e2e/powercut_test.go.

const (
	crashChildEnv = "MARVELO_CRASH_CHILD" // set in the child: the stores, comma-separated
	crashSyncEnv  = "MARVELO_CRASH_SYNC"  // the child's --sync
	crashCountEnv = "MARVELO_CRASH_COUNT" // messages the child publishes
	crashStream   = "CRASH"               // the stream the child publishes to
	crashAcked    = "ACKED "              // the child's report: ACKED N
	crashMsgSize  = 1024                  // bytes per message
	crashWait     = 60 * time.Second      // for the child's report and the restarted stream
	crashDiskSize = 512 << 20             // bytes of each broker's disk: the log stream reserves 256 MiB
)

func TestPowerCutKeepsEveryAcknowledgedMessageWithSyncAlwaysAndLosesThemWithALazySync(t *testing.T) {
	crashkit.Require(t)
	for _, c := range []struct {
		name    string
		brokers int
		sync    string
	}{
		{"one broker, always", 1, "always"},
		{"one broker, 2m", 1, "2m"},
		{"three brokers R3, always", 3, "always"},
		{"three brokers R3, 2m", 3, "2m"},
	} {
		t.Run(c.name, func(t *testing.T) {
			const count = 400
			disks := make([]*crashkit.Disk, c.brokers)
			stores := make([]string, c.brokers)
			for i := range disks {
				disks[i] = crashkit.NewDisk(t, crashDiskSize)
				stores[i] = disks[i].Dir
			}
			acked := runCrashChild(t, stores, c.sync, count)
			// The power is cut: the child is dead, the page cache is not on the disks.
			crashed := make([]string, len(disks))
			for i, d := range disks {
				crashed[i] = d.AfterPowerCut(t).Dir
			}
			kept, err := countAfterRestart(t, crashed, c.sync)
			t.Logf("--sync %s, %d broker(s): %d messages acknowledged, %d kept after the power cut (%v)", c.sync, c.brokers, acked, kept, err)
			if c.sync == "always" {
				if err != nil {
					t.Fatalf("the stream after the power cut: %v", err)
				}
				if kept < acked {
					t.Fatalf("--sync always lost %d of %d acknowledged messages in a power cut", acked-kept, acked)
				}
				return
			}
			if err == nil && kept >= acked {
				t.Fatalf("--sync %s lost nothing of %d acknowledged messages: the simulated power cut kept unsynced writes, so it proves nothing", c.sync, acked)
			}
		})
	}
}

// TestCrashChild is not a test: it is the child process of the crash test, run by it alone.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashChildEnv) == "" {
		t.Skip("the crash test's child process")
	}
	stores := strings.Split(os.Getenv(crashChildEnv), ",")
	interval, err := broker.ParseSync(os.Getenv(crashSyncEnv))
	if err != nil {
		t.Fatal(err)
	}
	count, err := strconv.Atoi(os.Getenv(crashCountEnv))
	if err != nil {
		t.Fatal(err)
	}
	brokers := startCrashBrokers(t, stores, interval)
	nc, js := crashClient(t, brokers[0])
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), crashWait)
	defer cancel()
	cfg := jetstream.StreamConfig{Name: crashStream, Subjects: []string{"crash.>"}, Storage: jetstream.FileStorage, Replicas: len(stores)}
	for {
		// In a cluster JetStream answers once its meta leader is elected.
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.CreateStream(actx, cfg)
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create stream: %v", err)
		}
		t.Logf("create stream: %v", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	// The stream itself is on disk: what is at stake is the acknowledged messages alone.
	syscall.Sync()
	payload := make([]byte, crashMsgSize)
	for i := 1; i <= count; i++ {
		copy(payload, fmt.Sprintf("message %d", i))
		if _, err := js.Publish(ctx, "crash.m", payload); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	fmt.Printf("%s%d\n", crashAcked, count)
	// Wait for the SIGKILL (or for the test to go away).
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startCrashBrokers starts one broker per store with the sync setting; several form a cluster.
func startCrashBrokers(t *testing.T, stores []string, interval time.Duration) []*broker.Broker {
	t.Helper()
	var routes []string
	var ports []int
	if len(stores) > 1 {
		ports = testkit.FreePorts(t, len(stores))
		for _, p := range ports {
			routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
		}
	}
	var out []*broker.Broker
	for i, dir := range stores {
		opts := broker.Options{Listen: "127.0.0.1:-1", StoreDir: dir, SyncInterval: interval, Logger: slog.New(slog.DiscardHandler)}
		if len(stores) > 1 {
			opts.ServerName, opts.Cluster, opts.Routes = fmt.Sprintf("c%d", i+1), fmt.Sprintf("127.0.0.1:%d", ports[i]), routes
		}
		b, err := broker.Start(opts)
		if err != nil {
			t.Fatalf("broker %d: %v", i+1, err)
		}
		t.Cleanup(b.Shutdown)
		out = append(out, b)
	}
	return out
}

func crashClient(t *testing.T, b *broker.Broker) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// runCrashChild runs the child on stores, waits for its report, kills it and returns how many
// messages it had acknowledged.
func runCrashChild(t *testing.T, stores []string, sync string, count int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.v")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+strings.Join(stores, ","), crashSyncEnv+"="+sync, crashCountEnv+"="+strconv.Itoa(count))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the child: %v", err)
	}
	report := make(chan int, 1)
	var lines []string
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if n, ok := strings.CutPrefix(line, crashAcked); ok {
				v, _ := strconv.Atoi(n)
				report <- v
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
			lines = append(lines, line)
		}
		close(report)
	}()
	var acked int
	select {
	case n, ok := <-report:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("the child ended without reporting:\n%s", strings.Join(lines, "\n"))
		}
		acked = n
	case <-time.After(crashWait):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("no report from the child within %s", crashWait)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill the child: %v", err)
	}
	_ = cmd.Wait()
	return acked
}

// countAfterRestart starts the brokers on the crashed stores and returns the number of messages
// of the stream, once it answers with them all checked: message i is "message i".
func countAfterRestart(t *testing.T, stores []string, sync string) (int, error) {
	t.Helper()
	interval, err := broker.ParseSync(sync)
	if err != nil {
		t.Fatal(err)
	}
	brokers := startCrashBrokers(t, stores, interval)
	nc, js := crashClient(t, brokers[0])
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), crashWait)
	defer cancel()
	var last error
	for {
		// One attempt at a time: in a cluster the servers elect the stream's leader first.
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := js.Stream(actx, crashStream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = st.Info(actx); err == nil && (len(stores) == 1 || info.Cluster != nil && info.Cluster.Leader != "") {
				acancel()
				return checkCrashMessages(ctx, st, info.State)
			}
		}
		acancel()
		last = err
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the stream did not answer within %s: %w", crashWait, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkCrashMessages reads every message the stream kept and checks it is the one published
// with its sequence.
func checkCrashMessages(ctx context.Context, st jetstream.Stream, state jetstream.StreamState) (int, error) {
	if state.Msgs == 0 {
		return 0, nil
	}
	if state.FirstSeq != 1 || state.LastSeq != state.Msgs {
		return int(state.Msgs), fmt.Errorf("the stream kept messages %d to %d (%d of them): a gap", state.FirstSeq, state.LastSeq, state.Msgs)
	}
	for seq := uint64(1); seq <= state.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			return int(seq - 1), fmt.Errorf("message %d: %w", seq, err)
		}
		if want := fmt.Sprintf("message %d", seq); !strings.HasPrefix(string(m.Data), want+"\x00") || len(m.Data) != crashMsgSize {
			return int(seq - 1), fmt.Errorf("message %d holds %.20q, want %q", seq, m.Data, want)
		}
	}
	return int(state.Msgs), nil
}
