//go:build linux

package execjob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The command line is exactly PATH PARAMS... INPUT_FLAG in_1 ... OUTPUT_FLAG out_1 ..., with no
// shell in between (a parameter with a space stays one argument).
func TestCommandLine(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			script(t, dir, "args.sh", `
for a in "$@"; do echo "arg <$a>"; done
shift 3 # --scale, 2, "a b"
for v in "$2" "$4" "$6" "$8"; do
	if [ -p "$v" ]; then echo "fifo $v"; elif [ -e "/proc/self/fd/$v" ]; then echo "fd $v"; else echo "neither $v"; fi
done
`)
			json := mustCodec(t, codec.JSON, 0)
			spec := Spec{
				Pipeline: "p", JobID: 6, WorkDir: dir,
				Exec: pipeline.Exec{Path: "./args.sh", Params: []string{"--scale", "2", "a b"}, Mode: mode,
					InputFlag: "--in", OutputFlag: "--out"},
				Inputs: ports(json, 1, 105, 103), Outputs: ports(json, 1, 106, 107),
			}
			r := runJob(t, spec, nil).ok(t)
			args := r.p.Args()
			var want []string
			if mode == pipeline.ModeFIFO {
				fifo := filepath.Dir(args[5])
				if !strings.HasPrefix(fifo, filepath.Join(dir, fifoRoot)) || !filepath.IsAbs(fifo) {
					t.Errorf("named pipes in %s, want a private folder under %s", fifo, filepath.Join(dir, fifoRoot))
				}
				want = []string{"./args.sh", "--scale", "2", "a b",
					"--in", filepath.Join(fifo, "in_105"), "--in", filepath.Join(fifo, "in_103"),
					"--out", filepath.Join(fifo, "out_106"), "--out", filepath.Join(fifo, "out_107")}
				if _, err := os.Stat(filepath.Join(dir, fifoRoot)); !os.IsNotExist(err) {
					t.Errorf("%s left behind after the job: %v", fifoRoot, err)
				}
			} else {
				want = []string{"./args.sh", "--scale", "2", "a b", "--in", "3", "--in", "4", "--out", "5", "--out", "6"}
			}
			if !slices.Equal(args, want) {
				t.Fatalf("command line %q, want %q", args, want)
			}
			var got []string
			for _, l := range r.logs.all() {
				got = append(got, strings.TrimPrefix(l, "stdout: "))
			}
			var wantLog []string
			for _, a := range want[1:] {
				wantLog = append(wantLog, "arg <"+a+">")
			}
			for _, v := range []string{want[5], want[7], want[9], want[11]} {
				if mode == pipeline.ModeFIFO {
					wantLog = append(wantLog, "fifo "+v)
				} else {
					wantLog = append(wantLog, "fd "+v)
				}
			}
			if !slices.Equal(got, wantLog) {
				t.Errorf("the program saw\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantLog, "\n"))
			}
		})
	}
}

