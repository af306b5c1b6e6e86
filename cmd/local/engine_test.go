package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The round engine end to end through marvelo run: executable jobs hold to the protocol of
// DESIGN.md §5 as Go jobs do (finished bit, skipped rounds, max_queue, answers counted, malformed
// output), and dummies are values the builtins compute with.

// protoBase makes a project folder whose dependencies hold testdata/exec/proto.py: a connector
// on json pipes that answers each round with the sum (output 0) and product (output 1) of its
// values, and breaks the protocol on purpose when asked.
func protoBase(t *testing.T) string {
	t.Helper()
	return copyExample(t, "proto.py")
}

func proto(params ...string) *pipeline.Exec {
	return &pipeline.Exec{Path: "./proto.py", Params: params, Dependencies: "deps"}
}

func jobStats(st protocol.PipelineStatus, id int) protocol.JobStats {
	for _, j := range st.Jobs {
		if j.ID == id {
			return j.Stats
		}
	}
	return protocol.JobStats{}
}

// TestExecConnectorPassesTheFinishedBit: counter(9) → program → sink; the sink's last block
// carries the finished bit (only it), the program with a head or without, with block_count 3 on
// its input too; every job ends finished.
func TestExecConnectorPassesTheFinishedBit(t *testing.T) {
	cases := []struct {
		name string
		head bool
		bc   int
		want string
	}{
		{"nohead", false, 1, "[1 2 3 4 5 6 7 8 9]"},
		{"head", true, 1, "[1 2 3 4 5 6 7 8 9]"},
		{"head_blockcount3", true, 3, "[6 15 24]"},
		{"nohead_blockcount3", false, 3, "[6 15 24]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := protoBase(t)
			rec := &recorder{}
			env := startEnv(t, registryWith("record", func() any { return rec }))
			params := []string{"--bc", fmt.Sprint(tc.bc)}
			if tc.head {
				params = append(params, "--head")
			}
			p := &pipeline.Pipeline{Name: "fin", Jobs: []pipeline.Job{
				{ID: 1, Type: "counter", Args: map[string]any{"count": 9}, Outputs: []int{1}},
				{ID: 2, Exec: proto(params...), Inputs: []int{1}, Outputs: []int{2}, Head: tc.head},
				{ID: 3, Type: "record", Inputs: []int{2}, Head: true},
			}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json", BlockCount: tc.bc}, {ID: 2, Codec: "json"}}}
			st, err := runInDir(t, env, p, base)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if got := fmt.Sprint(rec.snapshot()); got != tc.want {
				t.Fatalf("sink got %s, want %s", got, tc.want)
			}
			for i, h := range rec.heads {
				if last := i == len(rec.heads)-1; h.Finished() != last {
					t.Errorf("block %d: finished=%v (heads %v)", i+1, h.Finished(), rec.heads)
				}
			}
			for _, j := range st.Jobs {
				if j.State != protocol.StateFinished {
					t.Errorf("job %d: %s %s", j.ID, j.State, j.Error)
				}
			}
		})
	}
}

