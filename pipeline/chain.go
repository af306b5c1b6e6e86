package pipeline

import (
	"slices"
	"sort"
)

// Chains (issue 25, DESIGN.md §8 "Chains"): a pipe whose two ends the broker places on one
// worker together is chained, its blocks passed in the worker's process instead of through the
// broker. These are the document's side of it: which pipes may be chained, which worker a job
// prefers, and the order that lets a consumer follow its producer.

// Chainable reports whether pipe id may be chained: it has both ends, it is synchronous (not
// async, not optional: those take whatever is there, from wherever), reliable (a realtime pipe
// is core NATS by choice), its consumer keeps no max_queue (that queue lives in the stream,
// where the oldest block is dropped) and does not ask to be spread, and neither end has a
// restart policy: a restart replaces one job, and a chain's blocks in flight live in its
// worker's process, so a chain moves only as a whole (its worker died or left). ends is
// p.Endpoints().
func (p *Pipeline) Chainable(id int, ends map[int][2]int) bool {
	e, ok := ends[id]
	if !ok || e[0] == 0 || e[1] == 0 {
		return false
	}
	pp := p.PipeByID(id)
	if pp.IsAsync() || pp.IsRealtime() {
		return false
	}
	src, dst := p.JobByID(e[0]), p.JobByID(e[1])
	return src != nil && dst != nil && dst.MaxQueue <= 0 && !dst.Spread && src.RestartMax() == 0 && dst.RestartMax() == 0
}

// ChainProducer returns the job beside which job id is placed by preference: the producer of
// its first chainable input, 0 when it has none (a source, a spread job, async inputs only).
func (p *Pipeline) ChainProducer(id int, ends map[int][2]int) int {
	j := p.JobByID(id)
	if j == nil {
		return 0
	}
	for _, in := range j.Inputs {
		if p.Chainable(in, ends) && ends[in][0] != id {
			return ends[in][0]
		}
	}
	return 0
}

// Producers returns the jobs whose outputs job id reads (any pipe), each once.
func (p *Pipeline) Producers(id int, ends map[int][2]int) []int {
	j := p.JobByID(id)
	if j == nil {
		return nil
	}
	var out []int
	for _, in := range j.Inputs {
		if src := ends[in][0]; src != 0 && src != id && !slices.Contains(out, src) {
			out = append(out, src)
		}
	}
	return out
}

// PlacementOrder returns the job ids with every job after the producers of its synchronous
// inputs (a synchronous cycle is invalid, so the order exists), chain by chain: the job with the
// lowest id that can go first, then each of its consumers as soon as its producers are in, so a
// chain's jobs are offered one after another and each finds its producer placed already.
func (p *Pipeline) PlacementOrder() []int {
	ends := p.Endpoints()
	ids := make([]int, 0, len(p.Jobs))
	for _, j := range p.Jobs {
		ids = append(ids, j.ID)
	}
	sort.Ints(ids)
	waiting := map[int]int{} // job → synchronous producers not yet ordered
	consumers := map[int][]int{}
	for _, id := range ids {
		for _, in := range p.JobByID(id).Inputs {
			src := ends[in][0]
			if pp := p.PipeByID(in); src == 0 || src == id || pp.IsAsync() {
				continue
			}
			waiting[id]++
			consumers[src] = append(consumers[src], id)
		}
	}
	out := make([]int, 0, len(ids))
	done := map[int]bool{}
	var visit func(id int)
	visit = func(id int) {
		done[id] = true
		out = append(out, id)
		for _, c := range consumers[id] {
			if waiting[c]--; waiting[c] == 0 && !done[c] {
				visit(c)
			}
		}
	}
	for _, id := range ids {
		if !done[id] && waiting[id] == 0 {
			visit(id)
		}
	}
	for _, id := range ids { // a synchronous cycle (an invalid document): the rest by id
		if !done[id] {
			done[id] = true
			out = append(out, id)
		}
	}
	return out
}