// A bare name is taken from the working directory when it is there, else from PATH; an absolute
// path is used as is.
func TestExecutableLookup(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "local", `echo local; open_in 7 "$2"; open_out 8 "$4"; cat <&7 >&8`)
	json := mustCodec(t, codec.JSON, 0)
	in := [][]block{jsonBlocks("1", "2")}
	for _, path := range []string{"local", filepath.Join(dir, "local"), "cat"} {
		t.Run(path, func(t *testing.T) {
			spec := Spec{JobID: 1, WorkDir: dir, Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2),
				Exec: pipeline.Exec{Path: path, Mode: pipeline.ModeFIFO}}
			if path == "cat" {
				// cat copies its file arguments; with -i and -o it would not work: give it only
				// the input, and have it copy to stdout, which is the log.
				spec.Outputs = nil
				spec.Exec.InputFlag = "--"
			}
			r := runJob(t, spec, in).ok(t)
			if path == "cat" {
				if got := r.logs.all(); !slices.Equal(got, []string{"stdout: 1", "stdout: 2"}) {
					t.Errorf("cat from PATH logged %q", got)
				}
				return
			}
			if got := payloads(r.outs[0].blocks); !slices.Equal(got, []string{"1", "2"}) {
				t.Errorf("output %q", got)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notexec.sh"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	json := mustCodec(t, codec.JSON, 0)
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{JobID: 3, WorkDir: dir, Exec: pipeline.Exec{Path: "no-such-program-xyz"}},
			`job 3 (no-such-program-xyz): executable "no-such-program-xyz" is neither in the working directory`},
		{Spec{JobID: 3, WorkDir: dir, Exec: pipeline.Exec{Path: "./missing.sh"}},
			"job 3 (missing.sh): start ./missing.sh: fork/exec " + filepath.Join(dir, "missing.sh") + ": no such file"},
		{Spec{JobID: 4, Name: "x", WorkDir: dir, Exec: pipeline.Exec{Path: "./notexec.sh"}},
			"job 4 (x): start ./notexec.sh: fork/exec " + filepath.Join(dir, "notexec.sh") + ": permission denied"},
		{Spec{JobID: 5, WorkDir: filepath.Join(dir, "nope"), Exec: pipeline.Exec{Path: "cat"}},
			"job 5 (cat): working directory " + filepath.Join(dir, "nope")},
		{Spec{JobID: 5, WorkDir: dir, Exec: pipeline.Exec{Path: "cat", Mode: "pipe"}},
			`job 5 (cat): exec.mode "pipe" is not one of fifo, fd`},
		{Spec{JobID: 5, WorkDir: dir, Exec: pipeline.Exec{Path: "cat"}, Head: true, HeadSize: 5},
			"job 5 (cat): head_size 5 out of range 1..4"},
		{Spec{JobID: 5, WorkDir: dir, Exec: pipeline.Exec{Path: "cat"}, Inputs: ports(json, 1, 7, 7)},
			"job 5 (cat): input pipe 7 appears twice"},
	} {
		for _, mode := range modes {
			c.spec.Exec.Mode = mode
			if strings.Contains(c.want, "exec.mode") {
				c.spec.Exec.Mode = "pipe"
			}
			p, err := Start(context.Background(), c.spec, nil)
			if err == nil {
				p.Stop(0)
				t.Errorf("%s: started %+v", mode, c.spec)
				continue
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %q, want it to contain %q", mode, err, c.want)
			}
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("failed starts left files behind: %v", entries)
	}
}

// The program sees the worker's environment, the spec's extra variables and MARVELO_*.
func TestEnvironment(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "env.sh", `echo "pipeline=$MARVELO_PIPELINE job=$MARVELO_JOB worker=$MARVELO_WORKER workdir=$MARVELO_WORKDIR extra=$EXTRA home=${HOME:+set} pwd=$(pwd)"`)
	spec := Spec{Pipeline: "demo", JobID: 42, Worker: "w1", WorkDir: dir, Env: []string{"EXTRA=yes"},
		Exec: pipeline.Exec{Path: "./env.sh"}}
	r := runJob(t, spec, nil).ok(t)
	want := fmt.Sprintf("stdout: pipeline=demo job=42 worker=w1 workdir=%s extra=yes home=set pwd=%s", dir, dir)
	if got := r.logs.all(); len(got) != 1 || got[0] != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

// Whatever order the program opens its streams in, or if it never opens one, neither side
// blocks: the adapter's opens do not wait for the program's, and the program's do not wait for
// the adapter.
func TestOpeningOrder(t *testing.T) {
	json := mustCodec(t, codec.JSON, 0)
	in1, in2 := jsonBlocks("1", "2", "3"), jsonBlocks("10", "20", "30")
	cases := []struct {
		name, body string
		want       []string
	}{
		{"outputs first", `open_out 9 "$6"; open_in 7 "$2"; open_in 8 "$4"; cat <&7 >&9; cat <&8 >&9`,
			[]string{"1", "2", "3", "10", "20", "30"}},
		{"inputs reversed", `open_in 8 "$4"; open_in 7 "$2"; open_out 9 "$6"; cat <&8 >&9; cat <&7 >&9`,
			[]string{"10", "20", "30", "1", "2", "3"}},
		{"one input never opened", `open_in 7 "$2"; open_out 9 "$6"; cat <&7 >&9`,
			[]string{"1", "2", "3"}},
		{"output never opened", `open_in 7 "$2"; open_in 8 "$4"; cat <&7 >/dev/null; cat <&8 >/dev/null`,
			nil},
	}
	for _, mode := range modes {
		for _, c := range cases {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				script(t, dir, "job.sh", c.body)
				spec := Spec{JobID: 2, WorkDir: dir, Exec: pipeline.Exec{Path: "./job.sh", Mode: mode},
					Inputs: ports(json, 1, 1, 2), Outputs: ports(json, 1, 3)}
				r := runJob(t, spec, [][]block{in1, in2}).ok(t)
				if got := payloads(r.outs[0].blocks); !slices.Equal(got, c.want) && !(len(got) == 0 && c.want == nil) {
					t.Errorf("output %q, want %q", got, c.want)
				}
			})
		}
	}
}

// bigBlock is more than a pipe to a program holds (pipeSize): writing it blocks until the
// program reads.
const bigBlock = 4 * pipeSize

// A program that exits at once, without opening anything: writes fail with ErrInputClosed
// instead of blocking (even a block larger than a pipe holds), outputs end, Wait is nil.
func TestExitsImmediately(t *testing.T) {
	big := mustCodec(t, codec.Bytes, bigBlock)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			script(t, dir, "quit.sh", `exit 0`)
			spec := Spec{JobID: 9, WorkDir: dir, Exec: pipeline.Exec{Path: "./quit.sh", Mode: mode},
				Inputs: ports(big, 1, 1), Outputs: ports(big, 1, 2)}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			p, err := Start(ctx, spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			outs := drain(p, 1)
			block := make([]byte, bigBlock)
			var werr error
			for range 3 { // the first write may land before the exit is noticed
				if werr = p.WriteRound(ctx, [][][]byte{{block}}, nil); werr != nil {
					break
				}
			}
			if !errors.Is(werr, ErrInputClosed) {
				t.Errorf("WriteRound: %v, want ErrInputClosed", werr)
			}
			if werr != nil && !strings.HasPrefix(werr.Error(), "job 9 (quit.sh): input pipe 1: ") {
				t.Errorf("WriteRound error %q does not name job and pipe", werr)
			}
			if res := <-outs; res[0].err != nil || len(res[0].blocks) != 0 {
				t.Errorf("output: %v %v", res[0].blocks, res[0].err)
			}
			if err := p.Wait(); err != nil {
				t.Errorf("Wait: %v", err)
			}
			if err := p.CloseInputs(); err != nil {
				t.Errorf("CloseInputs after exit: %v", err)
			}
		})
	}
}

