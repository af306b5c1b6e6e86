package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/pyjob"
)

// Restart policies (issue 23, item 9): a job that fails restarts under its document's policy,
// from what its inputs acknowledged, and the pipeline fails only once the policy is exhausted.

// flakySh forwards JSON lines and fails as its first argument says: "once MARKER" fails on its
// fifth block unless MARKER exists (creating it), "always" fails on its first block, "at V" fails
// on every block whose value is V (a poison block). A failure exits 1 without answering the
// block.
const flakySh = `#!/bin/sh
mode=$1
arg=$2
shift 2
in=
out=
while [ $# -gt 0 ]; do
	case $1 in
	-i) in=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	*) echo "flaky.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
exec 3<"$in" 4>"$out"
failAt=0
if [ "$mode" = once ] && [ ! -e "$arg" ]; then
	: >"$arg"
	failAt=5
fi
if [ "$mode" = always ]; then
	failAt=1
fi
n=0
while IFS= read -r line <&3; do
	n=$((n + 1))
	if [ "$n" = "$failAt" ]; then
		echo "flaky.sh: failing on block $n" >&2
		exit 1
	fi
	if [ "$mode" = at ] && [ "$line" = "$arg" ]; then
		echo "flaky.sh: value $line is poison" >&2
		exit 1
	fi
	echo "$line" >&4
done
`

