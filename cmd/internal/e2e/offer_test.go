package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Placement by offer (issue 11 item 7): the broker offers each job on its groups' subjects, the
// workers that can take it bid, and the chosen one's acceptance books the slot.

// sourceDoc writes a pipeline of one counter offered to groups, into a CSV sink on the head node.
func sourceDoc(c *cluster, name string, count int, groups ...string) (string, string) {
	out := filepath.Join(c.dir, name+".csv")
	g := `"` + strings.Join(groups, `", "`) + `"`
	return c.writeDoc(name+".json", fmt.Sprintf(`{"name": %q, "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "groups": [%s]},
    {"id": 2, "type": "csv_sink", "args": {"path": %q}, "inputs": [1], "groups": ["LOCAL"]}]}`, name, count, g, out)), out
}

func TestOfferTwoPipelinesAtOnceForOneFreeSlotPlaceExactlyOne(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("solo", "--groups", "solo", "--slots", "1")
	docs := map[string]string{}
	for _, name := range []string{"race1", "race2"} {
		docs[name], _ = sourceDoc(c, name, 1000000, "solo") // runs far longer than the test
	}
	var wg sync.WaitGroup
	codes := map[string]string{}
	var mu sync.Mutex
	for name, doc := range docs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errOut, code := c.marvelo("submit", doc)
			mu.Lock()
			defer mu.Unlock()
			if code != 0 {
				codes[name] = fmt.Sprintf("exit %d: %s", code, errOut)
			}
		}()
	}
	wg.Wait()
	for name, why := range codes {
		t.Fatalf("submit %s: %s", name, why)
	}
	var placed, waiting []protocol.PipelineStatus
	c.waitFor("one pipeline running and the other pending", func() bool {
		placed, waiting = nil, nil
		for name := range docs {
			switch st := c.status(name); st.State {
			case protocol.StateRunning:
				placed = append(placed, st)
			case protocol.StatePending:
				waiting = append(waiting, st)
			}
		}
		return len(placed)+len(waiting) == 2
	})
	if len(placed) != 1 || len(waiting) != 1 {
		t.Fatalf("%d pipelines running and %d pending, want exactly one of each", len(placed), len(waiting))
	}
	if w := jobWorker(placed[0], 1); w != "solo" {
		t.Fatalf("%s: counter on %q, want solo", placed[0].Name, w)
	}
	if w := jobWorker(waiting[0], 1); w != "" {
		t.Fatalf("%s is pending with its counter on %q: a slot booked twice", waiting[0].Name, w)
	}
	for _, want := range []string{"counter 1", "group solo", "worker solo: no free slot"} {
		if !strings.Contains(waiting[0].Reason, want) {
			t.Errorf("%s pending with reason %q, which does not say %q", waiting[0].Name, waiting[0].Reason, want)
		}
	}
	// The slot freed by a stop goes to the pending pipeline.
	if _, errOut, code := c.marvelo("stop", placed[0].Name, "--force"); code != 0 {
		t.Fatalf("stop %s: exit %d: %s", placed[0].Name, code, errOut)
	}
	c.waitFor(waiting[0].Name+" to be placed on the freed slot", func() bool {
		st := c.status(waiting[0].Name)
		return st.State == protocol.StateRunning && jobWorker(st, 1) == "solo"
	})
	if _, errOut, code := c.marvelo("stop", waiting[0].Name, "--force"); code != 0 {
		t.Fatalf("stop %s: exit %d: %s", waiting[0].Name, code, errOut)
	}
}

func TestOfferAWorkerWithoutPython3DeclinesAPythonJobAndAnotherOfTheGroupTakesIt(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	noPython := t.TempDir() // a PATH with nothing on it: no python3
	env := append(withoutEnv(os.Environ(), "PATH"), "PATH="+noPython)
	c.startWorkerEnv("nopy", env, "--groups", "py")
	c.addDependencies("proto", "proto.py")
	rec := filepath.Join(c.dir, "py.jsonl")
	const count = 50
	doc := c.writeDoc("py.json", fmt.Sprintf(`{"name": "py", "jobs": [
    {"id": 1, "type": "counter", "args": {"count": %d, "interval": "1ms"}, "outputs": [1], "groups": ["LOCAL"]},
    {"id": 2, "exec": {"path": "./proto.py", "params": ["--record", %q], "dependencies": "proto"},
     "inputs": [1], "groups": ["py"]}],
  "pipes": [{"id": 1, "codec": "json"}]}`, count, rec))
	c.submit(doc)
	var st protocol.PipelineStatus
	c.waitFor("py to wait pending for a worker with python3", func() bool {
		st = c.status("py")
		return st.State == protocol.StatePending && st.Reason != ""
	})
	if want := "worker nopy: ./proto.py needs python3, which is not on PATH"; !strings.Contains(st.Reason, want) {
		t.Fatalf("pending with reason %q, which does not say %q", st.Reason, want)
	}
	c.startWorker("withpy", "--groups", "py")
	st = waitFinished(c, "py")
	if w := jobWorker(st, 2); w != "withpy" {
		t.Fatalf("proto.py ran on %q, want withpy", w)
	}
	if rows := readLines(t, rec); len(rows) != count {
		t.Fatalf("proto.py recorded %d rounds, want %d", len(rows), count)
	}
}