// A program that neither reads nor exits: WriteRound blocks (backpressure) until its context
// ends.
func TestWriteRespectsContext(t *testing.T) {
	big := mustCodec(t, codec.Bytes, bigBlock)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			script(t, dir, "stuck.sh", `open_in 7 "$2"; echo ready; read x <&7; read x <&7`)
			spec := Spec{JobID: 9, WorkDir: dir, Exec: pipeline.Exec{Path: "./stuck.sh", Mode: mode},
				Inputs: ports(big, 1, 1)}
			logs := &logRec{}
			p, err := Start(context.Background(), spec, logs.log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop(0)
			logs.waitFor(t, "ready")
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err = p.WriteRound(ctx, [][][]byte{{make([]byte, bigBlock)}}, nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("WriteRound: %v, want the context's deadline", err)
			}
			p.Stop(0)
			if err := p.WriteRound(context.Background(), [][][]byte{{make([]byte, bigBlock)}}, nil); !errors.Is(err, ErrStopped) {
				t.Errorf("WriteRound after Stop: %v, want ErrStopped", err)
			}
		})
	}
}

func TestWriteRoundChecks(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "cat.sh", `open_in 7 "$2"; cat <&7 >/dev/null`)
	b8 := mustCodec(t, codec.Bytes, 8)
	spec := Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./cat.sh"}, Inputs: ports(b8, 2, 5)}
	p, err := Start(context.Background(), spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	ctx := context.Background()
	blk := make([]byte, 8)
	for _, c := range []struct {
		payloads [][][]byte
		want     string
	}{
		{[][][]byte{}, "job 1 (cat.sh): WriteRound got 0 inputs, the job has 1"},
		{[][][]byte{{blk}}, "job 1 (cat.sh): input pipe 5: WriteRound got 1 blocks, block_count is 2"},
		{[][][]byte{{blk, blk[:7]}}, "job 1 (cat.sh): input pipe 5: block of 7 bytes, the block size is 8"},
	} {
		if err := p.WriteRound(ctx, c.payloads, nil); err == nil || err.Error() != c.want {
			t.Errorf("WriteRound: %v, want %q", err, c.want)
		}
	}
	if err := p.WriteRound(ctx, [][][]byte{{blk, blk}}, nil); err != nil {
		t.Fatal(err)
	}
	p.CloseInputs()
	if err := p.WriteRound(ctx, [][][]byte{{blk, blk}}, nil); err == nil || !strings.Contains(err.Error(), "after CloseInputs") && !errors.Is(err, ErrInputClosed) {
		t.Errorf("WriteRound after CloseInputs: %v", err)
	}
	if err := p.Wait(); err != nil {
		t.Error(err)
	}
}

// bytes blocks with a head and block_count 2 through the C example, in both modes, with one and
// two inputs.
func TestBytesHeadsBlockCountC(t *testing.T) {
	bin := compileC(t, "cat_bytes")
	for _, headSize := range []int{1, 2} {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/head%d", mode, headSize), func(t *testing.T) {
				c := mustCodec(t, codec.Bytes, 8)
				var in1, in2 []block
				for i := range 10 {
					in1 = append(in1, block{[]byte(fmt.Sprintf("blk-%04d", i)), uint32(i*37) & codec.HeadLimit(headSize)})
					in2 = append(in2, block{[]byte(fmt.Sprintf("two-%04d", i)), uint32(255 - i)})
				}
				spec := Spec{JobID: 4, WorkDir: t.TempDir(), Head: true, HeadSize: headSize,
					Exec: pipeline.Exec{Path: bin, Mode: mode,
						Params: []string{"--block-size", "8", "--head-size", strconv.Itoa(headSize)}},
					Inputs: ports(c, 2, 11, 12), Outputs: ports(c, 1, 21, 22, 23)}
				r := runJob(t, spec, [][]block{in1, in2}).ok(t)
				equalBlocks(t, "output 1", r.outs[0].blocks, in1)
				equalBlocks(t, "output 2", r.outs[1].blocks, in2)
				equalBlocks(t, "output 3", r.outs[2].blocks, in1)
				if !strings.Contains(r.logs.String(), "stderr: cat_bytes: 10 blocks") {
					t.Errorf("log:\n%s", r.logs)
				}
			})
		}
	}
}

// A stream of many blocks, more than the pipes hold, in both directions at once.
func TestManyBlocks(t *testing.T) {
	bin := compileC(t, "cat_bytes")
	c := mustCodec(t, codec.Bytes, 4096)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			var in []block
			for i := range 2000 {
				b := make([]byte, 4096)
				for j := range b {
					b[j] = byte(i + j)
				}
				in = append(in, block{payload: b})
			}
			spec := Spec{JobID: 4, WorkDir: t.TempDir(),
				Exec:   pipeline.Exec{Path: bin, Mode: mode, Params: []string{"--block-size", "4096"}},
				Inputs: ports(c, 1, 1), Outputs: ports(c, 1, 2)}
			r := runJob(t, spec, [][]block{in}).ok(t)
			equalBlocks(t, "output", r.outs[0].blocks, in)
		})
	}
}

