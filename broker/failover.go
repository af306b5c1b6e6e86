package broker

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/marvelo/marvelo/pipeline"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Failover: the jobs of a worker that is gone move to another.

// workerLost moves the jobs of a worker that is gone (DESIGN.md §8): each to its node, else the
// best live worker of its groups in order; LOCAL jobs stay on the head node. A job no worker can
// take waits as pending and its pipeline shows degraded, until a fitting worker joins.
func (c *control) workerLost(name, why string) {
	detected := time.Now()
	c.access.revoke(name, "", 0) // access (issue 12): before any of its jobs starts elsewhere
	var lost []jobRef
	c.mu.Lock()
	for pname, p := range c.pipelines {
		if p.state.terminal() || p.launching {
			continue // a pipeline being launched relocates its lost jobs at the end of launch
		}
		for id, j := range p.jobs {
			if j.worker == name && !j.state.terminal() {
				lost = append(lost, jobRef{pname, id})
			}
		}
	}
	c.mu.Unlock()
	if len(lost) == 0 {
		return
	}
	sort.Slice(lost, func(i, k int) bool {
		if lost[i].pipeline != lost[k].pipeline {
			return lost[i].pipeline < lost[k].pipeline
		}
		return lost[i].job < lost[k].job
	})
	for _, r := range lost {
		c.event(r.pipeline, r.job, "worker lost", fmt.Sprintf("job %d: worker %s %s", r.job, name, why))
		c.relocate(r, name, detected)
	}
}

// relocate places one job anew — with the jobs chained to it, which hold their blocks in one
// worker's process and so move together (chain.go) — moves their input consumers to the new
// epoch and starts them. from is the worker the job is taken from ("" for a pending job): a job
// that has moved meanwhile (two reasons to move it at once) is left alone. The jobs are offered
// (placement by offer, which reserves the chosen worker's slot) without any lock, producers
// first and each beside its chain producer by preference, so the chain forms again where it can;
// they are marked placing meanwhile so a second move of them waits its turn, and what changed
// meanwhile is checked again under mu.
func (c *control) relocate(r jobRef, from string, since time.Time) {
	ctx := c.context() // the control plane's: a move ends with it
	c.mu.Lock()
	p, j, ok := c.movable(r, from)
	if !ok || j.placing {
		c.mu.Unlock()
		return // nothing to move, or another move of it is offering it right now
	}
	moves := c.chainMoves(p, r.job, from)
	c.epoch++
	newEpoch := c.epoch
	doc := p.doc
	c.mu.Unlock()
	defer c.kickedMeanwhile(c.kicks.Load(), r.pipeline, r.job) // placement.go
	c.offerMoves(ctx, doc, moves, newEpoch)                    // offers and the reservations: no lock held

	c.mu.Lock()
	var stale map[int]string // reserved for jobs that moved or ended meanwhile
	var waits []eventNote
	for _, m := range moves {
		jm := p.jobs[m.id]
		jm.placing = false
		if _, _, ok := c.movable(jobRef{r.pipeline, m.id}, m.from); !ok {
			if m.worker != "" {
				if stale == nil {
					stale = map[int]string{}
				}
				stale[m.id] = m.worker
			}
			m.worker, m.gone = "", true
			continue
		}
		// The instance left behind counted what it read and wrote: the next one's counts go on
		// from there (its own start from 0), as marvelo status and top show them.
		jm.prior, jm.stats = jm.stats.Plus(jm.prior), protocol.JobStats{}
		if m.worker == "" {
			again := jm.state == protocol.StatePending // a retry that found no worker either
			jm.worker, jm.waiting = "", m.reason
			c.jobTo(jm, jevWaits)
			if c.pipeTo(p, pevJobWaits) && p.state == protocol.StateDegraded {
				p.reason = fmt.Sprintf("%s: %s", jm.job.Label(), m.reason)
			}
			if !again {
				waits = append(waits, eventNote{m.id, "pending", fmt.Sprintf("%s waits for a worker: %s", jm.job.Label(), m.reason)})
			}
			continue
		}
		m.oldEpoch = jm.epoch
		jm.worker, jm.epoch, jm.recovered = m.worker, newEpoch, false
		c.jobTo(jm, jevAssigned)
		jm.restarts++
		// A restart after a failure (restart.go) is this move from pending; its instances skip a
		// poison round, moved or not.
		m.restart, m.skip = jm.restartNote, jm.skipSQN
		jm.restartNote = ""
	}
	chains := p.chains() // the pipes of the jobs placed together on one worker are chained again
	c.mu.Unlock()
	if stale != nil {
		c.releaseReservations(r.pipeline, stale, newEpoch) // moved or ended meanwhile
	}
	c.events(r.pipeline, waits...)
	c.startMoves(ctx, p, moves, newEpoch, chains)

	c.mu.Lock()
	if p.state == protocol.StateDegraded && !hasPending(p) && c.pipeTo(p, pevRecovered) {
		p.reason = ""
	}
	c.mu.Unlock()
	c.moveEvents(r, moves, from, since)
}

// move is one job of a relocation.
type move struct {
	id       int
	from     string // the worker it is taken from, "" for a pending job
	oldEpoch uint64
	worker   string // where it goes; "" when no worker took it (reason says why)
	reason   string
	gone     bool // it moved or ended meanwhile: this relocation leaves it
	failed   bool // its prepare or start failed (reported as its failure)
	restart  string
	skip     uint64
}

