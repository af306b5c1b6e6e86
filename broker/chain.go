package broker

import (
	"slices"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Chains (issue 25, DESIGN.md §8 "Chains"). A chainable pipe (pipeline.Chainable) is chained when
// the broker placed both its ends on one worker together: at a launch, or in one move of a chain
// (relocate). Jobs placed together share the placement's epoch, and a job placed alone gets an
// epoch of its own, so "chained" needs no record of its own: it is both ends on one worker at one
// epoch, read from the jobs' state (and so from the saved state a broker taking over loads).
//
// The consequence the moves keep: a pipe becomes chained only at a launch, or again in a move of
// the chain it belonged to; one through the broker stays so, since its stream may hold blocks
// its consumer has not read (and a stale producer may still write there). A chain split by a
// move (its jobs on two workers, or one pending) stays split.

// endpoints returns the pipeline's pipe ends, made once with the set of its chainable pipes
// (the document does not change; status and /metrics ask for every pipe). Callers hold mu.
func (p *pipelineState) endpoints() map[int][2]int {
	if p.ends == nil {
		p.ends = p.doc.Endpoints()
		p.chainable = map[int]bool{}
		for id := range p.ends {
			if p.doc.Chainable(id, p.ends) {
				p.chainable[id] = true
			}
		}
	}
	return p.ends
}

// chainOf returns the epoch pipe id is chained at, 0 when it goes through the broker. Callers
// hold mu.
func (p *pipelineState) chainOf(id int) uint64 {
	ends := p.endpoints()
	if !p.chainable[id] {
		return 0
	}
	src, dst := p.jobs[ends[id][0]], p.jobs[ends[id][1]]
	if src == nil || dst == nil || src.worker == "" || src.worker != dst.worker || src.epoch == 0 || src.epoch != dst.epoch {
		return 0
	}
	return src.epoch
}

// chains returns the chained pipes and their epochs. Callers hold mu.
func (p *pipelineState) chains() map[int]uint64 {
	out := map[int]uint64{}
	p.endpoints()
	for id := range p.chainable {
		if e := p.chainOf(id); e != 0 {
			out[id] = e
		}
	}
	return out
}

// chainedPipes lists the chained pipes in order, for status. Callers hold mu.
func (p *pipelineState) chainedPipes() []int {
	var out []int
	for id := range p.chains() {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// chainGroup returns job id and every job joined to it by chained pipes, id first: a chain's
// jobs hold their blocks in one worker's process, so they move together. Callers hold mu.
func (p *pipelineState) chainGroup(id int) []int {
	group := []int{id}
	ends := p.endpoints()
	for i := 0; i < len(group); i++ {
		j := p.jobs[group[i]]
		if j == nil {
			continue
		}
		for _, pipes := range [][]int{j.job.Inputs, j.job.Outputs} {
			for _, pipe := range pipes {
				if p.chainOf(pipe) == 0 {
					continue
				}
				for _, other := range ends[pipe] {
					if other != 0 && !slices.Contains(group, other) {
						group = append(group, other)
					}
				}
			}
		}
	}
	return group
}

// preference is where a job is offered first among the bidders of a target: beside its chain
// producer (prefer), or, for a spread job, anywhere but beside its producers (avoid).
type preference struct {
	prefer string
	avoid  map[string]bool
}

// preferenceOf returns job id's preference given where the jobs placed so far run (placed: ""
// for a job not placed). ends is doc.Endpoints().
func preferenceOf(doc *pipeline.Pipeline, ends map[int][2]int, id int, placed func(job int) string) preference {
	j := doc.JobByID(id)
	if j == nil {
		return preference{}
	}
	if j.Spread {
		avoid := map[string]bool{}
		for _, src := range doc.Producers(id, ends) {
			if w := placed(src); w != "" {
				avoid[w] = true
			}
		}
		return preference{avoid: avoid}
	}
	if src := doc.ChainProducer(id, ends); src != 0 {
		return preference{prefer: placed(src)}
	}
	return preference{}
}

// order puts the bids a job prefers first and those it avoids last, keeping rankBids' order
// otherwise: an affinity, not a rule.
func (pr preference) order(bids []protocol.Bid) []protocol.Bid {
	if pr.prefer == "" && len(pr.avoid) == 0 {
		return bids
	}
	rank := func(b protocol.Bid) int {
		switch {
		case b.Worker == pr.prefer:
			return 0
		case pr.avoid[b.Worker]:
			return 2
		}
		return 1
	}
	slices.SortStableFunc(bids, func(a, b protocol.Bid) int { return rank(a) - rank(b) })
	return bids
}