// JSON lines through POSIX sh and Python, CBOR items with heads through a cat-like program.
func TestJSONThroughShell(t *testing.T) {
	json := mustCodec(t, codec.JSON, 0)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			script(t, dir, "twice.sh", `open_in 7 "$2"; open_out 8 "$4"
while IFS= read -r line <&7; do echo "$line" >&8; echo "[$line]" >&8; done`)
			spec := Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./twice.sh", Mode: mode},
				Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2)}
			in := jsonBlocks(`{"a": [1, 2]}`, `"text"`, `3.5`, "{\n\"pretty\": true\n}")
			r := runJob(t, spec, [][]block{in}).ok(t)
			want := []string{`{"a": [1, 2]}`, `[{"a": [1, 2]}]`, `"text"`, `["text"]`, `3.5`, `[3.5]`,
				`{ "pretty": true }`, `[{ "pretty": true }]`}
			if got := payloads(r.outs[0].blocks); !slices.Equal(got, want) {
				t.Errorf("output %q, want %q", got, want)
			}
		})
	}
}

// In fifo mode a program may reopen its output for each block, as `echo >> "$out"` does.
func TestFIFOReopenedOutput(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "append.sh", `open_in 7 "$2"; while IFS= read -r line <&7; do echo "$line" >> "$4"; done`)
	json := mustCodec(t, codec.JSON, 0)
	spec := Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./append.sh"},
		Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2)}
	r := runJob(t, spec, [][]block{jsonBlocks("1", "2", "3")}).ok(t)
	if got := payloads(r.outs[0].blocks); !slices.Equal(got, []string{"1", "2", "3"}) {
		t.Errorf("output %q", got)
	}
}

func TestCBORRoundTrip(t *testing.T) {
	cb := mustCodec(t, codec.CBOR, 0)
	var in []block
	for i, v := range []any{
		int64(1), "text", []byte{0, 1, 2}, 3.25, []any{int64(1), "x", []any{}},
		map[string]any{"k": int64(1), "nested": map[string]any{"list": []any{true, nil}}},
		int64(-1000000), strings.Repeat("long ", 20000),
	} {
		p, err := cb.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, block{p, uint32(i * 1000)})
	}
	for _, mode := range modes {
		for _, head := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/head=%v", mode, head), func(t *testing.T) {
				dir := t.TempDir()
				script(t, dir, "cat.sh", `open_in 7 "$2"; open_out 8 "$4"; exec cat <&7 >&8`)
				spec := Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./cat.sh", Mode: mode},
					Inputs: ports(cb, 1, 1), Outputs: ports(cb, 1, 2), Head: head, HeadSize: 2}
				want := in
				if !head {
					want = nil
					for _, b := range in {
						want = append(want, block{payload: b.payload})
					}
				}
				r := runJob(t, spec, [][]block{want}).ok(t)
				equalBlocks(t, "output", r.outs[0].blocks, want)
			})
		}
	}
}

// A malformed frame is an error naming job, pipe and byte offset.
func TestMalformedOutput(t *testing.T) {
	json := mustCodec(t, codec.JSON, 0)
	cb := mustCodec(t, codec.CBOR, 0)
	b8 := mustCodec(t, codec.Bytes, 8)
	cases := []struct {
		name   string
		c      codec.Codec
		head   bool
		printf string
		blocks int
		want   string
	}{
		{"not JSON", json, false, `1\n2\n{oops\n`, 2,
			"job 7 (bad.sh): output pipe 106: json frame at byte 4: invalid JSON"},
		{"JSON cut short", json, false, `1\n[1, 2`, 1,
			"job 7 (bad.sh): output pipe 106: json frame at byte 2: unexpected EOF"},
		{"invalid CBOR", cb, false, `\001\377`, 1,
			"job 7 (bad.sh): output pipe 106: cbor frame at byte 1: break outside an indefinite-length item"},
		{"truncated CBOR", cb, false, `\001\142a`, 1,
			"job 7 (bad.sh): output pipe 106: cbor frame at byte 1: unexpected EOF"},
		{"truncated bytes block", b8, false, `abcdefghabc`, 1,
			"job 7 (bad.sh): output pipe 106: bytes frame at byte 8: unexpected EOF: block has 3 of 8 bytes"},
		{"head without block", b8, true, `\001abcdefgh\002`, 1,
			"job 7 (bad.sh): output pipe 106: bytes frame at byte 10: unexpected EOF: stream ends after a block head"},
	}
	for _, mode := range modes {
		for _, c := range cases {
			t.Run(mode+"/"+c.name, func(t *testing.T) {
				dir := t.TempDir()
				script(t, dir, "bad.sh", `open_out 8 "$2"; printf '`+c.printf+`' >&8`)
				spec := Spec{JobID: 7, WorkDir: dir, Exec: pipeline.Exec{Path: "./bad.sh", Mode: mode},
					Outputs: ports(c.c, 1, 106), Head: c.head}
				r := runJob(t, spec, nil)
				if r.waitErr != nil {
					t.Errorf("Wait: %v", r.waitErr)
				}
				if len(r.outs[0].blocks) != c.blocks {
					t.Errorf("%d good blocks before the error, want %d", len(r.outs[0].blocks), c.blocks)
				}
				err := r.outs[0].err
				if err == nil || !strings.HasPrefix(err.Error(), c.want) {
					t.Fatalf("error %v, want %q", err, c.want)
				}
				var fe *codec.FrameError
				if !errors.As(err, &fe) {
					t.Errorf("error does not unwrap to a *codec.FrameError")
				}
				// The error is final.
				if _, _, again := r.p.ReadOutput(0, nil); again != err {
					t.Errorf("second read: %v", again)
				}
			})
		}
	}
}

