package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/worker/command"
)

// runApp runs the whole marvelo command line in process, as main does.
func runApp(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &stdout, &stderr
	r := result{}
	if err := app.Run(cliutil.FlagsFirst(app, append([]string{"marvelo"}, args...))); err != nil {
		stderr.WriteString("marvelo: " + err.Error() + "\n")
		r.code = cliutil.ExitCode(err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func TestHelpListsEveryCommandWithASummaryAndEachHasAnExample(t *testing.T) {
	help := runApp(t, "--help")
	for _, c := range newApp().Commands {
		if c.Usage == "" {
			t.Errorf("command %s has no one-line summary", c.Name)
		}
		if !strings.Contains(help.stdout, "   "+c.Name) || !strings.Contains(help.stdout, c.Usage) {
			t.Errorf("marvelo --help does not list %s with its summary", c.Name)
		}
		own := runApp(t, c.Name, "--help")
		if own.code != 0 || !strings.Contains(own.stdout, "Example") {
			t.Errorf("marvelo %s --help has no example (exit %d):\n%s", c.Name, own.code, own.stdout)
		}
	}
}

func TestVersionOnEveryBinary(t *testing.T) {
	r := runApp(t, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "marvelo version ") || !strings.Contains(r.stdout, "protocol ") {
		t.Errorf("marvelo --version: %d %q", r.code, r.stdout)
	}
	var out bytes.Buffer
	w := command.App(builtin.Registry())
	w.Writer = &out
	if err := w.Run([]string{"marvelo-worker", "--version"}); err != nil || !strings.Contains(out.String(), "marvelo-worker version ") {
		t.Errorf("marvelo-worker --version: %v %q", err, out.String())
	}
}

func TestShellCompletion(t *testing.T) {
	r := runApp(t, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "complete -o bashdefault -o default -F _marvelo_complete marvelo") {
		t.Errorf("completion bash: %d\n%s", r.code, r.stdout)
	}
	if r := runApp(t, "completion", "zsh"); r.code != 0 || !strings.Contains(r.stdout, "#compdef marvelo") {
		t.Errorf("completion zsh: %d\n%s", r.code, r.stdout)
	}
	runApp(t, "completion", "fish").want(t, 2)
	// The scripts ask marvelo for the words (urfave/cli reads os.Args for them).
	args := os.Args
	os.Args = []string{"marvelo", "--generate-bash-completion"}
	words := runApp(t, "--generate-bash-completion")
	os.Args = args
	for _, c := range []string{"init", "validate", "types", "submit", "completion"} {
		if !strings.Contains(words.stdout, c+"\n") {
			t.Errorf("--generate-bash-completion lacks %s:\n%s", c, words.stdout)
		}
	}
}

// Every flag that has a MARVELO_* variable takes it in every command that has the flag.
func TestEnvironmentVariablesOnEveryCommand(t *testing.T) {
	want := map[string]string{"broker": "MARVELO_BROKER", "auth-token": "MARVELO_AUTH_TOKEN"}
	check := func(where string, flags []cli.Flag) {
		for _, f := range flags {
			env, ok := want[f.Names()[0]]
			if !ok {
				continue
			}
			sf, isString := f.(*cli.StringFlag)
			if !isString || len(sf.EnvVars) == 0 || sf.EnvVars[0] != env {
				t.Errorf("%s --%s does not take %s", where, f.Names()[0], env)
			}
		}
	}
	for _, c := range newApp().Commands {
		check("marvelo "+c.Name, c.Flags)
	}
	check("marvelo-worker", command.App(builtin.Registry()).Flags)
}

// One rule: bad usage or an unreadable or invalid file is 2, a failure 1.
func TestExitCodeRule(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.json")
	invalid := writeFile(t, "invalid.json", `{"name": "x", "jbos": [], "jobs": [{"id": 1, "type": "counter", "args": {"count": "ten"}}]}`)
	valid := filepath.Join(fixtures, "demo.json")
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"frobnicate"}, 2},
		{[]string{"validate", "--no-such-flag", valid}, 2},
		{[]string{"validate"}, 2},
		{[]string{"validate", missing}, 2},
		{[]string{"encode", missing}, 2},
		{[]string{"decode", missing}, 2},
		{[]string{"graph", missing}, 2},
		{[]string{"import-xml", missing}, 2},
		{[]string{"run", missing}, 2},
		{[]string{"submit", missing}, 2},
		{[]string{"validate", invalid}, 2},
		{[]string{"run", invalid}, 2},
		{[]string{"submit", invalid, "--broker", "nats://127.0.0.1:1"}, 2},
		{[]string{"submit", valid, "--broker", "nats://127.0.0.1:1"}, 1},
		{[]string{"workers", "--broker", "nats://127.0.0.1:1"}, 1},
		{[]string{"validate", valid}, 0},
	} {
		if r := runApp(t, tt.args...); r.code != tt.code {
			t.Errorf("marvelo %s: exit %d, want %d\n%s", strings.Join(tt.args, " "), r.code, tt.code, r.stderr)
		}
	}
}