// TestExecSkippingRoundsGivesDummiesAtTheJoin: a program that answers every 5th round with the
// corrupted bit, joined by sum with a counter: 22 rows, dummies exactly at rounds 5, 10, 15, 20,
// their value the zero (0 + n) or the previous real block ((n−1) + n).
func TestExecSkippingRoundsGivesDummiesAtTheJoin(t *testing.T) {
	for _, mode := range []string{pipeline.DummyZero, pipeline.DummyPrev} {
		t.Run(mode, func(t *testing.T) {
			base := protoBase(t)
			rec := &recorder{}
			env := startEnv(t, registryWith("record", func() any { return rec }))
			p := &pipeline.Pipeline{Name: "skip", Jobs: []pipeline.Job{
				{ID: 1, Type: "counter", Args: map[string]any{"count": 22}, Outputs: []int{1}},
				{ID: 2, Type: "counter", Args: map[string]any{"count": 22}, Outputs: []int{2}},
				{ID: 3, Exec: proto("--head", "--skip", "5"), Inputs: []int{1}, Outputs: []int{3}, Head: true},
				{ID: 4, Type: "sum", Inputs: []int{3, 2}, Outputs: []int{4}, Head: true, Dummy: mode},
				{ID: 5, Type: "record", Inputs: []int{4}, Head: true},
			}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 3, Codec: "json"}}}
			st, err := runInDir(t, env, p, base)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			got := rec.snapshot()
			if len(got) != 22 {
				t.Fatalf("%d rows, want 22: %v", len(got), got)
			}
			for i, v := range got {
				n := int64(i + 1)
				skipped := n%5 == 0
				want := 2 * n
				if skipped && mode == pipeline.DummyZero {
					want = n
				} else if skipped {
					want = 2*n - 1
				}
				if v != want || rec.heads[i].Corrupted() != skipped {
					t.Errorf("round %d: %v corrupted=%v, want %d corrupted=%v", n, v, rec.heads[i].Corrupted(), want, skipped)
				}
			}
			if d := jobStats(st, 4).Dummies; d != 4 {
				t.Errorf("the join made %d dummies, want 4", d)
			}
		})
	}
}

// TestMaxQueueOnASlowExecutable: a slow program behind max_queue 5 is handed only real blocks,
// skips ahead after the drops (no zero blocks), ends with the newest blocks, and the drops are
// counted exactly.
func TestMaxQueueOnASlowExecutable(t *testing.T) {
	base := protoBase(t)
	env := startEnv(t, nil)
	record := filepath.Join(base, "rounds.jsonl")
	const total = 120
	p := &pipeline.Pipeline{Name: "maxq", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": total, "interval": "1ms"}, Outputs: []int{1}},
		{ID: 2, Exec: proto("--delay", "0.05", "--record", record), Inputs: []int{1}, MaxQueue: 5},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}}}
	st, err := runInDir(t, env, p, base)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	var seen []int64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r struct{ Vals []int64 }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("round %q: %v", line, err)
		}
		seen = append(seen, r.Vals...)
	}
	for i, v := range seen {
		if v <= 0 || (i > 0 && v <= seen[i-1]) {
			t.Fatalf("the program was handed %v: only real blocks, in order", seen)
		}
	}
	if len(seen) >= total {
		t.Fatalf("the program got all %d blocks: max_queue should have dropped", total)
	}
	if tail := fmt.Sprint(seen[len(seen)-5:]); tail != fmt.Sprint(ints(total)[total-5:]) {
		t.Errorf("the last 5 blocks %s, want the newest (all: %v)", tail, seen)
	}
	js := jobStats(st, 2)
	if js.QueueDrops != uint64(total-len(seen)) || js.Dummies != 0 {
		t.Errorf("queue_drops %d dummies %d with %d of %d handed over", js.QueueDrops, js.Dummies, len(seen), total)
	}
}

// TestMalformedOutputAfterValidFramesFailsAtOnce: two good answers, then a line that is not JSON
// while the program reads on: the job fails at once (long before its input would end), naming
// job, pipe and byte offset.
func TestMalformedOutputAfterValidFramesFailsAtOnce(t *testing.T) {
	base := protoBase(t)
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "garbage", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 100000, "interval": "1ms"}, Outputs: []int{1}},
		{ID: 2, Exec: proto("--garbage", "2"), Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "discard", Inputs: []int{2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}}}
	start := time.Now()
	st, err := runInDir(t, env, p, base)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err %v, want the pipeline failed", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("failed after %s: not at once", d)
	}
	for _, w := range []string{"job 2 (proto.py)", "output pipe 2", "at byte 4"} {
		if !strings.Contains(st.Error, w) {
			t.Errorf("error %q lacks %q", st.Error, w)
		}
	}
}

