package broker

import (
	"fmt"
	"slices"
	"sort"

	"github.com/marvelo/marvelo/pipeline"
)

// localSlots is the capacity of the head node's worker for LOCAL jobs.
const localSlots = 1000

// place chooses a worker for every job of doc, in job id order, or returns why it cannot: the
// placement is all or nothing. For each job: its `node` if alive, able and not full; else each of
// its groups in priority order, choosing the candidate with the most free CPU, then the most free
// memory, then the fewest jobs. Callers hold mu.
func (c *control) place(doc *pipeline.Pipeline) (map[int]string, string) {
	used := c.slotsUsed()
	placement := map[int]string{}
	ids := make([]int, 0, len(doc.Jobs))
	for _, j := range doc.Jobs {
		ids = append(ids, j.ID)
	}
	sort.Ints(ids)
	for _, id := range ids {
		j := doc.JobByID(id)
		w, why := c.chooseWorker(j, used)
		if w == "" {
			return nil, fmt.Sprintf("%s: %s", j.Label(), why)
		}
		placement[id] = w
		used[w]++
	}
	return placement, ""
}

func (c *control) chooseWorker(j *pipeline.Job, used map[string]int) (string, string) {
	if j.Node != "" {
		if w, ok := c.workers[j.Node]; ok && c.fits(w, j, used) && (w.info.Local || w.info.Any || !j.IsLocal()) {
			return j.Node, ""
		}
	}
	for _, g := range j.EffectiveGroups() {
		var best *workerState
		for _, w := range c.workers {
			if !inGroup(w, g) || !c.fits(w, j, used) {
				continue
			}
			if best == nil || better(w, best, used) {
				best = w
			}
		}
		if best != nil {
			return best.info.Name, ""
		}
	}
	return "", fmt.Sprintf("no live worker with a free slot in groups %v carries job type %q", j.EffectiveGroups(), jobKind(j))
}

func jobKind(j *pipeline.Job) string {
	if j.Type != "" {
		return j.Type
	}
	return "exec"
}

// inGroup: ALL is every worker but the head node's; LOCAL is the head node's worker.
func inGroup(w *workerState, g string) bool {
	switch {
	case w.info.Any:
		return true
	case g == pipeline.GroupLocal:
		return w.info.Local
	case g == pipeline.GroupAll:
		return !w.info.Local
	}
	return slices.Contains(w.info.Groups, g)
}

func (c *control) fits(w *workerState, j *pipeline.Job, used map[string]int) bool {
	if !w.alive || w.cordoned {
		return false
	}
	if j.Type != "" && !slices.Contains(w.info.Types, j.Type) {
		return false
	}
	slots := w.info.Slots
	if w.info.Local || w.info.Any {
		slots = max(slots, localSlots)
	}
	return used[w.info.Name] < slots
}

func better(a, b *workerState, used map[string]int) bool {
	if a.metrics.CPUFree != b.metrics.CPUFree {
		return a.metrics.CPUFree > b.metrics.CPUFree
	}
	if a.metrics.MemFree != b.metrics.MemFree {
		return a.metrics.MemFree > b.metrics.MemFree
	}
	if used[a.info.Name] != used[b.info.Name] {
		return used[a.info.Name] < used[b.info.Name]
	}
	return a.info.Name < b.info.Name
}
