package worker

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
)

// syncBuffer is a bytes.Buffer safe for a log handler and a test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAProgramThatDoesNotFlushIsReportedOnce: a Python program reads its 10 rounds and writes
// its answers to its output opened block-buffered, so none reaches the pipe. Once it has held
// them for stallAfter (shortened here), the job reports it: a notice (the "job notice" event of
// marvelo status and logs) and a warning in its log, naming the rounds read and answered and
// the likely cause, once, and the job keeps running.
func TestAProgramThatDoesNotFlushIsReportedOnce(t *testing.T) {
	py := os.Getenv("MARVELO_PYTHON")
	if py == "" {
		var err error
		if py, err = exec.LookPath("python3"); err != nil {
			t.Skip("python3 is not on PATH (set MARVELO_PYTHON)")
		}
	}
	defer func(d time.Duration) { stallAfter = d }(stallAfter)
	stallAfter = 300 * time.Millisecond
	_, js := startJetStream(t)
	in, out := jsonPipe(t, js, 1, 0), jsonPipe(t, js, 2, 0)
	var blocks []codec.Block
	for i := uint64(1); i <= 10; i++ {
		blocks = append(blocks, codec.Block{SQN: i, Payload: fmt.Appendf(nil, "%d", i)})
	}
	fill(t, js, in, blocks, 0)
	prog := `import sys
a = sys.argv[1:]
with open(a[a.index("-i") + 1]) as i, open(a[a.index("-o") + 1], "w") as o:
    for line in i:
        o.write(line)  # block-buffered: nothing reaches the pipe before 8 KiB
`
	spec := pipeline.Job{ID: 2, Exec: &pipeline.Exec{Path: py, Params: []string{"-c", prog}}, Inputs: []int{1}, Outputs: []int{2}}
	a := protocol.Assignment{Pipeline: "e", Epoch: 1, Job: spec, Inputs: []protocol.PipeBinding{in}, Outputs: []protocol.PipeBinding{out}}
	es, err := execjob.SpecFromAssignment(&a, "w", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	tk := &task{
		assign: a, label: "job 2 (python3)", headSize: 1, log: slog.New(slog.NewTextHandler(&logs, nil)),
		done: make(chan struct{}), stdin: newStdinReader(js.Conn(), "marvelo.e.stdin"),
		sequencer: align.NewSourceSequencer(), execSpec: &es,
	}
	notices := make(chan string, 4)
	tk.ctxConfig = job.ContextConfig{Pipeline: "e", Name: "python3", JobID: 2, HeadSize: 1, Inputs: 1, Outputs: 1,
		Log: tk.log, Notice: func(msg string) { notices <- msg }}
	ctx, cancel := context.WithCancel(context.Background())
	tk.drainCtx, tk.drain = context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- tk.run(ctx, js) }()
	defer func() {
		cancel()
		<-done
	}()

	const want = "read 10 rounds, answered 0 in "
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	var notice string
	select {
	case notice = <-notices:
	case err := <-done:
		t.Fatalf("the job ended (%v) without a notice", err)
	case <-deadline.C:
		t.Fatalf("no notice 20s after the program stopped answering; log:\n%s", logs.String())
	}
	for _, w := range []string{want, "is its output buffered?", "flush=True"} {
		if !strings.Contains(notice, w) {
			t.Errorf("notice %q lacks %q", notice, w)
		}
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), want) {
		t.Errorf("the job's log lacks the warning:\n%s", logs.String())
	}
	// Once: a second period of silence says nothing more, and the job still runs.
	quiet := time.NewTimer(3 * stallAfter)
	defer quiet.Stop()
	select {
	case again := <-notices:
		t.Errorf("a second notice: %q", again)
	case err := <-done:
		t.Fatalf("the job ended (%v): a notice is not an error", err)
	case <-quiet.C:
	}
}
