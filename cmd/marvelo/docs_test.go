package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
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
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "marvelo"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