func TestConnectionErrorsNameTheURLAndAuthorization(t *testing.T) {
	dead := runApp(t, "workers", "--broker", "nats://127.0.0.1:1")
	if !strings.Contains(dead.stderr, "nats://127.0.0.1:1") || !strings.Contains(dead.stderr, "cannot reach it") {
		t.Errorf("dead URL: %s", dead.stderr)
	}
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:-1", Memory: true, AuthToken: "right", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	refused := runApp(t, "workers", "--broker", b.ClientURL(), "--auth-token", "wrong")
	if refused.code != 1 || !strings.Contains(refused.stderr, b.ClientURL()) || !strings.Contains(refused.stderr, "authorization failed") {
		t.Errorf("wrong token: %d %s", refused.code, refused.stderr)
	}
	// The variables stand in for the flags.
	t.Setenv("MARVELO_BROKER", b.ClientURL())
	t.Setenv("MARVELO_AUTH_TOKEN", "right")
	if ok := runApp(t, "workers"); ok.code != 0 {
		t.Errorf("workers with MARVELO_BROKER and MARVELO_AUTH_TOKEN: %d %s", ok.code, ok.stderr)
	}
	// validate --broker knows only the live workers' types: this broker has none.
	if r := runApp(t, "validate", filepath.Join(fixtures, "demo.json")); r.code != 2 || !strings.Contains(r.stdout, `unknown job type "counter"`) {
		t.Errorf("validate (MARVELO_BROKER set) against a broker without workers: %d %s", r.code, r.stdout)
	}
}

type gain struct {
	DB float64 `json:"db" marvelo:"required,min=-60,max=60"`
}

func (g *gain) Run(ctx *job.Context, x float64) (float64, error) { return x, nil }

// validate --broker checks types and args against the live workers' registries: a type only a
// worker of one's own carries, with its arg range.
func TestValidateAgainstTheBrokersWorkers(t *testing.T) {
	reg := builtin.Registry()
	reg.Register("gain", "amplifies", func() any { return &gain{} })
	env, err := local.Start(local.Options{Registry: reg, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	doc := writeFile(t, "gain.json", `{"name": "g", "jobs": [
		{"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
		{"id": 2, "type": "gain", "args": {"db": 99}, "inputs": [1], "outputs": [2]},
		{"id": 3, "type": "discard", "inputs": [2]}]}`)
	r := runApp(t, "validate", "--broker", env.Broker.ClientURL(), doc)
	r.want(t, 2, doc+`: jobs[1].args.db: job 2 (gain): arg "db": 99 is out of range: must be at most 60`)
	// Without --broker, this marvelo does not know gain.
	runApp(t, "validate", doc).want(t, 2, `unknown job type "gain"`)
	// submit checks the args before placing anything.
	s := runApp(t, "submit", "--broker", env.Broker.ClientURL(), doc)
	if s.code != 2 || !strings.Contains(s.stderr, `arg "db": 99 is out of range`) {
		t.Errorf("submit: exit %d, %s", s.code, s.stderr)
	}
}

func TestSubmitWarnsOnAnExecutableNoWorkerCanHave(t *testing.T) {
	doc := writeFile(t, "exec.json", `{"name": "e", "jobs": [
		{"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
		{"id": 2, "exec": {"path": "./filter.py"}, "inputs": [1], "outputs": [2]},
		{"id": 3, "exec": {"path": "/usr/bin/cat"}, "inputs": [2], "outputs": [3]},
		{"id": 4, "type": "discard", "inputs": [3]}]}`)
	r := runApp(t, "submit", "--broker", "nats://127.0.0.1:1", doc)
	if !strings.Contains(r.stderr, `warning: jobs[1].exec.path: job 2 (filter.py): "./filter.py" is relative and the job has no dependencies folder`) {
		t.Errorf("no warning:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "jobs[2].exec.path") {
		t.Errorf("warning on an absolute path:\n%s", r.stderr)
	}
}