// chainMoves marks job id and the jobs chained to it (chain.go) as placing and returns their
// moves, id first. The chained jobs run where it ran, so they leave with it (its worker died or
// leaves; a job with a restart policy is never chained). A chained job that another move is
// placing already, or that has ended, is left out. Callers hold mu.
func (c *control) chainMoves(p *pipelineState, id int, from string) []*move {
	p.jobs[id].placing = true
	moves := []*move{{id: id, from: from}}
	for _, other := range p.chainGroup(id)[1:] {
		jo := p.jobs[other]
		if jo == nil || jo.placing || jo.state.terminal() {
			continue
		}
		jo.placing = true
		moves = append(moves, &move{id: other, from: jo.worker, oldEpoch: jo.epoch})
	}
	return moves
}

// offerMoves offers the moving jobs, producers first, each preferring the worker its chain
// producer of this move went to (or, spread, avoiding its producers'), and records where each
// went or why none took it. No lock is held.
func (c *control) offerMoves(ctx context.Context, doc *pipeline.Pipeline, moves []*move, epoch uint64) {
	byID := map[int]*move{}
	for _, m := range moves {
		byID[m.id] = m
	}
	order := []int{moves[0].id}
	if len(moves) > 1 {
		order = order[:0]
		for _, id := range doc.PlacementOrder() {
			if byID[id] != nil {
				order = append(order, id)
			}
		}
	}
	ends := doc.Endpoints()
	placed := func(job int) string {
		if m := byID[job]; m != nil {
			return m.worker
		}
		return ""
	}
	for _, id := range order {
		m := byID[id]
		m.worker, m.reason = c.offerJobPreferring(ctx, doc.Name, doc.JobByID(id), epoch, preferenceOf(doc, ends, id, placed))
	}
}

// startMoves moves the input consumers of the placed jobs to the new epoch and fences their
// outputs (fence.go), then prepares and starts each with its chained pipes; a job whose move
// fails is reported failed (its restart policy may restart it).
func (c *control) startMoves(ctx context.Context, p *pipelineState, moves []*move, newEpoch uint64, chains map[int]uint64) {
	placement := map[int]string{}
	for _, m := range moves {
		if m.worker == "" {
			continue
		}
		if err := c.rebindInputs(ctx, p.doc, p.doc.JobByID(m.id), m.oldEpoch, newEpoch); err != nil {
			c.moveFailed(p.doc.Name, m, newEpoch, err)
			continue
		}
		c.fenceOutputs(ctx, p.doc, p.doc.JobByID(m.id)) // fence.go: the old instance can no longer publish
		placement[m.id] = m.worker
	}
	if len(placement) == 0 {
		return
	}
	epochs := c.epochs(p.doc.Name)
	byID := map[int]*move{}
	for _, m := range moves {
		byID[m.id] = m
	}
	for _, a := range c.assignments(p, placement, func(id int) uint64 { return epochs[id] }, chains) {
		m := byID[a.a.Job.ID]
		if m == nil || placement[m.id] == "" {
			continue
		}
		a.a.SkipSQN = m.skip
		err := c.requestWorker(ctx, m.worker, protocol.VerbPrepare, a.a)
		if err == nil {
			err = c.requestWorker(ctx, m.worker, protocol.VerbStart, a.a.Ref())
		}
		if err != nil {
			c.moveFailed(p.doc.Name, m, newEpoch, err)
		}
	}
}

// moveFailed reports a move that could not start the job as its failure.
func (c *control) moveFailed(pipelineName string, m *move, epoch uint64, err error) {
	m.failed = true
	c.applyJobState(protocol.JobState{Pipeline: pipelineName, Job: m.id, Epoch: epoch, Worker: m.worker,
		State: protocol.StateFailed, Error: fmt.Sprintf("move to worker %s: %v", m.worker, err), Time: time.Now()})
}

// moveEvents records where each job of a relocation went: restarted, moved, or moved with its
// chain (a job placed nowhere said so already, as pending).
func (c *control) moveEvents(r jobRef, moves []*move, from string, since time.Time) {
	var notes []eventNote
	label := func(id int) string {
		c.mu.Lock()
		defer c.mu.Unlock()
		if p, ok := c.pipelines[r.pipeline]; ok {
			if j := p.jobs[id]; j != nil {
				return j.job.Label()
			}
		}
		return fmt.Sprintf("job %d", id)
	}
	took := time.Since(since).Round(time.Millisecond)
	for _, m := range moves {
		if m.gone || m.failed || m.worker == "" {
			continue
		}
		switch {
		case m.restart != "":
			notes = append(notes, eventNote{m.id, "restarted", fmt.Sprintf("%s restarted on worker %s (%s), %s after its failure",
				label(m.id), m.worker, m.restart, took)})
		default:
			fromText := "worker " + m.from
			if m.from == "" {
				fromText = "pending"
			}
			notes = append(notes, eventNote{m.id, "moved", fmt.Sprintf("%s moved from %s to worker %s, %s after detection",
				label(m.id), fromText, m.worker, took)})
		}
	}
	c.events(r.pipeline, notes...)
}

// epochs returns the current epoch of every job of a pipeline.
func (c *control) epochs(name string) map[int]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]uint64{}
	if p, ok := c.pipelines[name]; ok {
		for id, j := range p.jobs {
			out[id] = j.epoch
		}
	}
	return out
}

func hasPending(p *pipelineState) bool {
	for _, j := range p.jobs {
		if j.state == protocol.StatePending {
			return true
		}
	}
	return false
}