// A program killed in the middle of a block: the output ends with a truncation error at the
// block's offset and Wait reports the signal.
func TestKilledMidBlock(t *testing.T) {
	b8 := mustCodec(t, codec.Bytes, 8)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			script(t, dir, "die.sh", `open_out 8 "$2"; printf 'abcdefgh' >&8; printf 'ab' >&8; kill -KILL $$`)
			spec := Spec{JobID: 8, WorkDir: dir, Exec: pipeline.Exec{Path: "./die.sh", Mode: mode},
				Outputs: ports(b8, 1, 3)}
			r := runJob(t, spec, nil)
			equalBlocks(t, "output", r.outs[0].blocks, []block{{payload: []byte("abcdefgh")}})
			want := "job 8 (die.sh): output pipe 3: bytes frame at byte 8: unexpected EOF: block has 2 of 8 bytes"
			if r.outs[0].err == nil || r.outs[0].err.Error() != want {
				t.Errorf("output error %v, want %q", r.outs[0].err, want)
			}
			ee, ok := isExitError(r.waitErr)
			if !ok || ee.Signal != "killed" || ee.Stopped || ee.Code != -1 {
				t.Errorf("Wait: %#v", r.waitErr)
			}
			if r.waitErr != nil && r.waitErr.Error() != "job 8 (die.sh): killed by signal: killed" {
				t.Errorf("Wait: %q", r.waitErr)
			}
		})
	}
}

// A non-zero exit status fails the job with the last lines of stderr; stdout and stderr reach
// the log line by line while the program runs.
func TestExitStatusAndLogs(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "fail.sh", `open_in 7 "$2"
echo "started"
echo "warming up" >&2
read x <&7   # waits until the test has seen both lines
i=1; while [ $i -le 30 ]; do echo "problem $i" >&2; i=$((i+1)); done
printf 'no newline at the end' >&2
exit 3`)
	json := mustCodec(t, codec.JSON, 0)
	spec := Spec{JobID: 5, WorkDir: dir, Exec: pipeline.Exec{Path: "./fail.sh"}, Inputs: ports(json, 1, 1)}
	logs := &logRec{}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	p, err := Start(ctx, spec, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	// The lines arrive while the program waits for its input: the log is read continuously.
	logs.waitFor(t, "stdout: started")
	logs.waitFor(t, "stderr: warming up")
	if err := p.WriteRound(ctx, [][][]byte{{[]byte("1")}}, nil); err != nil {
		t.Fatal(err)
	}
	p.CloseInputs()
	err = p.Wait()
	ee, ok := isExitError(err)
	if !ok {
		t.Fatalf("Wait: %v, want an *ExitError", err)
	}
	if ee.Code != 3 || ee.Signal != "" || ee.Stopped || len(ee.Stderr) != StderrTail {
		t.Errorf("ExitError %+v", ee)
	}
	var want []string
	for i := 12; i <= 30; i++ {
		want = append(want, fmt.Sprintf("problem %d", i))
	}
	want = append(want, "no newline at the end")
	if !slices.Equal(ee.Stderr, want) {
		t.Errorf("stderr tail %q, want %q", ee.Stderr, want)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "job 5 (fail.sh): exit status 3; last 20 lines of stderr:\n  problem 12\n") ||
		!strings.HasSuffix(msg, "\n  problem 30\n  no newline at the end") {
		t.Errorf("error text:\n%s", msg)
	}
	if n := len(logs.all()); n != 33 {
		t.Errorf("%d log lines, want 33:\n%s", n, logs)
	}
}

// Stop: SIGTERM to the group, SIGKILL after the grace period for a program that ignores SIGTERM;
// nothing of the group survives and the program is reaped.
func TestStopIgnoringTERM(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			// The loop uses only builtins: the program is alone in its group.
			script(t, dir, "stubborn.sh", `trap '' TERM; open_in 7 "$2"; echo ready; while read x <&7; do :; done; while :; do :; done`)
			json := mustCodec(t, codec.JSON, 0)
			spec := Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./stubborn.sh", Mode: mode},
				Inputs: ports(json, 1, 1)}
			logs := &logRec{}
			p, err := Start(context.Background(), spec, logs.log)
			if err != nil {
				t.Fatal(err)
			}
			logs.waitFor(t, "ready")
			pgid, err := syscall.Getpgid(p.Pid())
			if err != nil || pgid != p.Pid() {
				t.Fatalf("process group %d (%v), want its own (%d)", pgid, err, p.Pid())
			}
			const grace = 300 * time.Millisecond
			start := time.Now()
			p.Stop(grace)
			if d := time.Since(start); d < grace {
				t.Errorf("Stop returned after %v, before the grace period %v: SIGTERM was not ignored?", d, grace)
			}
			if err := syscall.Kill(-pgid, 0); err != syscall.ESRCH {
				t.Errorf("kill(-%d, 0) = %v after Stop, want ESRCH (no process left in the group)", pgid, err)
			}
			ee, ok := isExitError(p.Wait())
			if !ok || ee.Signal != "killed" || !ee.Stopped {
				t.Errorf("Wait: %v", p.Wait())
			}
			if !strings.Contains(p.Wait().Error(), "killed by signal: killed (stopped by the worker)") {
				t.Errorf("Wait: %v", p.Wait())
			}
			if err := p.WriteRound(context.Background(), [][][]byte{{[]byte("1")}}, nil); !errors.Is(err, ErrStopped) {
				t.Errorf("WriteRound after Stop: %v", err)
			}
			p.Stop(grace) // again: nothing to do
		})
	}
}

