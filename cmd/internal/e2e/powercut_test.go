package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/crashkit"
	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The power cut of the head node, for a whole pipeline (issue 26; the same cut of one stream:
// cmd/internal/crashkit/broker_crash_test.go). The broker's --store lies on ext4 on a loop device
// (cmd/internal/crashkit); the workers' folders and the csv sink's file are on the normal disk, and
// every job is on a worker: the head node loses power, the workers do not. Mid-stream the broker
// is SIGKILLed and its disk copied at once, without the page cache; marvelo-broker starts again on
// the copy, on the same port, and the workers reconnect to it.
//
// With --sync always the stored pipeline resumes (same submission, same run) and the sink ends
// with every row exactly once. With --sync 2m the test records what the cut lost of what the
// broker had acknowledged — the pipeline itself, its run, rows missing or written twice, or a
// pipeline that no longer moves — and fails if it lost nothing: that half is the control, a
// harness that loses nothing there proves nothing with always.
//
// Needs root and loop devices: MARVELO_CRASH_TEST=1 (make test-crash).

const (
	powerCutRows     = 3000             // blocks of the counter: 1 per 2 ms, about 6 s
	powerCutAt       = powerCutRows / 3 // rows in the sink when the power goes
	powerCutLazyWait = 20 * time.Second // for the lazy case's pipeline to show its state
	powerCutStall    = 5 * time.Second  // a running pipeline whose sink does not move this long has stalled
	powerCutPipeline = "powercut"       // the pipeline's name
	powerCutInterval = "2ms"            // the counter's interval
	powerCutDiskSize = 2 << 30          // the broker's disk: its log stream and the pipes reserve 384 MiB
)

var recoveredRE = regexp.MustCompile(`msg="recovered saved state" pipelines=(\d+)`)

func TestPowerCutOfTheHeadNodeMidPipelineEndsExactWithSyncAlwaysAndLosesWithALazySync(t *testing.T) {
	crashkit.Require(t)
	t.Run("always", func(t *testing.T) {
		c, out, before := runUntilPowerCut(t, "always")
		if m := recoveredRE.FindStringSubmatch(c.broker.out.String()); m == nil || m[1] != "1" {
			t.Fatalf("the restarted broker did not recover the stored pipeline (want a line %q with pipelines=1)", "recovered saved state")
		}
		st := waitFinished(c, powerCutPipeline)
		checkExactlyOnce(t, out, powerCutRows)
		if diff := sameSubmission(before, st); diff != "" {
			t.Fatalf("the pipeline after the power cut is not the one submitted before it: %s", diff)
		}
		for _, j := range st.Jobs {
			if was := jobWorker(before, j.ID); was != j.Worker {
				t.Errorf("job %d ran on %s before the power cut and on %s after it", j.ID, was, j.Worker)
			}
		}
	})
	t.Run("2m", func(t *testing.T) {
		c, out, before := runUntilPowerCut(t, "2m")
		lost := powerCutLosses(c, out, before)
		if len(lost) == 0 {
			t.Fatalf("--sync 2m lost nothing the broker had acknowledged in this run (the pipeline resumed and the sink holds 1..%d once each): the simulated power cut kept unsynced writes, so the run with always proves nothing", powerCutRows)
		}
		t.Logf("--sync 2m: the power cut lost what the broker had acknowledged:\n  %s", strings.Join(lost, "\n  "))
	})
}

// runUntilPowerCut starts a stored broker with --sync sync on a loop device and two workers on
// the normal disk, submits counter (wa) → forward (wb) → csv_sink (wb), cuts the head node's
// power once a third of the rows are in the sink and starts the broker again on the disk the cut
// left. It returns the cluster, the sink's file and the pipeline's status just before the cut.
func runUntilPowerCut(t *testing.T, sync string) (*cluster, string, protocol.PipelineStatus) {
	t.Helper()
	disk := crashkit.NewDisk(t, powerCutDiskSize)
	// newCluster with the store on the loop device: newCluster itself puts it in the test's folder.
	port := testkit.FreePort(t)
	c := &cluster{t: t, listen: fmt.Sprintf("127.0.0.1:%d", port), url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		workers: map[string]*proc{}, dir: t.TempDir(), store: filepath.Join(disk.Dir, "store"),
		brokerArgs: []string{"--sync", sync}}
	c.startBroker()
	c.startWorkers("wa", "wb")
	out := filepath.Join(c.dir, powerCutPipeline+".csv")
	doc := c.writeDoc(powerCutPipeline+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": %q}, "outputs": [1], "node": "wa"},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2], "node": "wb"},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2], "node": "wb"}]}`,
		powerCutPipeline, powerCutRows, powerCutInterval, out))
	c.submit(doc)
	waitRows(c, out, powerCutAt)
	before := c.status(powerCutPipeline)
	if before.State != protocol.StateRunning {
		t.Fatalf("the pipeline is %s before the power cut, want running", before.State)
	}
	// The power cut: the broker dies, the disk keeps only what reached the device.
	c.broker.kill()
	crashed := disk.AfterPowerCut(t)
	atCut := len(readLinesIfAny(out)) - 1
	c.store = filepath.Join(crashed.Dir, "store")
	c.startBroker()
	t.Logf("--sync %s: power cut at %d of %d rows; the broker restarted on the disk the cut left", sync, atCut, powerCutRows)
	return c, out, before
}

