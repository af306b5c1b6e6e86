package broker

import (
	"reflect"
	"slices"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// chainState is a pipeline source → a → b → sink whose jobs run where and at what epoch given.
func chainState(t *testing.T, at map[int][2]any) *pipelineState {
	t.Helper()
	doc, err := pipeline.Parse([]byte(`{"name":"p","jobs":[
		{"id":1,"type":"counter","outputs":[1]},
		{"id":2,"type":"forward","inputs":[1],"outputs":[2]},
		{"id":3,"type":"forward","inputs":[2],"outputs":[3]},
		{"id":4,"type":"discard","inputs":[3]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p := &pipelineState{doc: doc, jobs: map[int]*jobState{}}
	for i := range doc.Jobs {
		j := &doc.Jobs[i]
		w, e := at[j.ID][0].(string), uint64(at[j.ID][1].(int))
		p.jobs[j.ID] = &jobState{job: j, worker: w, epoch: e, state: protocol.StateRunning}
	}
	return p
}

func TestAPipeIsChainedWhenItsEndsWerePlacedOnOneWorkerTogether(t *testing.T) {
	p := chainState(t, map[int][2]any{1: {"w1", 5}, 2: {"w1", 5}, 3: {"w1", 8}, 4: {"w2", 8}})
	got := p.chains()
	// 1→2: one worker, one epoch. 2→3: one worker, but 3 was placed alone later (epoch 8).
	// 3→4: one epoch, two workers.
	if want := map[int]uint64{1: 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("chains = %v, want %v", got, want)
	}
	p.jobs[2].worker = "" // pending: nothing of it is chained
	if got := p.chains(); len(got) != 0 {
		t.Fatalf("chains with job 2 pending = %v, want none", got)
	}
}

func TestAChainGroupIsEveryJobJoinedByChainedPipes(t *testing.T) {
	p := chainState(t, map[int][2]any{1: {"w1", 5}, 2: {"w1", 5}, 3: {"w1", 5}, 4: {"w2", 5}})
	got := p.chainGroup(3)
	slices.Sort(got[1:])
	if want := []int{3, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("chainGroup(3) = %v, want %v (job 4 runs on another worker)", got, want)
	}
	if got := p.chainGroup(4); !reflect.DeepEqual(got, []int{4}) {
		t.Fatalf("chainGroup(4) = %v, want [4]", got)
	}
}

func TestABidderBesideTheChainProducerGoesFirstAndASpreadJobAvoidsIt(t *testing.T) {
	bids := []protocol.Bid{{Worker: "a"}, {Worker: "b"}, {Worker: "c"}}
	names := func(bs []protocol.Bid) []string {
		var out []string
		for _, b := range bs {
			out = append(out, b.Worker)
		}
		return out
	}
	if got := names(preference{prefer: "c"}.order(slices.Clone(bids))); !reflect.DeepEqual(got, []string{"c", "a", "b"}) {
		t.Errorf("prefer c: %v", got)
	}
	if got := names(preference{avoid: map[string]bool{"a": true}}.order(slices.Clone(bids))); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Errorf("avoid a: %v", got)
	}
	if got := names(preference{prefer: "zz"}.order(slices.Clone(bids))); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("prefer a worker that did not bid: %v", got)
	}
}