// Stop and the end of a program kill whatever it started in its group: no orphan keeps running.
// (Killed children of a killed program are orphans that init reaps; until then they are zombies,
// which is why this test looks for live processes rather than asking kill(-pgid, 0).)
func TestNoOrphans(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stop=%v", stop), func(t *testing.T) {
			dir := t.TempDir()
			body := `trap '' TERM; sleep 1000 & echo "child $!"; `
			if stop {
				body += `wait`
			} else {
				body += `exit 0`
			}
			script(t, dir, "parent.sh", body)
			logs := &logRec{}
			p, err := Start(context.Background(), Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./parent.sh"}}, logs.log)
			if err != nil {
				t.Fatal(err)
			}
			line := logs.waitFor(t, "child ")
			child, _ := strconv.Atoi(strings.TrimPrefix(line, "stdout: child "))
			if stop {
				p.Stop(100 * time.Millisecond)
			}
			err = p.Wait()
			if stop != (err != nil) {
				t.Errorf("Wait: %v", err)
			}
			if live := groupLiveAfterKill(p.Pid()); len(live) > 0 {
				t.Errorf("live processes left in the group %s after Wait: %q", killSettle, live)
			}
			if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child)); err == nil && !strings.Contains(string(data), ") Z ") {
				t.Errorf("the program's child %d is still running: %s", child, data)
			}
		})
	}
}

// Cancelling Start's context stops the program like Stop(spec.Grace).
func TestContextCancelStops(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "forever.sh", `echo ready; while :; do :; done`)
	ctx, cancel := context.WithCancel(context.Background())
	logs := &logRec{}
	p, err := Start(ctx, Spec{JobID: 1, WorkDir: dir, Exec: pipeline.Exec{Path: "./forever.sh"}, Grace: time.Second}, logs.log)
	if err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, "ready")
	cancel()
	select {
	case <-p.Done():
	case <-time.After(testTimeout):
		t.Fatal("the program outlived its context")
	}
	if ee, ok := isExitError(p.Wait()); !ok || ee.Signal != "terminated" || !ee.Stopped {
		t.Errorf("Wait: %v", p.Wait())
	}
	if err := syscall.Kill(-p.Pid(), 0); err != syscall.ESRCH {
		t.Errorf("kill(-pgid, 0) = %v", err)
	}
}

// Outputs read after Stop end with ErrStopped.
func TestReadAfterStop(t *testing.T) {
	dir := t.TempDir()
	script(t, dir, "idle.sh", `open_out 8 "$2"; echo ready; while :; do :; done`)
	json := mustCodec(t, codec.JSON, 0)
	for _, mode := range modes {
		logs := &logRec{}
		p, err := Start(context.Background(), Spec{JobID: 1, WorkDir: dir, Outputs: ports(json, 1, 4),
			Exec: pipeline.Exec{Path: "./idle.sh", Mode: mode}}, logs.log)
		if err != nil {
			t.Fatal(err)
		}
		outs := drain(p, 1)
		logs.waitFor(t, "ready")
		p.Stop(time.Second)
		if res := <-outs; !errors.Is(res[0].err, ErrStopped) {
			t.Errorf("%s: output: %v, want ErrStopped", mode, res[0].err)
		}
	}
}

