package broker

import (
	"fmt"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The lifecycle's specification, transition by transition: every pair of state and event not
// listed here must be refused.
const pipeSpec = `
pending  waits      pending
pending  placed     starting
pending  aborted    failed
pending  stop       stopping
starting started    running
starting job-waits  degraded
starting job-failed failed
starting aborted    failed
starting stop       stopping
starting all-ended  finished
running  job-waits  degraded
running  recovered  running
running  job-failed failed
running  aborted    failed
running  stop       stopping
running  all-ended  finished
degraded job-waits  degraded
degraded recovered  running
degraded job-failed failed
degraded aborted    failed
degraded stop       stopping
degraded all-ended  finished
stopping job-waits  stopping
stopping recovered  stopping
stopping job-failed stopping
stopping stop       stopping
stopping all-ended  stopped
`

const jobSpec = `
pending  assigned starting
pending  waits    pending
pending  failed   failed
pending  stopped  stopped
pending  consumers-ended finished
starting assigned starting
starting waits    pending
starting running  running
starting finished finished
starting failed   failed
starting stopped  stopped
starting consumers-ended finished
running  assigned starting
running  waits    pending
running  running  running
running  finished finished
running  failed   failed
running  stopped  stopped
running  consumers-ended finished
`

func parseSpec(t *testing.T, spec string) map[[2]string]string {
	t.Helper()
	out := map[[2]string]string{}
	for _, line := range strings.Split(strings.TrimSpace(spec), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("bad spec line %q", line)
		}
		out[[2]string{f[0], strings.ReplaceAll(f[1], "-", " ")}] = f[2]
	}
	return out
}

func TestEveryPipelineStateAndEventFollowsTheSpecification(t *testing.T) {
	spec := parseSpec(t, pipeSpec)
	for _, s := range pipeStates {
		for _, ev := range pipeEvents {
			want, allowed := spec[[2]string{string(s), string(ev)}]
			got, ok := nextPipe(s, ev)
			switch {
			case ok != allowed:
				t.Errorf("pipeline %s on %q: allowed %v, want %v", s, ev, ok, allowed)
			case ok && string(got) != want:
				t.Errorf("pipeline %s on %q → %s, want %s", s, ev, got, want)
			}
		}
	}
	if len(pipeTable) != len(pipeStates) {
		t.Errorf("the table has %d states, the lifecycle %d", len(pipeTable), len(pipeStates))
	}
}

func TestEveryJobStateAndEventFollowsTheSpecification(t *testing.T) {
	spec := parseSpec(t, jobSpec)
	for _, s := range jobPhases {
		for _, ev := range jobEvents {
			want, allowed := spec[[2]string{string(s), string(ev)}]
			got, ok := nextJob(s, ev)
			switch {
			case ok != allowed:
				t.Errorf("job %s on %q: allowed %v, want %v", s, ev, ok, allowed)
			case ok && string(got) != want:
				t.Errorf("job %s on %q → %s, want %s", s, ev, got, want)
			}
		}
	}
}

func TestFinalStatesAcceptNoEvent(t *testing.T) {
	for _, s := range pipeStates {
		if !s.terminal() {
			continue
		}
		for _, ev := range pipeEvents {
			if _, ok := nextPipe(s, ev); ok {
				t.Errorf("final pipeline state %s accepts %q", s, ev)
			}
		}
	}
	for _, s := range jobPhases {
		if !s.terminal() {
			continue
		}
		for _, ev := range jobEvents {
			if _, ok := nextJob(s, ev); ok {
				t.Errorf("final job state %s accepts %q", s, ev)
			}
		}
	}
}

func TestEveryNonFinalPipelineStateCanBeStoppedAndEnds(t *testing.T) {
	// From every state that has not ended, a stop followed by the end of the jobs ends stopped:
	// no state can be left stopping.
	for _, s := range pipeStates {
		if s.terminal() {
			continue
		}
		p := &pipelineState{doc: &pipeline.Pipeline{Name: "p"}, state: s, endCh: make(chan struct{})}
		if err := p.to(pevStop); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if err := p.to(pevAllEnded); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if p.state != protocol.StateStopped {
			t.Errorf("%s → stop → all ended: %s, want stopped", s, p.state)
		}
		select {
		case <-p.endCh:
		default:
			t.Errorf("%s: ended without closing endCh", s)
		}
	}
}

func TestRefusedTransitionLeavesTheStateAndNamesIt(t *testing.T) {
	j := &jobState{job: &pipeline.Job{ID: 2, Type: "forward"}, state: protocol.StateFinished}
	err := j.to(jevRunning)
	if err == nil || j.state != protocol.StateFinished {
		t.Fatalf("finished job took \"running\": state %s, err %v", j.state, err)
	}
	if want := fmt.Sprintf("%s: %q is not allowed when finished", j.job.Label(), jevRunning); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestEveryWorkerReportIsAJobEvent(t *testing.T) {
	for _, s := range []string{protocol.StateRunning, protocol.StateFinished, protocol.StateFailed, protocol.StateStopped} {
		if _, ok := reportEvent(s); !ok {
			t.Errorf("report %q has no event", s)
		}
	}
	for _, s := range []string{protocol.StatePending, protocol.StateStarting, "bogus"} {
		if _, ok := reportEvent(s); ok {
			t.Errorf("report %q is accepted; a worker never reports it", s)
		}
	}
}
