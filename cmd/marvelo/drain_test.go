package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestDrainOfAGroupWithNoOtherWorkerSaysNothingMovedAndFails: the group's only worker is
// drained while it runs a pipeline's three jobs. Nothing can move: the reply says so for each job,
// with why, moves nothing, and marvelo drain exits 1 (it printed "3 jobs moved" and exited 0).
func TestDrainOfAGroupWithNoOtherWorkerSaysNothingMovedAndFails(t *testing.T) {
	env, err := local.Start(local.Options{Registry: builtin.Registry(), WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	dsp := []string{"dsp"}
	doc, err := pipeline.EncodeCBOR(&pipeline.Pipeline{Name: "stuck", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"interval": "5ms"}, Outputs: []int{1}, Groups: dsp},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}, Groups: dsp},
		{ID: 3, Type: "discard", Inputs: []int{2}, Groups: dsp},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.Client.Submit(ctx, doc, ""); err != nil {
		t.Fatalf("submit: %v", err)
	}
	waitRunning := func() {
		t.Helper()
		for {
			sts, err := env.Client.Status(ctx, "stuck")
			if err == nil && len(sts) == 1 && sts[0].State == protocol.StateRunning {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("pipeline not running: %v %+v", err, sts)
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitRunning()

	r, err := env.Client.DrainGroup(ctx, "dsp", false)
	if err != nil {
		t.Fatalf("drain --group dsp: %v", err)
	}
	if len(r.Moved) != 0 || len(r.Pending) != 3 {
		t.Fatalf("moved %q, pending %q; want nothing moved and the three jobs pending", r.Moved, r.Pending)
	}
	for _, p := range r.Pending {
		if !strings.HasPrefix(p, "stuck: ") || !strings.Contains(p, "waits for a worker: ") || !strings.Contains(p, "group dsp") {
			t.Errorf("pending %q: want the job, that it waits for a worker and why (group dsp)", p)
		}
	}
	var out bytes.Buffer
	err = printDrain(&out, r, "group dsp")
	if cliutil.ExitCode(err) != cliutil.ExitFailure || !strings.Contains(err.Error(), "3 of its 3 jobs did not move") {
		t.Errorf("printDrain: %v (exit %d), want exit %d saying 3 of 3 did not move", err, cliutil.ExitCode(err), cliutil.ExitFailure)
	}
	if !strings.Contains(out.String(), "not moved stuck: counter 1: waits for a worker: ") || strings.Contains(out.String(), "\nmoved ") {
		t.Errorf("drain output:\n%s", out.String())
	}
	sts, err := env.Client.Status(ctx, "stuck")
	if err != nil || len(sts) != 1 || sts[0].State != protocol.StateDegraded {
		t.Fatalf("after the drain: %v %+v, want the pipeline degraded", err, sts)
	}

	// The command: uncordoned, the worker takes the jobs again; drained by name, it exits 1.
	if err := env.Client.Uncordon(ctx, "local"); err != nil {
		t.Fatal(err)
	}
	waitRunning()
	if code := runCmd(t, []*cli.Command{drainCommand()}, "drain", "local", "--broker", env.Broker.ClientURL()); code != cliutil.ExitFailure {
		t.Errorf("marvelo drain local with no other worker: exit %d, want %d", code, cliutil.ExitFailure)
	}
}