// The examples of testdata/exec work with the adapter.
func TestExamples(t *testing.T) {
	json := mustCodec(t, codec.JSON, 0)
	examples := filepath.Join(repoRoot, "testdata", "exec")
	for _, mode := range modes {
		t.Run("sum.sh/"+mode, func(t *testing.T) {
			spec := Spec{JobID: 3, WorkDir: examples, Exec: pipeline.Exec{Path: "./sum.sh", Mode: mode,
				Params: []string{"--add", "10"}}, Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2)}
			r := runJob(t, spec, [][]block{jsonBlocks("1", "-5", "32")}).ok(t)
			if got := payloads(r.outs[0].blocks); !slices.Equal(got, []string{"11", "5", "42"}) {
				t.Errorf("output %q", got)
			}
			if !strings.Contains(r.logs.String(), "stderr: sum.sh: 3 blocks") {
				t.Errorf("log:\n%s", r.logs)
			}
			// Not an integer: exit status 1 with the message.
			r = runJob(t, spec, [][]block{jsonBlocks("1", `"x"`)})
			if ee, ok := isExitError(r.waitErr); !ok || ee.Code != 1 || !slices.Contains(ee.Stderr, `sum.sh: not an integer: "x"`) {
				t.Errorf("Wait: %v", r.waitErr)
			}
		})
		t.Run("scale.py/"+mode, func(t *testing.T) {
			needPython(t)
			spec := Spec{Pipeline: "pp", JobID: 2, WorkDir: examples, Exec: pipeline.Exec{Path: "./scale.py", Mode: mode,
				Params: []string{"--factor", "2.5"}}, Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2, 3)}
			r := runJob(t, spec, [][]block{jsonBlocks("1", "2", "0.5", "-4")}).ok(t)
			want := []string{"2.5", "5", "1.25", "-10"}
			for k := range 2 {
				if got := payloads(r.outs[k].blocks); !slices.Equal(got, want) {
					t.Errorf("output %d: %q, want %q", k, got, want)
				}
			}
			if !strings.Contains(r.logs.String(), "stderr: scale: factor 2.5, pipeline pp, job 2") {
				t.Errorf("log:\n%s", r.logs)
			}
		})
		t.Run("cat_bytes.c/"+mode, func(t *testing.T) {
			bin := compileC(t, "cat_bytes")
			b4 := mustCodec(t, codec.Bytes, 4)
			in := []block{{[]byte("abcd"), 0x40}, {[]byte("efgh"), 0}, {[]byte("ijkl"), 0x20}}
			spec := Spec{JobID: 4, WorkDir: t.TempDir(), Head: true,
				Exec:   pipeline.Exec{Path: bin, Mode: mode, Params: []string{"--block-size", "4", "--head-size", "1"}},
				Inputs: ports(b4, 1, 1), Outputs: ports(b4, 1, 2)}
			r := runJob(t, spec, [][]block{in}).ok(t)
			equalBlocks(t, "output", r.outs[0].blocks, in)
		})
		t.Run("gocat/"+mode, func(t *testing.T) {
			bin := buildGo(t, "gocat")
			for _, c := range []struct {
				codec  codec.Codec
				params []string
				blocks []block
			}{
				{json, []string{"-codec", "json", "-head-size", "2"}, []block{{[]byte(`{"x": 1}`), 0x4000}, {[]byte(`[1, 2]`), 0x2001}}},
				{mustCodec(t, codec.Bytes, 3), []string{"-codec", "bytes", "-block-size", "3", "-head-size", "2"},
					[]block{{[]byte("abc"), 1}, {[]byte("def"), 2}}},
			} {
				spec := Spec{Pipeline: "g", JobID: 5, WorkDir: t.TempDir(), Head: true, HeadSize: 2,
					Exec:   pipeline.Exec{Path: bin, Mode: mode, Params: c.params},
					Inputs: ports(c.codec, 1, 1), Outputs: ports(c.codec, 1, 2)}
				r := runJob(t, spec, [][]block{c.blocks}).ok(t)
				equalBlocks(t, "output", r.outs[0].blocks, c.blocks)
				if !strings.Contains(r.logs.String(), "stderr: gocat: job 5 of g, 1 inputs, 1 outputs") {
					t.Errorf("log:\n%s", r.logs)
				}
			}
		})
	}
}

func TestSpecFromAssignment(t *testing.T) {
	a := &protocol.Assignment{
		Pipeline: "demo",
		Job: pipeline.Job{ID: 6, Exec: &pipeline.Exec{Path: "./reduce.py", Mode: "fd"}, Head: true, HeadSize: 2,
			Inputs: []int{105}, Outputs: []int{106}},
		Inputs:  []protocol.PipeBinding{{ID: 105, Codec: "bytes", BlockSize: 4, BlockCount: 5}},
		Outputs: []protocol.PipeBinding{{ID: 106, Codec: "json"}},
	}
	s, err := SpecFromAssignment(a, "w1", "/work")
	if err != nil {
		t.Fatal(err)
	}
	if s.Label() != "job 6 (reduce.py)" || s.Pipeline != "demo" || s.Worker != "w1" || s.WorkDir != "/work" ||
		!s.Head || s.HeadSize != 2 || s.Exec.Mode != "fd" ||
		len(s.Inputs) != 1 || s.Inputs[0].Pipe != 105 || s.Inputs[0].BlockCount != 5 || s.Inputs[0].Codec.Name() != "bytes" ||
		len(s.Outputs) != 1 || s.Outputs[0].Codec.Name() != "json" || s.Outputs[0].BlockCount != 1 {
		t.Errorf("spec %+v", s)
	}
	a.Inputs[0].BlockSize = 0
	if _, err := SpecFromAssignment(a, "w1", "/work"); err == nil || !strings.HasPrefix(err.Error(), "job 6 (reduce.py): input pipe 105: codec bytes") {
		t.Errorf("error %v", err)
	}
	a.Job.Exec = nil
	a.Job.Type = "sum"
	if _, err := SpecFromAssignment(a, "w1", "/work"); err == nil {
		t.Error("a Go job made a Spec")
	}
}