// restartDoc writes a pipeline counter (count values) → job 2 → csv_sink and returns the document
// and the sink's file. job2 is job 2's kind and restart keys.
func restartDoc(c *cluster, name string, count int, job2 string) (doc, out string) {
	c.t.Helper()
	dir := filepath.Join(c.dir, "flaky")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "flaky.sh"), []byte(flakySh), 0o755); err != nil {
		c.t.Fatal(err)
	}
	out = filepath.Join(c.dir, name+".csv")
	doc = c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "5ms"}, "outputs": [1]},
    {"id": 2, %s, "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": %q}, "inputs": [2]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`, name, count, job2, out))
	return doc, out
}

func flakyExec(params ...string) string {
	return fmt.Sprintf(`"exec": {"path": "./flaky.sh", "params": ["%s"], "dependencies": "flaky"}`, strings.Join(params, `", "`))
}

// eventsOf lists the messages of a pipeline's events of one kind.
func eventsOf(st protocol.PipelineStatus, kind string) []string {
	var out []string
	for _, e := range st.Events {
		if e.Kind == kind {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestAJobThatFailsOnceRestartsFromItsAcknowledgedInputsAndThePipelineFinishesExact(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "4")
	marker := filepath.Join(c.dir, "failed-once")
	doc, out := restartDoc(c, "once", 20, flakyExec("once", marker)+
		`, "restart": {"policy": "on-failure", "max": 3, "backoff": "100ms"}`)
	c.submit(doc)
	st := waitFinished(c, "once")
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the job never ran its failing first run: %v", err)
	}
	var want []string
	for n := 1; n <= 20; n++ {
		want = append(want, fmt.Sprint(n))
	}
	if got := readLines(t, out)[1:]; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("the sink wrote %v, want every value once: %v", got, want)
	}
	j := jobStatus(st, 2)
	if j.Restarts != 1 || j.FailureRestarts != 1 || j.RestartMax != 3 {
		t.Errorf("job 2: restarts %d, after failure %d of %d; want 1, 1 of 3", j.Restarts, j.FailureRestarts, j.RestartMax)
	}
	restarts := eventsOf(st, "job restart")
	if len(restarts) != 1 || !strings.Contains(restarts[0], "flaky.sh 2 failed on worker wa") ||
		!strings.Contains(restarts[0], "restart 1 of 3 in 100ms") || !strings.Contains(restarts[0], "exit status 1") {
		t.Errorf("restart events %q; want one naming the job, its worker, the restart and why", restarts)
	}
	if r := eventsOf(st, "restarted"); len(r) != 1 || !strings.Contains(r[0], "(restart 1 of 3)") {
		t.Errorf("restarted events %q", r)
	}
	if hasEvent(st, "job failed") {
		t.Errorf("a failure the policy restarted was recorded as the job's end: %v", eventKinds(st))
	}
	text, errOut, code := c.marvelo("status", "once")
	if code != 0 || !strings.Contains(text, "1 (1/3 failed)") {
		t.Errorf("marvelo status once: exit %d: %s\n%s; want RESTARTS 1 (1/3 failed)", code, errOut, text)
	}
}

func TestAJobThatAlwaysFailsExhaustsItsRestartsAndFailsThePipelineSayingSo(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "4")
	doc, _ := restartDoc(c, "always", 20, flakyExec("always", "-")+
		`, "restart": {"policy": "on-failure", "max": 2, "backoff": "50ms"}`)
	c.submit(doc)
	var st protocol.PipelineStatus
	c.waitFor("the pipeline to fail", func() bool {
		st = c.status("always")
		return st.State == protocol.StateFailed
	})
	if !strings.Contains(st.Error, "flaky.sh 2 failed and its restart policy is exhausted (2 of 2 restarts used)") {
		t.Errorf("error %q does not say the restart policy is exhausted", st.Error)
	}
	if j := jobStatus(st, 2); j.State != protocol.StateFailed || j.FailureRestarts != 2 || j.Restarts != 2 {
		t.Errorf("job 2: %s, restarts %d (%d after failure); want failed after 2 restarts", j.State, j.Restarts, j.FailureRestarts)
	}
	restarts := eventsOf(st, "job restart")
	if len(restarts) != 2 || !strings.Contains(restarts[0], "restart 1 of 2 in 50ms") || !strings.Contains(restarts[1], "restart 2 of 2 in 100ms") {
		t.Errorf("restart events %q; want restart 1 of 2 in 50ms, then 2 of 2 in 100ms (doubled)", restarts)
	}
	if f := eventsOf(st, "job failed"); len(f) != 1 || !strings.Contains(f[0], "its restart policy is exhausted (2 of 2 restarts used)") {
		t.Errorf("job failed events %q; want one saying the policy is exhausted", f)
	}
}

// checkPoisonRound runs a job 2 that fails on the block of value 4 every time: the second
// failure at SQN 4 makes it a poison round, the next instance is not handed it, and the sink
// gets a dummy (0) there and every other value once.
func checkPoisonRound(c *cluster, name, job2 string) {
	t := c.t
	doc, out := restartDoc(c, name, 10, job2+`, "restart": {"policy": "on-failure", "max": 3, "backoff": "50ms", "skip_poison": true}`)
	c.submit(doc)
	st := waitFinished(c, name)
	if got := strings.Join(readLines(t, out)[1:], " "); got != "1 2 3 0 5 6 7 8 9 10" {
		t.Errorf("the sink wrote %s, want 1 2 3 0 5 6 7 8 9 10 (a dummy for the poison round)", got)
	}
	restarts := eventsOf(st, "job restart")
	if len(restarts) != 2 || !strings.Contains(restarts[0], " at SQN 4;") || !strings.Contains(restarts[1], " at SQN 4;") {
		t.Errorf("restart events %q; want two, each at SQN 4", restarts)
	}
	if p := eventsOf(st, "poison round"); len(p) != 1 || !strings.Contains(p[0], "round SQN 4 skipped as a dummy after 2 failures") {
		t.Errorf("poison round events %q", p)
	}
	if n := eventsOf(st, protocol.EventJobNotice); len(n) != 1 || !strings.Contains(n[0], "round SQN 4 skipped as a dummy") {
		t.Errorf("job notices %q; want the instance saying it skipped SQN 4", n)
	}
	if r := eventsOf(st, "restarted"); len(r) != 2 || !strings.Contains(r[1], "skipping round SQN 4") {
		t.Errorf("restarted events %q", r)
	}
	if j := jobStatus(st, 2); j.FailureRestarts != 2 {
		t.Errorf("job 2 restarted %d times after a failure, want 2", j.FailureRestarts)
	}
}

// TestAPoisonRoundOfAProgramIsSkippedAsADummyAfterFailingTwice: the round a shell program failed
// at is the oldest it left unanswered.
func TestAPoisonRoundOfAProgramIsSkippedAsADummyAfterFailingTwice(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "4")
	checkPoisonRound(c, "poison-sh", flakyExec("at", "4"))
}

// TestAPoisonRoundOfAPythonJobIsSkippedAsADummyAfterFailingTwice: the round a Python job failed
// at is the one its exception names ("run failed at SQN 4").
func TestAPoisonRoundOfAPythonJobIsSkippedAsADummyAfterFailingTwice(t *testing.T) {
	interp, err := pyjob.Interpreter("", "")
	if err == nil {
		err = exec.Command(interp, "-c", "pass").Run()
	}
	if err != nil {
		t.Skipf("no Python here: %v", err)
	}
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--slots", "4")
	src := filepath.Join(c.dir, "poisonpy")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	job := "from marvelo import PythonJob\n\n\nclass Poison(PythonJob):\n    def run(self, x):\n" +
		"        if x == 4:\n            raise ValueError(\"poison value\")\n        return x\n"
	if err := os.WriteFile(filepath.Join(src, "poison.py"), []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	checkPoisonRound(c, "poison-py", `"python": {"class": "poison:Poison", "dependencies": "poisonpy"}`)
}
