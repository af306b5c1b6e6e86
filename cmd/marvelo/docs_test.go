package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/jobtest"
	"github.com/marvelo/marvelo/worker/exectest"
)

// docBlock is a fenced block of a Markdown file.
type docBlock struct {
	file, lang string
	line       int
	runnable   bool
	text       string
}

func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	var out []docBlock
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		var cur *docBlock
		runnable := false
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case cur == nil && strings.TrimSpace(line) == "<!-- runnable -->":
				runnable = true
			case cur == nil && strings.HasPrefix(line, "```"):
				cur = &docBlock{file: f, lang: strings.TrimPrefix(line, "```"), line: n, runnable: runnable}
				runnable = false
			case cur != nil && strings.HasPrefix(line, "```"):
				out = append(out, *cur)
				cur = nil
			case cur != nil:
				cur.text += line + "\n"
			default:
				runnable = runnable && strings.TrimSpace(line) == ""
			}
		}
		fh.Close()
	}
	return out
}

// TestDocsRunnableCommands runs every shell command the docs mark runnable (a
// "<!-- runnable -->" line before a sh block), one line at a time from the repository's root,
// with the marvelo built from this tree first on PATH and $OUT a fresh folder: the docs cannot rot.
func TestDocsRunnableCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds marvelo")
	}
	if raceEnabled {
		t.Skip("runs separate processes: nothing for the race detector")
	}
	bin := filepath.Dir(testkit.GoBuild(t, ".", "marvelo"))
	root, _ := filepath.Abs("../..")
	ran := 0
	for _, b := range docBlocks(t) {
		if !b.runnable {
			continue
		}
		if b.lang != "sh" {
			t.Errorf("%s:%d: a runnable block must be sh, is %q", b.file, b.line, b.lang)
			continue
		}
		out := t.TempDir() // one $OUT per block: its commands may use each other's files
		for i, line := range strings.Split(strings.TrimSpace(b.text), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			cmd := exec.Command("sh", "-c", line)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "OUT="+out)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s:%d: %s: %v\n%s", b.file, b.line+1+i, line, err, out)
			}
			ran++
		}
	}
	if ran < 10 {
		t.Errorf("only %d runnable commands in the docs", ran)
	}
}

// TestDocsPipelineExamplesAreValid checks every JSON pipeline document in the docs.
func TestDocsPipelineExamplesAreValid(t *testing.T) {
	checked := 0
	for _, b := range docBlocks(t) {
		if b.lang != "json" || !strings.Contains(b.text, `"jobs"`) {
			continue
		}
		if _, err := pipeline.Check([]byte(b.text), pipeline.ValidateOptions{Types: registry.Spec}); err != nil {
			t.Errorf("%s:%d: %v", b.file, b.line, err)
		}
		checked++
	}
	if checked == 0 {
		t.Error("no pipeline examples found in the docs")
	}
}

func TestREADMEListsEveryCommand(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range newApp().Commands {
		if !strings.Contains(string(readme), "marvelo "+c.Name) {
			t.Errorf("README.md does not list marvelo %s", c.Name)
		}
	}
	if !strings.Contains(string(readme), "marvelo init") {
		t.Error("README.md's quick start lacks marvelo init")
	}
}

// TestDocsExecutableExamplesRun runs the Python, C and sh examples of docs/exec-jobs.md through
// the real adapter (worker/exectest), each fed as its comment says: the examples cannot rot. The
// C one is compiled with cc; a missing python3 or cc skips that example, saying so.
func TestDocsExecutableExamplesRun(t *testing.T) {
	examples := map[string]string{}
	for _, b := range docBlocks(t) {
		if filepath.Base(b.file) == "exec-jobs.md" && (b.lang == "python" || b.lang == "c" || (b.lang == "sh" && strings.HasPrefix(b.text, "#!"))) {
			if _, dup := examples[b.lang]; dup {
				t.Fatalf("%s:%d: a second %s example: this test runs one of each", b.file, b.line, b.lang)
			}
			examples[b.lang] = b.text
		}
	}
	for _, lang := range []string{"python", "c", "sh"} {
		if examples[lang] == "" {
			t.Errorf("docs/exec-jobs.md has no %s example", lang)
		}
	}
	json1 := []jobtest.Pipe{{Codec: "json"}}
	script := func(t *testing.T, name, text string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("python", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("no python3 on PATH: the Python example is not run")
		}
		res := exectest.New(t, pipeline.Exec{Path: script(t, "offset.py", examples["python"]), Params: []string{"--add", "1"}},
			jobtest.Config{InputPipes: json1, OutputPipes: json1}).Feed(0, 1.5, int64(2)).Run()
		if got := res.Values(0); !reflect.DeepEqual(got, []any{2.5, 3.0}) {
			t.Errorf("values %v, want [2.5 3]", got)
		}
	})
	t.Run("c", func(t *testing.T) {
		cc, err := exec.LookPath("cc")
		if err != nil {
			t.Skip("no cc on PATH: the C example is not compiled nor run")
		}
		src := script(t, "copy.c", examples["c"])
		bin := filepath.Join(filepath.Dir(src), "copy")
		if out, err := exec.Command(cc, "-o", bin, src).CombinedOutput(); err != nil {
			t.Fatalf("cc copy.c: %v\n%s", err, out)
		}
		bytes8 := []jobtest.Pipe{{Codec: "bytes", BlockSize: 8}}
		h := exectest.New(t, pipeline.Exec{Path: bin}, jobtest.Config{InputPipes: bytes8, OutputPipes: bytes8, HeadSize: 1})
		h.Head = true
		user, _ := pipeline.NewHead(0, 1).With(4, true)
		res := h.Feed(0, jobtest.Block{Value: []byte("abcdefgh"), Head: user.Value}, []byte("12345678")).Run()
		if got := res.Values(0); !reflect.DeepEqual(got, []any{[]byte("abcdefgh"), []byte("12345678")}) {
			t.Errorf("values %q", got)
		}
		if hs := res.Heads(0); len(hs) != 2 || !hs[0].Bit(4) || hs[1].Bit(4) {
			t.Errorf("heads %v: the head byte did not come back with its block", hs)
		}
	})
	t.Run("sh", func(t *testing.T) {
		res := exectest.New(t, pipeline.Exec{Path: script(t, "sum.sh", examples["sh"]), Params: []string{"--add", "10"}},
			jobtest.Config{InputPipes: json1, OutputPipes: json1}).Feed(0, int64(1), int64(5)).Run()
		if got := res.Values(0); !reflect.DeepEqual(got, []any{int64(11), int64(15)}) {
			t.Errorf("values %v, want [11 15]", got)
		}
	})
}
