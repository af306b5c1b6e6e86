package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/worker"
	"github.com/marvelo/marvelo/worker/command"
)

// runWith runs `marvelo ARGS...` in process with the one command given, as main does.
func runWith(t *testing.T, cmd *cli.Command, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{Name: "marvelo", Commands: []*cli.Command{cmd}, Writer: &stdout, ErrWriter: &stderr,
		ExitErrHandler: cliutil.HandleExitError}
	r := result{}
	if err := app.Run(cliutil.FlagsFirst(app, append([]string{"marvelo"}, args...))); err != nil {
		stderr.WriteString("marvelo: " + err.Error() + "\n")
		r.code = cliutil.ExitCode(err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// The issue's examples: each is reported, with its JSON path, in one run of validate, together
// with the document's unknown key and its graph problems.
const issueDoc = `{
  "name": "bad",
  "stpe": 1,
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": "ten", "stpe": 2}, "outputs": [1]},
    {"id": 2, "type": "clock", "args": {"interval": "-1ms"}, "outputs": [2]},
    {"id": 3, "type": "csv_sink", "args": {"path": 7, "echo": "yes"}, "inputs": [1, 2, 3]}
  ]
}`

func TestValidateReportsEveryProblemAtOnce(t *testing.T) {
	bad := writeFile(t, "bad.json", issueDoc)
	r := runDocCmd(t, "", "validate", bad)
	r.want(t, 2,
		bad+": stpe: unknown key",
		bad+`: jobs[0].args.count: job 1 (counter): arg "count": expected an integer, got string "ten"`,
		bad+`: jobs[0].args.stpe: job 1 (counter): unknown arg "stpe" (did you mean step?)`,
		bad+`: jobs[1].args.interval: job 2 (clock): arg "interval": "-1ms" is out of range`,
		bad+`: jobs[2].args.echo: job 3 (csv_sink): arg "echo": expected true or false, got string "yes"`,
		bad+`: jobs[2].args.path: job 3 (csv_sink): arg "path": expected a string, got integer 7`,
		bad+": pipe 3: no source",
	)
	if !strings.Contains(r.stderr, "(7 problems)") {
		t.Errorf("stderr: %s", r.stderr)
	}
}

func TestValidateJSON(t *testing.T) {
	bad := writeFile(t, "bad.json", issueDoc)
	r := runDocCmd(t, "", "validate", "--json", bad)
	if r.code != 2 {
		t.Fatalf("exit code %d", r.code)
	}
	var res worker.CheckResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
	if res.OK || res.Jobs != 3 || len(res.Problems) != 7 {
		t.Errorf("result %+v", res)
	}
	paths := map[string]string{}
	for _, p := range res.Problems {
		paths[p.Path] = p.Kind
	}
	if paths["stpe"] != pipeline.ProblemDecode || paths["jobs[0].args.count"] != pipeline.ProblemArgs {
		t.Errorf("paths and kinds: %v", paths)
	}
	ok := runDocCmd(t, "", "validate", "--json", fixtures+"/demo.json")
	if ok.code != 0 || !strings.Contains(ok.stdout, `"ok": true`) || !strings.Contains(ok.stdout, `"problems": []`) {
		t.Errorf("valid document: code %d\n%s", ok.code, ok.stdout)
	}
}

func TestTypesCommand(t *testing.T) {
	r := runWith(t, command.TypesCommand(registry), "types")
	r.want(t, 0, "counter — source:", "    count     integer >= 0  default: 0", "csv_sink — sink:", "path  string   required")
	j := runWith(t, command.TypesCommand(registry), "types", "--json", "clock")
	var specs []pipeline.TypeSpec
	if err := json.Unmarshal([]byte(j.stdout), &specs); err != nil || len(specs) != 1 || specs[0].Name != "clock" {
		t.Fatalf("types --json clock: %v %s", err, j.stdout)
	}
	if a, ok := specs[0].Arg("interval"); !ok || a.Kind != pipeline.KindDuration || a.Default != "40ms" {
		t.Errorf("clock interval: %+v", a)
	}
	runWith(t, command.TypesCommand(registry), "types", "nosuch").want(t, 2)
}
