package pipeline

import (
	"reflect"
	"testing"
)

func chainDoc(t *testing.T, src string) *Pipeline {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChainableIsASynchronousReliablePipeIntoAJobWithoutQueueOrSpreadAndNoRestartPolicyAtEitherEnd(t *testing.T) {
	p := chainDoc(t, `{"name":"c","jobs":[
		{"id":1,"type":"counter","outputs":[1,2,3,4,5,6]},
		{"id":2,"type":"forward","inputs":[1]},
		{"id":3,"type":"forward","inputs":[2]},
		{"id":4,"type":"forward","inputs":[3]},
		{"id":5,"type":"forward","inputs":[4],"max_queue":3},
		{"id":6,"type":"forward","inputs":[5],"spread":true},
		{"id":7,"type":"forward","inputs":[6],"outputs":[7]},
		{"id":8,"type":"forward","inputs":[7],"restart":{"policy":"on-failure"}}],
		"pipes":[{"id":2,"async":true},{"id":3,"qos":"realtime"},{"id":6,"optional":{"default":0}}]}`)
	ends := p.Endpoints()
	want := map[int]bool{1: true, 2: false, 3: false, 4: false, 5: false, 6: false, 7: false, 99: false}
	for id, w := range want {
		if got := p.Chainable(id, ends); got != w {
			t.Errorf("pipe %d: Chainable = %v, want %v", id, got, w)
		}
	}
}

func TestPlacementOrderPutsProducersBeforeTheirConsumers(t *testing.T) {
	p := chainDoc(t, `{"name":"c","jobs":[
		{"id":1,"type":"discard","inputs":[3]},
		{"id":2,"type":"forward","inputs":[4],"outputs":[3]},
		{"id":3,"type":"counter","outputs":[4]},
		{"id":4,"type":"counter","outputs":[5]},
		{"id":5,"type":"discard","inputs":[5]}]}`)
	if got, want := p.PlacementOrder(), []int{3, 2, 1, 4, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("PlacementOrder = %v, want %v", got, want)
	}
}

func TestAJobPrefersTheProducerOfItsFirstChainableInput(t *testing.T) {
	p := chainDoc(t, `{"name":"c","jobs":[
		{"id":1,"type":"counter","outputs":[1]},
		{"id":2,"type":"counter","outputs":[2]},
		{"id":3,"type":"product","inputs":[1,2]},
		{"id":4,"type":"counter","outputs":[4]},
		{"id":5,"type":"forward","inputs":[4],"spread":true}],
		"pipes":[{"id":1,"async":true}]}`)
	ends := p.Endpoints()
	for id, want := range map[int]int{3: 2, 1: 0, 5: 0} {
		if got := p.ChainProducer(id, ends); got != want {
			t.Errorf("job %d: ChainProducer = %d, want %d", id, got, want)
		}
	}
	if got := p.Producers(3, ends); !reflect.DeepEqual(got, []int{1, 2}) {
		t.Errorf("Producers(3) = %v, want [1 2]", got)
	}
}