// sameSubmission says how after differs from before as a submission: its time, its run, its
// runs ("": the same).
func sameSubmission(before, after protocol.PipelineStatus) string {
	var diffs []string
	if !before.Submitted.Equal(after.Submitted) {
		diffs = append(diffs, fmt.Sprintf("submitted at %s, before the cut at %s", after.Submitted.Format(time.RFC3339Nano), before.Submitted.Format(time.RFC3339Nano)))
	}
	if before.Run != after.Run || len(before.Runs) != len(after.Runs) {
		diffs = append(diffs, fmt.Sprintf("run %d of %d, before the cut run %d of %d", after.Run, len(after.Runs), before.Run, len(before.Runs)))
	}
	return strings.Join(diffs, "; ")
}

// powerCutLosses watches the pipeline after the restart, bounded, and returns what it lost of
// what the broker had acknowledged before the cut: nothing when it resumes and finishes with
// every row once.
func powerCutLosses(c *cluster, out string, before protocol.PipelineStatus) []string {
	c.t.Helper()
	var lost []string
	st, gone, err := lazyOutcome(c, out)
	switch {
	case gone:
		lost = append(lost, fmt.Sprintf("the pipeline: the restarted broker knows no pipeline %q (submitted and acknowledged at %s)", powerCutPipeline, before.Submitted.Format(time.RFC3339Nano)))
	case err != nil:
		lost = append(lost, err.Error())
	default:
		if diff := sameSubmission(before, st); diff != "" {
			lost = append(lost, "the submission: "+diff)
		}
	}
	rows, missing, dups := tally(readLinesIfAny(out), powerCutRows)
	if len(missing) > 0 || len(dups) > 0 {
		lost = append(lost, fmt.Sprintf("rows: the sink holds %d rows, %d of 1..%d missing (%s), %d written twice (%s)",
			rows, len(missing), powerCutRows, head(missing), len(dups), head(dups)))
	}
	return lost
}

// lazyOutcome polls the pipeline's status until it has finished, failed or stalled (its sink
// still for powerCutStall), or is unknown to the broker (gone), or powerCutLazyWait passes.
func lazyOutcome(c *cluster, out string) (st protocol.PipelineStatus, gone bool, err error) {
	c.t.Helper()
	deadline := time.Now().Add(powerCutLazyWait)
	rows, moved := len(readLinesIfAny(out)), time.Now()
	for {
		stdout, errOut, code := c.marvelo("status", powerCutPipeline, "--json")
		if code != 0 {
			if strings.Contains(errOut, "no pipeline named") {
				return st, true, nil
			}
			err = fmt.Errorf("marvelo status %s: exit %d: %s", powerCutPipeline, code, strings.TrimSpace(errOut))
		} else {
			var sts []protocol.PipelineStatus
			if jerr := json.Unmarshal([]byte(stdout), &sts); jerr != nil || len(sts) != 1 {
				return st, false, fmt.Errorf("marvelo status %s --json: %v: %s", powerCutPipeline, jerr, stdout)
			}
			st, err = sts[0], nil
			switch st.State {
			case protocol.StateFinished:
				return st, false, nil
			case protocol.StateFailed:
				return st, false, fmt.Errorf("the pipeline's state: it failed after the restart: %s", st.Error)
			}
		}
		if n := len(readLinesIfAny(out)); n != rows {
			rows, moved = n, time.Now()
		}
		now := time.Now()
		if now.Sub(moved) > powerCutStall {
			return st, false, fmt.Errorf("the pipeline's progress: %s, its sink still at %d rows for %s after the restart (%v)", st.State, rows-1, powerCutStall, err)
		}
		if now.After(deadline) {
			return st, false, fmt.Errorf("the pipeline's progress: %s, not finished %s after the restart (%v)", st.State, powerCutLazyWait, err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-c.t.Context().Done():
			return st, false, fmt.Errorf("the test ended watching the pipeline after the restart")
		}
	}
}

// tally counts a csv sink's rows (the header first) against 1..n: how many, which are missing,
// which are there more than once.
func tally(lines []string, n int) (rows int, missing, dups []string) {
	if len(lines) == 0 {
		lines = []string{""}
	}
	seen := map[string]int{}
	for _, l := range lines[1:] {
		seen[l]++
	}
	for i := 1; i <= n; i++ {
		switch seen[fmt.Sprint(i)] {
		case 0:
			missing = append(missing, fmt.Sprint(i))
		case 1:
		default:
			dups = append(dups, fmt.Sprint(i))
		}
	}
	return len(lines) - 1, missing, dups
}