// TestExecAnsweringTooFewRoundsFails: a program that answers 7 of its 10 rounds fails its job,
// naming job, output pipe and both counts, instead of shifting the blocks.
func TestExecAnsweringTooFewRoundsFails(t *testing.T) {
	base := protoBase(t)
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "few", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 10}, Outputs: []int{1}},
		{ID: 2, Exec: proto("--answer", "7"), Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "discard", Inputs: []int{2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}}}
	st, err := runInDir(t, env, p, base)
	if !errors.Is(err, ErrFailed) {
		t.Fatalf("err %v, want the pipeline failed", err)
	}
	for _, w := range []string{"job 2 (proto.py)", "output pipe 2", "answered 7 of the 10 rounds"} {
		if !strings.Contains(st.Error, w) {
			t.Errorf("error %q lacks %q", st.Error, w)
		}
	}
}

// TestMaxQueueKeepsTheNewestBlocksOfASourceThatEndsByExiting: an executable source that writes
// 60 numbers and exits ends its stream with a marker; behind max_queue 5 the stalled sink still
// gets the 5 newest blocks: the marker takes no block's place.
func TestMaxQueueKeepsTheNewestBlocksOfASourceThatEndsByExiting(t *testing.T) {
	base := protoBase(t)
	// The source writes 1, waits until the sink has it (and stalls), then writes 2…60: the sink
	// holds an early block while the queue fills, so the newest 5 behind it are told apart from a
	// marker that took a block's place.
	gate := filepath.Join(base, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\ngate=$1; shift\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2;; *) shift;; esac; done\n" +
		"exec 3>\"$out\"\necho 1 >&3\nread go < \"$gate\"\ni=2\nwhile [ $i -le 60 ]; do echo $i >&3; i=$((i+1)); done\n"
	if err := os.WriteFile(filepath.Join(base, "deps", "sixty.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{release: make(chan struct{}), stalled: make(chan struct{})}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	p := &pipeline.Pipeline{Name: "maxqend", Jobs: []pipeline.Job{
		{ID: 1, Exec: &pipeline.Exec{Path: "./sixty.sh", Params: []string{gate}, Dependencies: "deps"}, Outputs: []int{1}},
		{ID: 2, Type: "record", Inputs: []int{1}, MaxQueue: 5},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}}}
	done := make(chan error, 1)
	go func() {
		_, err := runInDir(t, env, p, base)
		done <- err
	}()
	<-rec.stalled
	if err := os.WriteFile(gate, []byte("go\n"), 0); err != nil { // the source writes the rest
		t.Fatal(err)
	}
	waitJobState(t, env, "maxqend", 1, protocol.StateFinished)
	close(rec.release)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	got := rec.snapshot()
	if len(got) < 6 {
		t.Fatalf("sink got %v", got)
	}
	if tail, want := fmt.Sprint(got[len(got)-5:]), fmt.Sprint(ints(60)[55:]); tail != want {
		t.Fatalf("the last 5 blocks %s, want the newest %s (all: %v)", tail, want, got)
	}
}

// sumProd answers each round of two inputs with a+b on its first output and a·b on its second.
type sumProd struct{}

func (sumProd) Run(_ *job.Context, a, b int64) (job.Outputs, error) {
	return job.Outputs{a + b, a * b}, nil
}

