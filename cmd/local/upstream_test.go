package local

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestASourceWhoseConsumersHaveAllEndedIsEnded: counter (20 blocks) and an endless clock on an
// optional input into sum → discard. sum ends with the counter; the clock, whose only consumer
// has ended, is ended too (finished, an event saying why), so the pipeline finishes instead of
// running for ever.
func TestASourceWhoseConsumersHaveAllEndedIsEnded(t *testing.T) {
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "upstream", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 20, "interval": "2ms"}, Outputs: []int{1}},
		{ID: 2, Type: "clock", Args: map[string]any{"interval": "5ms"}, Outputs: []int{2}},
		{ID: 3, Type: "sum", Inputs: []int{1, 2}, Outputs: []int{3}},
		{ID: 4, Type: "discard", Inputs: []int{3}},
	}, Pipes: []pipeline.Pipe{{ID: 2, Optional: &pipeline.Optional{Default: 0}}}}
	var events strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := env.RunPipeline(ctx, "upstream", encode(t, p), Options{Events: &events})
	if err != nil {
		t.Fatalf("run: %v (state %s)\n%s", err, st.State, events.String())
	}
	if st.State != protocol.StateFinished {
		t.Fatalf("pipeline %s, want finished\n%s", st.State, events.String())
	}
	for _, j := range st.Jobs {
		if j.State != protocol.StateFinished {
			t.Errorf("job %d (%s): %s, want finished", j.ID, j.Name, j.State)
		}
	}
	// The clock is told to end, with the reason, and its own report then ends it as finished.
	var why string
	for _, ev := range st.Events {
		if ev.Job == 2 && ev.Kind == "job ending" {
			why = ev.Message
		}
	}
	if !strings.Contains(why, "every consumer of its output has ended") || !strings.Contains(why, "sum 3") {
		t.Errorf("the clock's end event %q does not say why (its consumer sum 3 ended)\n%s", why, events.String())
	}
}
