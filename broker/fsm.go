package broker

import (
	"fmt"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The lifecycle as a state machine: the states of a pipeline and of a job, the events that move
// them, and the one table of allowed transitions each. Every change of state in the control
// plane goes through pipelineState.to or jobState.to, which consult the table; a transition the
// table does not allow is refused (and logged by the caller), never applied.
//
// Locks: the control plane has one, mu. It guards the registry and the pipelines and is held
// only for memory updates — never across a request to a worker, a JetStream call or a KV write.
// Placement needs no lock of its own: choosing a worker and reserving its slot (setting the
// job's worker, which slotsUsed counts) happen under one hold of mu, so two placements at once
// never take the same slot. A pipeline being launched is marked launching; failover leaves its
// jobs to the end of the launch (launched), and relocate moves a job only from the worker it was
// asked to, so two reasons to move the same job at once move it once. The worker package has
// its own single lock (Worker.mu), never held across a request either.

// pipeState is a pipeline's state; its values are protocol's State constants.
type pipeState string

// jobPhase is a job's state; its values are protocol's State constants.
type jobPhase string

// terminal reports whether the pipeline has ended.
func (s pipeState) terminal() bool { return protocol.Terminal(string(s)) }

// terminal reports whether the job has ended.
func (s jobPhase) terminal() bool { return protocol.Terminal(string(s)) }

// pipeEvent is what happens to a pipeline.
type pipeEvent string

const (
	pevWaits     pipeEvent = "waits"      // no placement for every job yet
	pevPlaced    pipeEvent = "placed"     // every job has a worker; streams and jobs being prepared
	pevStarted   pipeEvent = "started"    // every job prepared; starting them
	pevJobWaits  pipeEvent = "job waits"  // a moved job found no worker
	pevRecovered pipeEvent = "recovered"  // the last waiting job was placed
	pevJobFailed pipeEvent = "job failed" // a job failed
	pevAborted   pipeEvent = "aborted"    // it could not start
	pevStop      pipeEvent = "stop"       // marvelo stop
	pevAllEnded  pipeEvent = "all ended"  // every job has ended (or was recorded ended)
)

var pipeEvents = []pipeEvent{pevWaits, pevPlaced, pevStarted, pevJobWaits, pevRecovered, pevJobFailed, pevAborted, pevStop, pevAllEnded}

var pipeStates = []pipeState{protocol.StatePending, protocol.StateStarting, protocol.StateRunning, protocol.StateDegraded,
	protocol.StateStopping, protocol.StateFinished, protocol.StateFailed, protocol.StateStopped}

// pipeTable is every allowed transition of a pipeline. A final state has none. A job failing
// while the pipeline stops does not fail it (stopping is asked for; the failure is the job's).
var pipeTable = map[pipeState]map[pipeEvent]pipeState{
	protocol.StatePending: {
		pevWaits: protocol.StatePending, pevPlaced: protocol.StateStarting, pevAborted: protocol.StateFailed,
		pevStop: protocol.StateStopping,
	},
	protocol.StateStarting: {
		pevStarted: protocol.StateRunning, pevJobWaits: protocol.StateDegraded, pevJobFailed: protocol.StateFailed,
		pevAborted: protocol.StateFailed, pevStop: protocol.StateStopping, pevAllEnded: protocol.StateFinished,
	},
	protocol.StateRunning: {
		pevJobWaits: protocol.StateDegraded, pevRecovered: protocol.StateRunning, pevJobFailed: protocol.StateFailed,
		pevAborted: protocol.StateFailed, pevStop: protocol.StateStopping, pevAllEnded: protocol.StateFinished,
	},
	protocol.StateDegraded: {
		pevJobWaits: protocol.StateDegraded, pevRecovered: protocol.StateRunning, pevJobFailed: protocol.StateFailed,
		pevAborted: protocol.StateFailed, pevStop: protocol.StateStopping, pevAllEnded: protocol.StateFinished,
	},
	protocol.StateStopping: {
		pevJobWaits: protocol.StateStopping, pevRecovered: protocol.StateStopping, pevJobFailed: protocol.StateStopping,
		pevStop: protocol.StateStopping, pevAllEnded: protocol.StateStopped,
	},
	protocol.StateFinished: {},
	protocol.StateFailed:   {},
	protocol.StateStopped:  {},
}

// nextPipe returns the state a pipeline in state from reaches on ev, or false if the table does
// not allow it.
func nextPipe(from pipeState, ev pipeEvent) (pipeState, bool) {
	to, ok := pipeTable[from][ev]
	return to, ok
}

// to applies ev to the pipeline. Callers hold mu. A final state closes endCh.
func (p *pipelineState) to(ev pipeEvent) error {
	next, ok := nextPipe(p.state, ev)
	if !ok {
		return fmt.Errorf("pipeline %s: %q is not allowed when %s", p.doc.Name, ev, p.state)
	}
	p.state = next
	if next.terminal() && p.endCh != nil {
		select {
		case <-p.endCh:
		default:
			close(p.endCh)
		}
	}
	return nil
}

// jobEvent is what happens to a job.
type jobEvent string

const (
	jevAssigned jobEvent = "assigned" // placed on a worker (first time, or moved there)
	jevWaits    jobEvent = "waits"    // no worker fits it
	jevRunning  jobEvent = "running"  // its worker reports it running
	jevFinished jobEvent = "finished" // its worker reports it finished
	jevFailed   jobEvent = "failed"   // its worker reports it failed, or it could not be moved
	jevStopped  jobEvent = "stopped"  // its worker reports it stopped, or the broker records it so
	// jevUnneeded: every consumer of its outputs has ended, so what it makes goes nowhere; the
	// broker records it finished and has its worker stop it (lifecycle.go, endUpstream).
	jevUnneeded jobEvent = "consumers ended"
)

var jobEvents = []jobEvent{jevAssigned, jevWaits, jevRunning, jevFinished, jevFailed, jevStopped, jevUnneeded}

var jobPhases = []jobPhase{protocol.StatePending, protocol.StateStarting, protocol.StateRunning,
	protocol.StateFinished, protocol.StateFailed, protocol.StateStopped}

// jobTable is every allowed transition of a job. A final state has none: a late report of an
// ended job changes nothing.
var jobTable = map[jobPhase]map[jobEvent]jobPhase{
	protocol.StatePending: {
		jevAssigned: protocol.StateStarting, jevWaits: protocol.StatePending, jevFailed: protocol.StateFailed,
		jevStopped: protocol.StateStopped, jevUnneeded: protocol.StateFinished,
	},
	protocol.StateStarting: {
		jevAssigned: protocol.StateStarting, jevWaits: protocol.StatePending, jevRunning: protocol.StateRunning,
		jevFinished: protocol.StateFinished, jevFailed: protocol.StateFailed, jevStopped: protocol.StateStopped,
		jevUnneeded: protocol.StateFinished,
	},
	protocol.StateRunning: {
		jevAssigned: protocol.StateStarting, jevWaits: protocol.StatePending, jevRunning: protocol.StateRunning,
		jevFinished: protocol.StateFinished, jevFailed: protocol.StateFailed, jevStopped: protocol.StateStopped,
		jevUnneeded: protocol.StateFinished,
	},
	protocol.StateFinished: {},
	protocol.StateFailed:   {},
	protocol.StateStopped:  {},
}

// nextJob returns the state a job in state from reaches on ev, or false.
func nextJob(from jobPhase, ev jobEvent) (jobPhase, bool) {
	to, ok := jobTable[from][ev]
	return to, ok
}

// to applies ev to the job. Callers hold mu.
func (j *jobState) to(ev jobEvent) error {
	next, ok := nextJob(j.state, ev)
	if !ok {
		return fmt.Errorf("%s: %q is not allowed when %s", j.job.Label(), ev, j.state)
	}
	j.state = next
	return nil
}

// reportEvent is the job event of a state a worker reports.
func reportEvent(state string) (jobEvent, bool) {
	switch state {
	case protocol.StateRunning:
		return jevRunning, true
	case protocol.StateFinished:
		return jevFinished, true
	case protocol.StateFailed:
		return jevFailed, true
	case protocol.StateStopped:
		return jevStopped, true
	}
	return "", false
}
