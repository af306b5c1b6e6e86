package broker

import (
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func worker(name string, slots int, cpuFree float64, groups ...string) *workerState {
	return &workerState{alive: true, confirmed: true, metrics: protocol.Metrics{CPUFree: cpuFree, MemFree: 50},
		info: protocol.WorkerInfo{Name: name, Slots: slots, Groups: groups, Types: []string{"counter", "forward", "csv_sink"}}}
}

func TestPlacement(t *testing.T) {
	head := worker("head", 2, 99)
	head.info.Local = true
	c := &control{workers: map[string]*workerState{
		"a":    worker("a", 2, 90, "dsp"),
		"b":    worker("b", 2, 40, "dsp", "mic"),
		"c":    worker("c", 1, 99),
		"head": head,
	}, pipelines: map[string]*pipelineState{}}
	doc := &pipeline.Pipeline{Name: "p", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Groups: []string{"mic"}},                // only b is in mic
		{ID: 2, Type: "forward", Groups: []string{"dsp"}},                // a has more free CPU than b
		{ID: 3, Type: "forward", Groups: []string{"dsp"}},                // a still best (1 of 2 slots)
		{ID: 4, Type: "forward", Groups: []string{"dsp"}, Node: "c"},     // node first, even outside its groups
		{ID: 5, Type: "forward", Groups: []string{"nosuch", "dsp"}},      // a is full: b
		{ID: 6, Type: "csv_sink", Groups: []string{pipeline.GroupLocal}}, // the head node
	}}
	placement, reason := c.place(doc)
	if reason != "" {
		t.Fatalf("not placed: %s", reason)
	}
	want := map[int]string{1: "b", 2: "a", 3: "a", 4: "c", 5: "b", 6: "head"}
	for id, w := range want {
		if placement[id] != w {
			t.Errorf("job %d on %q, want %q", id, placement[id], w)
		}
	}
}

func TestPlacementIsAllOrNothingAndSaysWhy(t *testing.T) {
	c := &control{workers: map[string]*workerState{"a": worker("a", 1, 90)}, pipelines: map[string]*pipelineState{}}
	doc := &pipeline.Pipeline{Name: "p", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter"},
		{ID: 2, Type: "forward"}, // a has one slot only
	}}
	placement, reason := c.place(doc)
	if placement != nil || !strings.Contains(reason, "forward 2") || !strings.Contains(reason, "free slot") {
		t.Fatalf("placement %v, reason %q", placement, reason)
	}
	// A type no worker carries, and a dead worker, are no candidates either.
	c.workers["a"].info.Slots = 5
	doc.Jobs[1].Type = "fft"
	if _, reason := c.place(doc); !strings.Contains(reason, `"fft"`) {
		t.Fatalf("reason %q", reason)
	}
	doc.Jobs[1].Type = "forward"
	c.workers["a"].alive = false
	if _, reason := c.place(doc); reason == "" {
		t.Fatal("placed on a dead worker")
	}
}
