package exectest_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/jobtest"
	"github.com/marvelo/marvelo/worker/exectest"
)

func jsonPipes(n int) []jobtest.Pipe {
	ps := make([]jobtest.Pipe, n)
	for k := range ps {
		ps[k].Codec = "json"
	}
	return ps
}

func TestPythonJobThroughTheAdapter(t *testing.T) {
	for _, mode := range []string{pipeline.ModeFIFO, pipeline.ModeFD} {
		t.Run(mode, func(t *testing.T) {
			h := exectest.New(t, pipeline.Exec{Path: "../../testdata/exec/scale.py", Params: []string{"--factor", "2"}, Mode: mode},
				jobtest.Config{InputPipes: jsonPipes(1), OutputPipes: jsonPipes(1)})
			res := h.Feed(0, int64(1), 2.5, int64(-3)).Run()
			if got := res.Values(0); !reflect.DeepEqual(got, []any{int64(2), 5.0, int64(-6)}) {
				t.Errorf("values %v", got)
			}
			if res.Rounds != 3 || !strings.Contains(res.Output, "stderr: scale: 3 blocks") {
				t.Errorf("rounds %d, output:\n%s", res.Rounds, res.Output)
			}
		})
	}
}

func TestShellJobAndItsFailure(t *testing.T) {
	h := exectest.New(t, pipeline.Exec{Path: "../../testdata/exec/sum.sh", Params: []string{"--add", "10"}},
		jobtest.Config{InputPipes: jsonPipes(1), OutputPipes: jsonPipes(1)})
	if got := h.Feed(0, int64(1), int64(5)).Run().Values(0); !reflect.DeepEqual(got, []any{int64(11), int64(15)}) {
		t.Errorf("values %v", got)
	}
	// scale.py fails on a value that is not a number: the run reports the exit status and stderr.
	bad := exectest.New(t, pipeline.Exec{Path: "../../testdata/exec/scale.py"},
		jobtest.Config{InputPipes: jsonPipes(1), OutputPipes: jsonPipes(1)}).Feed(0, "x").RunErr()
	if bad.Err == nil || !strings.Contains(bad.Err.Error(), "not a number") {
		t.Errorf("err %v", bad.Err)
	}
}

func TestHeadsReachTheProgramAndComeBack(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "copy.sh")
	// -i IN -o OUT: copy every byte, heads included.
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat \"$2\" > \"$4\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bytes2 := []jobtest.Pipe{{Codec: "bytes", BlockSize: 2}}
	h := exectest.New(t, pipeline.Exec{Path: script}, jobtest.Config{InputPipes: bytes2, OutputPipes: bytes2, HeadSize: 1})
	h.Head = true
	user, _ := pipeline.NewHead(0, 1).With(4, true)
	res := h.Feed(0, jobtest.Block{Value: []byte("ab"), Head: user.Value}, []byte("cd")).Run()
	if got := res.Values(0); !reflect.DeepEqual(got, []any{[]byte("ab"), []byte("cd")}) {
		t.Errorf("values %q", got)
	}
	if hs := res.Heads(0); len(hs) != 2 || !hs[0].Bit(4) || hs[1].Bit(4) {
		t.Errorf("heads %v", hs)
	}
}
