package local

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Executable jobs end to end: the example programs of testdata/exec between Go jobs, through the
// embedded broker, with every value checked at the sink.

const examples = "../../testdata/exec"

// copyExample copies example files into a dependencies folder of a fresh project folder.
func copyExample(t *testing.T, files ...string) string {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "deps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(examples, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

func runInDir(t *testing.T, env *Env, p *pipeline.Pipeline, base string) (protocol.PipelineStatus, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	st, err := env.RunPipeline(ctx, p.Name, encode(t, p), Options{BaseDir: base, Output: &out})
	if err != nil {
		t.Logf("job output:\n%s", out.String())
	}
	return st, err
}

func csvLines(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

func TestPythonJobInFIFOModeWithJSONPipes(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the Python example cannot run here")
	}
	base := copyExample(t, "scale.py")
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "python", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 10}, Outputs: []int{1}},
		{ID: 2, Exec: &pipeline.Exec{Path: "./scale.py", Params: []string{"--factor", "2.5"}, Mode: "fifo", Dependencies: "deps"},
			Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := csvLines(t, out), "pipe_2 2.5 5 7.5 10 12.5 15 17.5 20 22.5 25"; got != want {
		t.Fatalf("csv: %s, want %s", got, want)
	}
}

func TestShellJob(t *testing.T) {
	base := copyExample(t, "sum.sh")
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "shell", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 8}, Outputs: []int{1}},
		{ID: 2, Exec: &pipeline.Exec{Path: "./sum.sh", Params: []string{"--add", "100"}, Dependencies: "deps"},
			Inputs: []int{1}, Outputs: []int{2}},
		{ID: 3, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	if got, want := csvLines(t, out), "pipe_2 101 102 103 104 105 106 107 108"; got != want {
		t.Fatalf("csv: %s, want %s", got, want)
	}
}

// blocks emits count 8-byte big-endian blocks 1…count, the last one finished.
type blocks struct {
	Count int `json:"count"`
}

func (b *blocks) Generate(ctx *job.Context, emit func(any) error) error {
	for i := 1; i <= b.Count; i++ {
		if i == b.Count {
			ctx.Finish()
		}
		if err := emit(binary.BigEndian.AppendUint64(nil, uint64(i))); err != nil {
			return err
		}
	}
	return nil
}

// pairs turns a round of two 8-byte blocks into "a:b".
type pairs struct{}

func (pairs) Run(ctx *job.Context, b [][]byte) (string, error) {
	return fmt.Sprintf("%d:%d", binary.BigEndian.Uint64(b[0]), binary.BigEndian.Uint64(b[1])), nil
}

func TestCJobInFDModeWithBytesHeadsAndBlockCount(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) on this machine: the C example cannot be built")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "deps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-O2", "-o", filepath.Join(dir, "cat_bytes"), filepath.Join(examples, "cat_bytes.c")).CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, out)
	}
	reg := builtin.Registry()
	reg.Register("blocks", "test", func() any { return &blocks{} })
	reg.Register("pairs", "test", func() any { return pairs{} })
	env := startEnv(t, reg)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "cjob", Jobs: []pipeline.Job{
		{ID: 1, Type: "blocks", Args: map[string]any{"count": 20}, Outputs: []int{1}, Head: true},
		{ID: 2, Exec: &pipeline.Exec{Path: "./cat_bytes", Params: []string{"--block-size", "8", "--head-size", "1"}, Mode: "fd", Dependencies: "deps"},
			Inputs: []int{1}, Outputs: []int{2}, Head: true},
		{ID: 3, Type: "pairs", Inputs: []int{2}, Outputs: []int{3}},
		{ID: 4, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{3}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "bytes", BlockSize: 8}, {ID: 2, Codec: "bytes", BlockSize: 8, BlockCount: 2}}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	// The program answers each round with one block; pairs takes them two by two.
	var want []string
	for i := 1; i <= 20; i += 2 {
		want = append(want, fmt.Sprintf("%d:%d", i, i+1))
	}
	if got := csvLines(t, out); got != "pipe_3 "+strings.Join(want, " ") {
		t.Fatalf("csv: %s", got)
	}
}

