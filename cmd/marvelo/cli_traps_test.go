package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/builtin"
)

// The traps of issue 24 that a new user meets in the documents and the command line, each
// reproduced as the user met it.

// bareEnv is a new user's environment without network: PATH without go or marvelo, the Go
// module proxy off, the module cache and build cache as they are.
func bareEnv() []string {
	home, _ := os.UserHomeDir()
	env := []string{"PATH=/usr/bin:/bin", "HOME=" + home, "GOPROXY=off", "GOFLAGS=-mod=readonly"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE", "TMPDIR", "MARVELO_PYTHON"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// TestInitFromACopiedBinaryMakesAProjectThatBuildsOffline: `cp bin/marvelo ~/bin; marvelo init
// demo2; cd demo2; make test` — the binary alone in a folder of its own, run from an empty
// working directory, with no network but the module cache: the project's make test passes (or
// init refuses at once, naming the fix).
func TestInitFromACopiedBinaryMakesAProjectThatBuildsOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("builds marvelo and a project")
	}
	if raceEnabled {
		t.Skip("runs separate processes: nothing for the race detector")
	}
	for _, tool := range []string{"make", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	installed := filepath.Join(t.TempDir(), "bin", "marvelo") // ~/bin/marvelo: no source tree around it
	if err := os.MkdirAll(filepath.Dir(installed), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(testkit.GoBuild(t, ".", "marvelo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(installed, data, 0o755); err != nil {
		t.Fatal(err)
	}
	wd := t.TempDir() // an empty working directory, outside the source tree
	init := exec.Command(installed, "init", "demo2")
	init.Dir = wd
	init.Env = append(bareEnv(), "PATH="+filepath.Dir(installed)+":"+os.Getenv("PATH"))
	start := time.Now()
	out, err := init.CombinedOutput()
	if err != nil {
		// The other way to keep the promise: refuse at once, naming the fix.
		if time.Since(start) > 5*time.Second || !strings.Contains(string(out), "--marvelo") {
			t.Fatalf("init failed without naming the fix at once (%s): %v\n%s", time.Since(start), err, out)
		}
		return
	}
	dir := filepath.Join(wd, "demo2")
	mod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if !strings.Contains(string(mod), "replace github.com/marvelo/marvelo => ") {
		t.Errorf("go.mod builds against no source tree:\n%s", mod)
	}
	make := exec.Command("make", "-s", "test")
	make.Dir, make.Env = dir, bareEnv()
	if out, err := make.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok  \tdemo2") {
		t.Fatalf("make test of the project: %v\ngo.mod:\n%s\n%s", err, mod, out)
	}
}

// TestInitWithoutASourceTreeRefusesAtOnceNamingTheFix: a binary that cannot find the source
// tree it was built from (moved away, or built with -trimpath) and has no published version to
// require writes nothing and says how to go on.
func TestInitWithoutASourceTreeRefusesAtOnceNamingTheFix(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "moved-away")
	defer func(from, version string) { builtFrom, builtVersion = from, version }(builtFrom, builtVersion)
	builtFrom, builtVersion = filepath.Join(gone, "cmd", "marvelo", "init.go"), "(devel)"
	t.Setenv("MARVELO_SOURCE", "")
	t.Chdir(t.TempDir())
	var out bytes.Buffer
	app := &cli.App{Name: "marvelo", Commands: []*cli.Command{initCommand()}, Writer: &out, ErrWriter: &out,
		ExitErrHandler: cliutil.HandleExitError}
	err := app.Run([]string{"marvelo", "init", "demo2"})
	if code := cliutil.ExitCode(err); code != cliutil.ExitUsage {
		t.Errorf("init: exit %d, want 2 (%v)", code, err)
	}
	if err == nil || !strings.Contains(err.Error(), "--marvelo /path/to/marvelo") || !strings.Contains(err.Error(), "MARVELO_SOURCE") ||
		!strings.Contains(err.Error(), gone) {
		t.Errorf("init does not say what is missing and name the fix: %v", err)
	}
	if _, serr := os.Stat("demo2"); !os.IsNotExist(serr) {
		t.Errorf("init wrote demo2 before refusing: %v", serr)
	}
}

// TestEveryDocumentCommandTakesYAML: validate, encode, decode, graph, run and submit take
// pipeline.yaml, judged by content, as they take pipeline.json.
func TestEveryDocumentCommandTakesYAML(t *testing.T) {
	yml := filepath.Join(fixtures, "demo.yaml")
	runDocCmd(t, "", "validate", yml).want(t, 0, yml+": ok (6 jobs, 5 pipes)")
	dir := t.TempDir()
	fromYAML, fromJSON := filepath.Join(dir, "y.cbor"), filepath.Join(dir, "j.cbor")
	runDocCmd(t, "", "encode", yml, "-o", fromYAML).want(t, 0)
	runDocCmd(t, "", "encode", filepath.Join(fixtures, "demo.json"), "-o", fromJSON).want(t, 0)
	a, _ := os.ReadFile(fromYAML)
	b, _ := os.ReadFile(fromJSON)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("encode of demo.yaml and demo.json differ")
	}
	runDocCmd(t, "", "decode", yml).want(t, 0, `"block_count": 5`)
	runDocCmd(t, "", "graph", yml).want(t, 0, "digraph")
	// standard input too, and a file whose name says nothing
	runDocCmd(t, "name: s\njobs:\n  - {id: 1, type: counter, outputs: [1]}\n  - {id: 2, type: discard, inputs: [1]}\n", "validate", "-").
		want(t, 0, "<stdin>: ok (2 jobs, 1 pipes)")

	small := writeFile(t, "pipeline.yaml", "# three values\nname: small\njobs:\n  - {id: 1, type: counter, args: {count: 3}, outputs: [1]}\n  - {id: 2, type: discard, inputs: [1]}\n")
	if r := runApp(t, "run", small, "--workdir", t.TempDir()); r.code != 0 || !strings.Contains(r.stderr, "finished") {
		t.Errorf("run %s: exit %d\n%s", small, r.code, r.stderr)
	}
	env, err := local.Start(local.Options{Registry: builtin.Registry(), WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if r := runApp(t, "submit", small, "--broker", env.Broker.ClientURL(), "--wait"); r.code != 0 || !strings.Contains(r.stderr, "pipeline small finished") {
		t.Errorf("submit --wait %s: exit %d\n%s", small, r.code, r.stderr)
	}
}

// TestValidateShowsLineAndColumnOfEveryProblem: not only JSON syntax errors: an unknown key, a
// wrong arg, a graph problem, each with its line and column, in text and in --json.
func TestValidateShowsLineAndColumnOfEveryProblem(t *testing.T) {
	bad := writeFile(t, "bad.json", issueDoc)
	r := runDocCmd(t, "", "validate", bad)
	r.want(t, 2,
		bad+": stpe: unknown key (line 3, column 3)",
		bad+`: jobs[0].args.count: job 1 (counter): arg "count": expected an integer, got string "ten" (line 5, column 43)`,
		bad+": pipe 3: no source: job 3 (csv_sink) reads it but no job lists it in outputs (line 7, column 88)",
	)
	r = runDocCmd(t, "", "validate", "--json", bad)
	var res struct {
		Problems []struct {
			Path         string
			Line, Column int
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 7 {
		t.Errorf("--json: %d problems, want 7:\n%s", len(res.Problems), r.stdout)
	}
	for _, p := range res.Problems {
		if p.Line == 0 || p.Column == 0 {
			t.Errorf("--json: %s has no line and column", p.Path)
		}
	}
	yml := writeFile(t, "bad.yaml", "name: bad\njobs:\n  - id: 1\n    type: countr   # a typo\n    outputs: [1]\n  - {id: 2, type: discard, inputs: [1]}\n")
	runDocCmd(t, "", "validate", yml).want(t, 2, yml+`: jobs[0].type: job 1 (countr): unknown job type "countr" (did you mean "counter"?) (line 4, column 5)`)
	// The commands that only decode name the line and column too.
	if r := runDocCmd(t, "", "decode", writeFile(t, "typo.yaml", "name: t\njbos: []\n")); !strings.Contains(r.stderr, "jbos: unknown key (did you mean jobs?) (line 2, column 1)") {
		t.Errorf("decode does not place the problem:\n%s", r.stderr)
	}
}

// TestUnknownTypeSaysWhereTypesComeFromAndWhatMustRun: the init project's pipeline submitted to
// stock workers says that no live worker carries "scale" and that a worker built with it must
// run; validate says which types it knows; a misspelt type gets the closest.
func TestUnknownTypeSaysWhereTypesComeFromAndWhatMustRun(t *testing.T) {
	env, err := local.Start(local.Options{Registry: builtin.Registry(), WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	url := env.Broker.ClientURL()
	doc := writeFile(t, "pipeline.json", `{"name": "demo", "jobs": [
  {"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
  {"id": 2, "type": "scale", "args": {"factor": 2.5}, "inputs": [1], "outputs": [2]},
  {"id": 3, "type": "csv_sink", "args": {"path": "out.csv"}, "inputs": [2], "groups": ["LOCAL"]}]}`)
	want := `jobs[1].type: job 2 (scale): unknown job type "scale": no live worker of ` + url + ` carries it; ` +
		`start a worker built with it (a project of marvelo init: bin/worker --broker ` + url + `) (line 3, column 13)`
	s := runApp(t, "submit", doc, "--broker", url)
	if s.code != 2 || !strings.Contains(s.stderr, doc+": "+want) {
		t.Errorf("submit: exit %d, want 2 and\n%s\nin:\n%s", s.code, want, s.stderr)
	}
	runApp(t, "validate", "--broker", url, doc).want(t, 2, doc+": "+want)
	runApp(t, "validate", doc).want(t, 2, doc+`: jobs[1].type: job 2 (scale): unknown job type "scale": this marvelo carries only the builtin types (marvelo types); `+
		`check a pipeline of your own job types with your worker (a project of marvelo init: bin/worker validate pipeline.json)`)
	typo := writeFile(t, "typo.json", `{"name": "t", "jobs": [{"id": 1, "type": "countr", "outputs": [1]}, {"id": 2, "type": "discard", "inputs": [1]}]}`)
	if s := runApp(t, "submit", typo, "--broker", url); s.code != 2 || !strings.Contains(s.stderr, `unknown job type "countr" (did you mean "counter"?)`) {
		t.Errorf("submit of a misspelt type: exit %d\n%s", s.code, s.stderr)
	}
}

// TestSubmitWaitTimesOutNamingTheStateAndTheReason: submit --wait of a pipeline that stays
// pending says why while it waits, each reason once (the first placement may come before the
// worker bids, with a reason of its own), and --timeout ends the wait with exit 1 naming the
// state and the reason.
func TestSubmitWaitTimesOutNamingTheStateAndTheReason(t *testing.T) {
	env, err := local.Start(local.Options{Registry: builtin.Registry(), WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	// No worker has the program: the pipeline waits for one that has.
	doc := writeFile(t, "stuck.json", `{"name": "stuck", "jobs": [
  {"id": 1, "type": "counter", "outputs": [1]},
  {"id": 2, "exec": {"path": "/nonexistent/filter"}, "inputs": [1], "outputs": [2]},
  {"id": 3, "type": "discard", "inputs": [2]}]}`)
	start := time.Now()
	r := runApp(t, "submit", doc, "--broker", env.Broker.ClientURL(), "--wait", "--timeout", "1500ms")
	if r.code != 1 {
		t.Errorf("submit --wait --timeout: exit %d, want 1\n%s", r.code, r.stderr)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("submit --timeout 1500ms took %s", took)
	}
	if n := strings.Count(r.stderr, "pipeline stuck is pending: filter 2: no worker took"); n != 1 {
		t.Errorf("the pending reason printed %d times while waiting, want once:\n%s", n, r.stderr)
	}
	if !strings.Contains(r.stderr, "marvelo: pipeline stuck is still pending after 1.5s: filter 2: no worker took") || !strings.Contains(r.stderr, "/nonexistent/filter") {
		t.Errorf("the timeout does not name the state and the reason:\n%s", r.stderr)
	}
	runApp(t, "submit", doc, "--broker", env.Broker.ClientURL(), "--timeout", "1s").want(t, 2)
}

// TestFlagCompletionOffersLongFlagsAndNeverTheHiddenOne: `marvelo submit -<TAB>` and
// `--<TAB>` offer the command's flags as --name, never -generate-bash-completion; command names
// still complete. Checked on the words marvelo gives and through the bash script itself.
func TestFlagCompletionOffersLongFlagsAndNeverTheHiddenOne(t *testing.T) {
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{"submit", "-"}, []string{"--wait", "--timeout", "--broker", "--follow", "-f", "--help"}},
		{[]string{"submit", "--"}, []string{"--wait", "--timeout", "--broker", "--follow", "--help"}},
		{[]string{"submit", "p.json", "--w"}, []string{"--wait"}},
		{[]string{"--"}, []string{"--help", "--version"}},
		{[]string{"sub"}, []string{"submit"}},
		{[]string{""}, []string{"init", "validate", "submit", "completion"}},
	} {
		r := runApp(t, append([]string{"completion", "complete", "--"}, tc.words...)...)
		got := strings.Fields(r.stdout)
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("%q: lacks %s: %q", tc.words, w, got)
			}
		}
		for _, w := range got {
			if strings.Contains(w, "generate") || !strings.HasPrefix(w, tc.words[len(tc.words)-1]) {
				t.Errorf("%q: offers %s", tc.words, w)
			}
		}
	}
	if testing.Short() || raceEnabled {
		return
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash to run the script")
	}
	bin := testkit.GoBuild(t, ".", "marvelo")
	script := writeFile(t, "marvelo.bash", runApp(t, "completion", "bash").stdout)
	for cur, want := range map[string]string{"-": "--wait", "--": "--wait", "--ti": "--timeout", "sub": "submit"} {
		words := "marvelo submit p.json"
		if cur == "sub" {
			words = "marvelo"
		}
		cmd := exec.Command(bash, "-c", `source "$0"; COMP_WORDS=($1 "$2"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _marvelo_complete; printf '%s\n' "${COMPREPLY[@]}"`,
			script, words, cur)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), want+"\n") || strings.Contains(string(out), "generate") {
			t.Errorf("bash completion of %q: %v, want %s and never the hidden flag:\n%s", cur, err, want, out)
		}
	}
}