// A program that opens its input only after upstream has finished (CloseInputs) still reads the
// data and then EOF.
func TestLateOpenAfterCloseInputs(t *testing.T) {
	json := mustCodec(t, codec.JSON, 0)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			gate := filepath.Join(dir, "gate")
			if err := syscall.Mkfifo(gate, 0o600); err != nil {
				t.Fatal(err)
			}
			script(t, dir, "late.sh", `read go < "$GATE"; open_in 7 "$2"; open_out 8 "$4"; exec cat <&7 >&8`)
			spec := Spec{JobID: 1, WorkDir: dir, Env: []string{"GATE=" + gate},
				Exec:   pipeline.Exec{Path: "./late.sh", Mode: mode},
				Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2)}
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			p, err := Start(ctx, spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			outs := drain(p, 1)
			if err := feed(ctx, p, spec, [][]block{jsonBlocks("1", "2", "3")}); err != nil {
				t.Fatal(err)
			}
			// Only now let the program open its streams.
			g, err := os.OpenFile(gate, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			g.WriteString("go\n")
			g.Close()
			select {
			case res := <-outs:
				if got := payloads(res[0].blocks); res[0].err != nil || !slices.Equal(got, []string{"1", "2", "3"}) {
					t.Errorf("output %q, %v", got, res[0].err)
				}
			case <-ctx.Done():
				t.Fatal("the output did not end: the program did not see EOF on its input")
			}
			if err := p.Wait(); err != nil {
				t.Error(err)
			}
		})
	}
}

// A program that opens its input only after upstream has finished (CloseInputs) still reads the
// data and then EOF when, at that moment, another process holds a copy of the adapter's end of
// the named pipe: a child the worker forks (another job's program starting) holds a copy of
// every descriptor of the worker, close-on-exec ones too, from its fork until its exec. The
// adapter used to end the input once an open for writing, which returns when the pipe has a
// reader, came back, taking that reader for the program: the child's copy of the adapter's own
// reader let it return, both write ends were closed before the program had the pipe open, and
// the program's open then waited for a writer for good (the exec-jobs pipeline hung so with a
// NATS connection per job: scale.py was still starting while offset's sum.sh was forked).
func TestLateOpenAfterCloseInputsWhileAChildHoldsThePipe(t *testing.T) {
	json := mustCodec(t, codec.JSON, 0)
	dir := t.TempDir()
	gate := filepath.Join(dir, "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	script(t, dir, "late.sh", `read go < "$GATE"; open_in 7 "$2"; open_out 8 "$4"; exec cat <&7 >&8`)
	spec := Spec{JobID: 1, WorkDir: dir, Env: []string{"GATE=" + gate},
		Exec:   pipeline.Exec{Path: "./late.sh", Mode: pipeline.ModeFIFO},
		Inputs: ports(json, 1, 1), Outputs: ports(json, 1, 2)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := Start(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	outs := drain(p, 1)
	// The copy a child forked now would hold: a duplicate of the adapter's reader of the input.
	child := dupFile(t, p.ins[0].keep)
	defer child.Close()
	if err := feed(ctx, p, spec, [][]block{jsonBlocks("1", "2", "3")}); err != nil {
		t.Fatal(err)
	}
	// Only now let the program open its streams.
	g, err := os.OpenFile(gate, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	g.WriteString("go\n")
	g.Close()
	select {
	case res := <-outs:
		if got := payloads(res[0].blocks); res[0].err != nil || !slices.Equal(got, []string{"1", "2", "3"}) {
			t.Errorf("output %q, %v", got, res[0].err)
		}
	case <-time.After(testTimeout):
		t.Fatalf("the output did not end within %v: the program did not see EOF on its input (the program: %s; wait_for_partner is its open waiting for a writer)", testTimeout, wchan(p.Pid()))
	}
	if err := p.Wait(); err != nil {
		t.Error(err)
	}
}

// After a round interrupted by its context, the next round, with another context, writes again.
func TestWriteAfterInterruptedRound(t *testing.T) {
	big := mustCodec(t, codec.Bytes, bigBlock)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			gate := filepath.Join(dir, "gate")
			if err := syscall.Mkfifo(gate, 0o600); err != nil {
				t.Fatal(err)
			}
			script(t, dir, "gated.sh", `open_in 7 "$2"; echo ready; read go < "$GATE"; exec cat <&7 >/dev/null`)
			spec := Spec{JobID: 1, WorkDir: dir, Env: []string{"GATE=" + gate},
				Exec: pipeline.Exec{Path: "./gated.sh", Mode: mode}, Inputs: ports(big, 1, 1)}
			logs := &logRec{}
			p, err := Start(context.Background(), spec, logs.log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop(0)
			logs.waitFor(t, "ready")
			block := [][][]byte{{make([]byte, bigBlock)}}
			short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := p.WriteRound(short, block, nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WriteRound: %v, want the deadline", err)
			}
			if err := p.WriteRound(short, block, nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WriteRound with the ended context again: %v", err)
			}
			g, err := os.OpenFile(gate, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			g.WriteString("go\n")
			g.Close()
			ctx, cancel2 := context.WithTimeout(context.Background(), testTimeout)
			defer cancel2()
			if err := p.WriteRound(ctx, block, nil); err != nil {
				t.Fatalf("WriteRound with a new context: %v", err)
			}
			p.CloseInputs()
			if err := p.Wait(); err != nil {
				t.Error(err)
			}
		})
	}
}