func TestBadOutputFailsOnlyThatJob(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "deps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	scripts := map[string]string{
		// Writes two good lines, then one that is not JSON.
		"bad_json.sh": "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2;; *) shift;; esac; done\nprintf '1\\n2\\nnot json\\n' > \"$out\"\n",
		// Writes one and a half 8-byte blocks, then dies.
		"half_block.sh": "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2;; *) shift;; esac; done\nprintf 'ABCDEFGHIJKL' > \"$out\"\nkill -9 $$\n",
	}
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := startEnv(t, nil)
	// A healthy pipeline runs on the same worker meanwhile, and must not notice.
	healthy := &pipeline.Pipeline{Name: "healthy", Jobs: []pipeline.Job{
		{ID: 1, Type: "counter", Args: map[string]any{"count": 300, "interval": "1ms"}, Outputs: []int{1}},
		{ID: 2, Type: "discard", Inputs: []int{1}},
	}}
	done := make(chan error, 1)
	go func() {
		_, err := runInDir(t, env, healthy, base)
		done <- err
	}()
	cases := []struct {
		name, script, codec string
		size                int
		want                []string
	}{
		{"badjson", "bad_json.sh", "json", 0, []string{"job 1 (bad_json.sh)", "output pipe 1", "byte 4"}},
		{"halfblock", "half_block.sh", "bytes", 8, []string{"job 1 (half_block.sh)", "output pipe 1", "byte 8"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &pipeline.Pipeline{Name: tc.name, Jobs: []pipeline.Job{
				{ID: 1, Exec: &pipeline.Exec{Path: "./" + tc.script, Dependencies: "deps"}, Outputs: []int{1}},
				{ID: 2, Type: "discard", Inputs: []int{1}},
			}, Pipes: []pipeline.Pipe{{ID: 1, Codec: tc.codec, BlockSize: tc.size}}}
			st, err := runInDir(t, env, p, base)
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("err %v, want the pipeline failed", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(st.Error, w) {
					t.Errorf("error %q lacks %q", st.Error, w)
				}
			}
		})
	}
	if err := <-done; err != nil {
		t.Fatalf("the healthy pipeline: %v", err)
	}
}

// TestDrainingAnExecutableSource: an endless source program is stopped by a drain; its stream
// ends cleanly, the rest of the pipeline finishes what it holds, and nothing is reported failed.
func TestDrainingAnExecutableSource(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "deps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nwhile [ $# -gt 0 ]; do case $1 in -o) out=$2; shift 2;; *) shift;; esac; done\nexec 4>\"$out\"\ni=0\nwhile :; do i=$((i+1)); echo $i >&4; done\n"
	if err := os.WriteFile(filepath.Join(dir, "numbers.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "drain", Jobs: []pipeline.Job{
		{ID: 1, Exec: &pipeline.Exec{Path: "./numbers.sh", Dependencies: "deps"}, Outputs: []int{1}},
		{ID: 2, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{1}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var st protocol.PipelineStatus
	go func() {
		var err error
		st, err = env.RunPipeline(ctx, "drain", encode(t, p), Options{BaseDir: base})
		done <- err
	}()
	testkit.WaitEvery(t, 20*time.Second, 5*time.Millisecond, "over 100 rows in the sink's file", func() bool {
		b, _ := os.ReadFile(out)
		return bytes.Count(b, []byte("\n")) > 100
	})
	cancel() // marvelo run's Ctrl-C: drain, then wait
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	if st.State != protocol.StateStopped {
		t.Fatalf("state %s, want stopped", st.State)
	}
	for _, j := range st.Jobs {
		if j.State == protocol.StateFailed {
			t.Errorf("job %d failed: %s", j.ID, j.Error)
		}
	}
}

// TestTwoOutputProgramSourceNumbersItsOutputsAlike: a program source writing 1…200 on both of
// its outputs gives the n-th block of each output the same SQN, so the sink joining them sees
// 200 aligned rows, as behind a Go counter (a shared counter numbered them apart before).
func TestTwoOutputProgramSourceNumbersItsOutputsAlike(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "deps")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\n# two.sh -o A -o B: 1…200 on both outputs\nexec 3>&$2 4>&$4\ni=1\nwhile [ $i -le 200 ]; do echo $i >&3; echo $i >&4; i=$((i+1)); done\n"
	if err := os.WriteFile(filepath.Join(dir, "two.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	env := startEnv(t, nil)
	out := filepath.Join(base, "out.csv")
	p := &pipeline.Pipeline{Name: "twosrc", Jobs: []pipeline.Job{
		{ID: 1, Exec: &pipeline.Exec{Path: "./two.sh", Mode: "fd", Dependencies: "deps"}, Outputs: []int{1, 2}},
		{ID: 2, Type: "csv_sink", Args: map[string]any{"path": out}, Inputs: []int{1, 2}},
	}, Pipes: []pipeline.Pipe{{ID: 1, Codec: "json"}, {ID: 2, Codec: "json"}}}
	if _, err := runInDir(t, env, p, base); err != nil {
		t.Fatalf("run: %v", err)
	}
	want := []string{"pipe_1,pipe_2"}
	for i := 1; i <= 200; i++ {
		want = append(want, fmt.Sprintf("%d,%d", i, i))
	}
	if got := csvLines(t, out); got != strings.Join(want, " ") {
		t.Fatalf("csv: %d rows, want 200 aligned rows:\n%.400s", len(strings.Fields(got))-1, got)
	}
}
