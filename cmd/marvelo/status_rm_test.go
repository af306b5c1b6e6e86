package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestStatusSummarisesAndRmForgetsEndedPipelines: marvelo status without a name prints one line
// per pipeline (state, jobs running of all, run, age, note), not every pipeline in full; with a
// name, the pipeline in full. top leaves ended pipelines out unless asked (--all, or by name).
// marvelo rm refuses a running pipeline and forgets an ended one: gone from status, top and logs,
// its name free to start again at run 1.
func TestStatusSummarisesAndRmForgetsEndedPipelines(t *testing.T) {
	env, err := local.Start(local.Options{Registry: registry, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	url := env.Broker.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := []byte(`{"name": "done", "jobs": [
		{"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
		{"id": 2, "type": "discard", "inputs": [1]}]}`)
	live := []byte(`{"name": "live", "jobs": [
		{"id": 1, "type": "counter", "args": {"interval": "10ms"}, "outputs": [1]},
		{"id": 2, "type": "discard", "inputs": [1]}]}`)
	for _, doc := range [][]byte{done, live} {
		if _, err := env.Client.Submit(ctx, doc, ""); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = env.Client.Stop(context.Background(), "live") }()
	state := func(name string) string {
		st, err := env.Client.Status(ctx, name)
		if err != nil || len(st) != 1 {
			return ""
		}
		for _, j := range st[0].Jobs {
			if st[0].State == protocol.StateRunning && j.State != protocol.StateRunning {
				return "starting" // every job running
			}
		}
		return st[0].State
	}
	testkit.WaitFor(t, 30*time.Second, "done to finish and live to run", func() bool {
		return state("done") == protocol.StateFinished && state("live") == protocol.StateRunning
	})

	r := runApp(t, "status", "--broker", url)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "PIPELINE") ||
		!strings.Contains(lines[1], "done") || !strings.Contains(lines[1], "finished") || !strings.Contains(lines[1], "0/2") || !strings.Contains(lines[1], "ended ") ||
		!strings.Contains(lines[2], "live") || !strings.Contains(lines[2], "running") || !strings.Contains(lines[2], "2/2") {
		t.Errorf("marvelo status: exit %d, want a header and one line per pipeline:\n%s", r.code, r.stdout)
	}
	if !strings.Contains(r.stderr, "1 ended") || !strings.Contains(r.stderr, "marvelo rm") {
		t.Errorf("marvelo status: no hint about the ended pipeline: %q", r.stderr)
	}
	if full := runApp(t, "status", "live", "--broker", url); full.code != 0 || !strings.Contains(full.stdout, "JOB") || !strings.Contains(full.stdout, "submitted") {
		t.Errorf("marvelo status live: exit %d, want it in full with its events:\n%s", full.code, full.stdout)
	}

	topPipelines := func(args ...string) map[string]bool {
		r := runApp(t, append([]string{"top", "--once", "--json", "--interval", "100ms", "--broker", url}, args...)...)
		var rows []topRow
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rows) != nil {
			t.Fatalf("marvelo top %v: exit %d: %s%s", args, r.code, r.stdout, r.stderr)
		}
		seen := map[string]bool{}
		for _, row := range rows {
			seen[row.Pipeline] = true
		}
		return seen
	}
	if seen := topPipelines(); seen["done"] || !seen["live"] {
		t.Errorf("top shows %v, want live and not the ended done", seen)
	}
	if seen := topPipelines("--all"); !seen["done"] || !seen["live"] {
		t.Errorf("top --all shows %v, want both", seen)
	}
	if seen := topPipelines("done"); !seen["done"] {
		t.Errorf("top done shows %v, want done", seen)
	}

	if r := runApp(t, "rm", "live", "--broker", url); r.code != 1 || !strings.Contains(r.stderr, "pipeline live is still running: stop it first (marvelo stop live)") {
		t.Errorf("rm live: exit %d: %s", r.code, r.stderr)
	}
	if r := runApp(t, "rm", "done", "--broker", url); r.code != 0 || !strings.Contains(r.stderr, "pipeline done removed") {
		t.Fatalf("rm done: exit %d: %s", r.code, r.stderr)
	}
	if r := runApp(t, "status", "--broker", url); strings.Contains(r.stdout, "done") || !strings.Contains(r.stdout, "live") {
		t.Errorf("status after rm done:\n%s", r.stdout)
	}
	for _, args := range [][]string{{"status", "done"}, {"logs", "done"}, {"rm", "done"}} {
		if r := runApp(t, append(args, "--broker", url)...); r.code != 1 || !strings.Contains(r.stderr, `no pipeline named "done"`) {
			t.Errorf("%v after rm: exit %d: %s", args, r.code, r.stderr)
		}
	}
	if _, err := env.Client.Submit(ctx, done, ""); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "done to finish again", func() bool { return state("done") == protocol.StateFinished })
	if st, err := env.Client.Status(ctx, "done"); err != nil || st[0].Run != 1 || len(st[0].Runs) != 1 {
		t.Errorf("done submitted again: %v %+v, want run 1 of 1", err, st)
	}
}