// SPEC E2E1: two counters 1…5 into a connector with two outputs, a+b and a·b, a Go job and an
// executable each: one sink gets 2 4 6 8 10, the other 1 4 9 16 25, both ending with the finished
// bit.
func TestATwoOutputConnectorSendsSumsAndProductsToTwoSinksEndingWithTheFinishedBit(t *testing.T) {
	for _, kind := range []string{"go", "exec"} {
		t.Run(kind, func(t *testing.T) {
			base := protoBase(t)
			sums, prods := &recorder{}, &recorder{}
			reg := registryWith("sums", func() any { return sums })
			reg.Register("prods", "test", func() any { return prods })
			reg.Register("sumprod", "test", func() any { return sumProd{} })
			env := startEnv(t, reg)
			conn := pipeline.Job{ID: 3, Type: "sumprod", Inputs: []int{1, 2}, Outputs: []int{3, 4}}
			if kind == "exec" {
				conn.Type, conn.Exec = "", proto()
			}
			p := &pipeline.Pipeline{Name: "e2e1", Jobs: []pipeline.Job{
				{ID: 1, Type: "counter", Args: map[string]any{"count": 5}, Outputs: []int{1}},
				{ID: 2, Type: "counter", Args: map[string]any{"count": 5}, Outputs: []int{2}},
				conn,
				{ID: 4, Type: "sums", Inputs: []int{3}, Head: true},
				{ID: 5, Type: "prods", Inputs: []int{4}, Head: true},
			}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}, {ID: 3, Codec: "json"}, {ID: 4, Codec: "json"}}}
			if _, err := runInDir(t, env, p, base); err != nil {
				t.Fatalf("run: %v", err)
			}
			if got := fmt.Sprint(sums.snapshot()); got != "[2 4 6 8 10]" {
				t.Errorf("a+b: %s", got)
			}
			if got := fmt.Sprint(prods.snapshot()); got != "[1 4 9 16 25]" {
				t.Errorf("a·b: %s", got)
			}
			for _, r := range []*recorder{sums, prods} {
				if len(r.heads) != 5 || !r.heads[0].Reset() || !r.heads[4].Finished() {
					t.Errorf("heads %v: want reset on the first, finished on the last", r.heads)
				}
			}
		})
	}
}