func TestOfferHonoursTheGroupOrderOfAJob(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("wa", "--groups", "a")
	c.startWorker("wb", "--groups", "b")
	for _, tc := range []struct {
		name, want string
		groups     []string
	}{
		{"orderba", "wb", []string{"b", "a"}},
		{"orderab", "wa", []string{"a", "b"}},
	} {
		doc, out := sourceDoc(c, tc.name, 20, tc.groups...)
		c.submit(doc)
		st := waitFinished(c, tc.name)
		if w := jobWorker(st, 1); w != tc.want {
			t.Errorf("%s: counter with groups %v placed on %q, want %q", tc.name, tc.groups, w, tc.want)
		}
		checkExactlyOnce(t, out, 20)
	}
}

// withoutEnv returns env without the variable key.
func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// TestOfferGroupSubjectsAreGrantedToExactlyTheWorkersGroups: with per-worker identities, a
// worker hears the offers of its own groups (and bids, and is placed) but may not subscribe to
// another group's subjects nor to every group's.
func TestOfferGroupSubjectsAreGrantedToExactlyTheWorkersGroups(t *testing.T) {
	c := newCluster(t, clusterOpts{identities: true})
	c.startWorker("wg", "--groups", "g1")
	c.startWorker("wother", "--groups", "g2")
	a := c.attacker("wg") // a second connection of wg's identity
	a.subscribeRefused("another group's offers", protocol.GroupSubject("g2", ">"))
	a.subscribeRefused("every group's offers", "marvelo.group.>")
	own, err := a.nc.SubscribeSync(protocol.GroupSubject("g1", protocol.VerbOffer))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	doc, out := sourceDoc(c, "granted", 30, "g1")
	c.submit(doc)
	m, err := own.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatalf("no offer heard on wg's own group: %v", err)
	}
	var o protocol.Offer
	if err := json.Unmarshal(m.Data, &o); err != nil || o.Pipeline != "granted" || o.Group != "g1" {
		t.Fatalf("offer %s (%v), want one of pipeline granted to group g1", m.Data, err)
	}
	st := waitFinished(c, "granted")
	if w := jobWorker(st, 1); w != "wg" {
		t.Fatalf("counter placed on %q, want wg (the only worker of g1)", w)
	}
	checkExactlyOnce(t, out, 30)
	select {
	case err := <-a.errs:
		t.Fatalf("wg's own group subject was refused: %v", err)
	default:
	}
	if got := c.refusedCount("wother"); got != 0 {
		t.Errorf("marvelo workers counts %d refusals for wother, want 0", got)
	}
}

// TestOfferDrainOfAGroupWithShutdownMovesItsJobsAndItsWorkersExit: `marvelo drain --group g
// --shutdown`, announced on the group's subject, moves the job off g's workers to the next group
// of the job exactly once, and every worker of g exits 0.
func TestOfferDrainOfAGroupWithShutdownMovesItsJobsAndItsWorkersExit(t *testing.T) {
	c := newCluster(t, clusterOpts{})
	c.startWorker("g1", "--groups", "g")
	c.startWorker("g2", "--groups", "g")
	c.startWorker("other", "--groups", "h")
	const n = 3000
	doc, out := sourceDoc(c, "grpdrain", n, "g", "h")
	c.submit(doc)
	waitRows(c, out, 300)
	from := jobWorker(c.status("grpdrain"), 1)
	if from != "g1" && from != "g2" {
		t.Fatalf("counter placed on %q, want a worker of group g", from)
	}
	_, errOut, code := c.marvelo("drain", "--group", "g", "--shutdown")
	if code != 0 {
		t.Fatalf("drain --group g --shutdown: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "moved grpdrain: counter 1") {
		t.Errorf("drain output %q does not name the moved counter", errOut)
	}
	for _, w := range []string{"g1", "g2"} {
		p := c.workers[w]
		select {
		case <-p.done:
		case <-time.After(leaveGraceLimit):
			t.Fatalf("worker %s did not exit within %s of the shutdown", w, leaveGraceLimit)
		}
		if code := p.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("worker %s exited %d after the shutdown, want 0", w, code)
		}
	}
	st := waitFinished(c, "grpdrain")
	checkExactlyOnce(t, out, n)
	if w := jobWorker(st, 1); w != "other" {
		t.Fatalf("counter finished on %q, want other (group h)", w)
	}
	if ms := moves(st); len(ms) != 1 || !strings.Contains(ms[0], "from worker "+from) {
		t.Fatalf("moves: %v", ms)
	}
}