// SPEC E2E3: a pipeline that waits most of the time — a source ticking every 250 ms through a Go
// connector and an executable connector (one behind max_queue) to a sink — costs this process
// (broker, NATS, worker) almost no CPU: nothing spins while it waits.
func TestAPipelineThatWaitsSpendsAlmostNoCPU(t *testing.T) {
	base := protoBase(t)
	env := startEnv(t, nil)
	p := &pipeline.Pipeline{Name: "idle", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 16, "interval": "250ms"}, Outputs: []int{1}},
		{ID: 2, Type: "forward", Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Exec: proto(), Inputs: []int{2}, Outputs: []int{3}},
		{ID: 4, Exec: proto(), Inputs: []int{3}, Outputs: []int{4}, MaxQueue: 3},
		{ID: 5, Type: "discard", Inputs: []int{4}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}, {ID: 3, Codec: "json"}, {ID: 4, Codec: "json"}}}
	done := make(chan error, 1)
	go func() {
		_, err := runInDir(t, env, p, base)
		done <- err
	}()
	waitJobState(t, env, "idle", 4, protocol.StateRunning)
	before, wall := cpuTime(t), time.Now()
	select {
	case err := <-done:
		t.Fatalf("the pipeline ended early: %v", err)
	case <-time.After(2 * time.Second):
	}
	cpu, elapsed := cpuTime(t)-before, time.Since(wall)
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	t.Logf("CPU %s over %s while the pipeline waited", cpu, elapsed.Round(time.Millisecond))
	if cpu > elapsed/10 {
		t.Errorf("CPU %s over %s: something spins while the pipeline waits", cpu, elapsed)
	}
}

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestSumAndProductOverDummiesAfterAReset: through marvelo run, on cbor and on json pipes, two
// counters join at sum and two at product; a reset in mid-stream costs each join a round of
// dummies (the zero of the last real block, never null). The run finishes, both joins counted
// their dummies, and every value the sinks got is an integer.
func TestSumAndProductOverDummiesAfterAReset(t *testing.T) {
	for _, cd := range []string{"cbor", "json"} {
		t.Run(cd, func(t *testing.T) {
			sums, prods := &recorder{}, &recorder{}
			reg := registryWith("sums", func() any { return sums })
			reg.Register("prods", "test", func() any { return prods })
			env := startEnv(t, reg)
			counter := func(id int) pipeline.Job {
				return pipeline.Job{ID: id, Type: "counter", Args: map[string]any{"count": 400, "interval": "1ms"}, Outputs: []int{id}}
			}
			var pipes []pipeline.Pipe
			for id := 1; id <= 6; id++ {
				pipes = append(pipes, pipeline.Pipe{ID: id, Codec: cd})
			}
			p := &pipeline.Pipeline{Name: "reset_" + cd, Jobs: []pipeline.Job{
				counter(1), counter(2), counter(3), counter(4),
				{ID: 5, Type: "sum", Inputs: []int{1, 2}, Outputs: []int{5}},
				{ID: 6, Type: "product", Inputs: []int{3, 4}, Outputs: []int{6}},
				{ID: 7, Type: "sums", Inputs: []int{5}},
				{ID: 8, Type: "prods", Inputs: []int{6}},
			}, Pipes: pipes}
			done := make(chan error, 1)
			var st protocol.PipelineStatus
			go func() {
				var err error
				st, err = runDoc(t, env, encode(t, p), nil)
				done <- err
			}()
			testkit.WaitEvery(t, 20*time.Second, 5*time.Millisecond, "50 values at each sink", func() bool {
				return len(sums.snapshot()) >= 50 && len(prods.snapshot()) >= 50
			})
			if err := env.Client.Reset(context.Background(), p.Name, time.Time{}); err != nil {
				t.Fatalf("reset: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatalf("run: %v", err)
			}
			for _, id := range []int{5, 6} {
				if d := jobStats(st, id).Dummies; d < 2 {
					t.Errorf("job %d made %d dummies, want at least 2 (a round of them for the reset)", id, d)
				}
			}
			for name, r := range map[string]*recorder{"sum": sums, "product": prods} {
				for i, v := range r.snapshot() {
					switch v.(type) {
					case int64, uint64:
					default:
						t.Fatalf("%s row %d is %v (%T), want an integer", name, i+1, v, v)
					}
				}
			}
		})
	}
}

// TestMaxQueueWithBlockCountTwoEnds: a slow job behind max_queue whose input has block_count 2
// gets whole rounds of two consecutive blocks, the newest ones last, never a dummy, and ends with
// its producer (it once waited an ack wait per round: its consumer let out one message where a
// round needs two; and it was once handed the round a drop cut in two, a dummy beside a block).
func TestMaxQueueWithBlockCountTwoEnds(t *testing.T) {
	rec := &recorder{delay: 2 * time.Millisecond}
	env := startEnv(t, registryWith("record", func() any { return rec }))
	const total = 400
	p := &pipeline.Pipeline{Name: "maxqbc", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": total}, Outputs: []int{1}},
		{ID: 2, Type: "product", Inputs: []int{1}, Outputs: []int{2}, MaxQueue: 8},
		{ID: 3, Type: "record", Inputs: []int{2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, BlockCount: 2}}}
	done := make(chan error, 1)
	var st protocol.PipelineStatus
	go func() {
		var err error
		st, err = runDoc(t, env, encode(t, p), nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the pipeline did not end within 60 s")
	}
	if d := jobStats(st, 2).Dummies; d != 0 {
		t.Errorf("the max_queue job was handed %d dummies, want none (a round cut by a drop is skipped)", d)
	}
	got := rec.snapshot()
	if len(got) == 0 {
		t.Fatal("no rounds")
	}
	if last := got[len(got)-1]; last != int64((total-1)*total) {
		t.Fatalf("last round %v, want the newest pair %d·%d", last, total-1, total)
	}
	for i, v := range got {
		n, ok := v.(int64)
		if !ok {
			continue // a dummy round upstream gives what product makes of it
		}
		// Every real round is (2k−1)·2k for some k: two consecutive blocks, never split.
		k := int64(1)
		for (2*k-1)*2*k < n {
			k++
		}
		if (2*k-1)*2*k != n && n != 0 {
			t.Fatalf("round %d: %d is not the product of a whole round (all: %v)", i+1, n, got)
		}
	}
}
