package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline"
)

const xmlFixtures = "../../testdata/xml"

// runImportXML runs `marvelo import-xml ARGS...` in process, as main does.
func runImportXML(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{
		Name:           "marvelo",
		Commands:       []*cli.Command{importXMLCommand()},
		Reader:         strings.NewReader(stdin),
		Writer:         &stdout,
		ErrWriter:      &stderr,
		ExitErrHandler: cliutil.HandleExitError,
	}
	r := result{}
	if err := app.Run(cliutil.FlagsFirst(app, append([]string{"marvelo", "import-xml"}, args...))); err != nil {
		stderr.WriteString("marvelo: " + err.Error() + "\n")
		r.code = cliutil.ExitCode(err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func TestImportXMLCommand(t *testing.T) {
	valid := filepath.Join(xmlFixtures, "network_valid.xml")

	// JSON on stdout; flags after the file work too.
	r := runImportXML(t, "", valid, "--ip-attr", "ip")
	r.want(t, 0, `"name": "network_valid"`, `"node": "192.168.4.1"`, `"mode": "fd"`, `"dependencies": "1"`)
	p, err := pipeline.Parse([]byte(r.stdout))
	if err != nil {
		t.Fatalf("the output is not a pipeline document: %v\n%s", err, r.stdout)
	}
	if len(p.Jobs) != 6 || len(p.Pipes) != 6 || p.PipeByID(1).BlockCount != 5 || p.PipeByID(3).BlockSize != 30 {
		t.Errorf("converted %+v", p)
	}

	// -o with .cbor writes CBOR; --name sets the name; a summary goes to stderr.
	out := filepath.Join(t.TempDir(), "net.cbor")
	r = runImportXML(t, "", "--name", "net", "-o", out, "--ip-attr=ip", valid)
	r.want(t, 0)
	if !strings.Contains(r.stderr, "6 jobs, 6 pipes → "+out+" (pipeline net)") {
		t.Errorf("stderr: %s", r.stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if data[0] == '{' {
		t.Error("-o x.cbor wrote JSON")
	}
	if p, err := pipeline.Parse(data); err != nil || p.Name != "net" || len(p.Jobs) != 6 {
		t.Errorf("CBOR output: %v %+v", err, p)
	}

	// Standard input; the name defaults to "imported".
	xml, err := os.ReadFile(valid)
	if err != nil {
		t.Fatal(err)
	}
	runImportXML(t, string(xml), "-", "--ip-attr", "ip").want(t, 0, `"name": "imported"`)

	// The loader's errors and a wrong address attribute: exit code 2, with file and line.
	r = runImportXML(t, "", filepath.Join(xmlFixtures, "network_two_sources.xml"), "--ip-attr", "ip")
	if r.code != 2 || !strings.Contains(r.stderr, "network_two_sources.xml:6: Source of pipe 1 was defined multiple times.") {
		t.Errorf("two sources: code %d, stderr %s", r.code, r.stderr)
	}
	r = runImportXML(t, "", valid)
	if r.code != 2 || !strings.Contains(r.stderr, "network_valid.xml:7: node <node> has no pi_id attribute") {
		t.Errorf("default pi_id: code %d, stderr %s", r.code, r.stderr)
	}

	// A graph that converts but is not a valid pipeline: exit 2, unless --no-validate.
	dangling := writeFile(t, "dangling.xml", `<n><node pi_id="h"><job executable="src"><output pipe_id="3"/></job></node></n>`)
	r = runImportXML(t, "", dangling)
	if r.code != 2 || !strings.Contains(r.stderr, "pipe 3") || !strings.Contains(r.stderr, "--no-validate") {
		t.Errorf("dangling pipe: code %d, stderr %s", r.code, r.stderr)
	}
	runImportXML(t, "", dangling, "--no-validate").want(t, 0, `"name": "dangling"`)

	// Usage errors and a missing file.
	runImportXML(t, "").want(t, 2)
	if r := runImportXML(t, "", filepath.Join(t.TempDir(), "missing.xml")); r.code != 2 {
		t.Errorf("missing file: code %d", r.code)
	}
}

func TestImportXMLHelp(t *testing.T) {
	r := runImportXML(t, "", "--help")
	r.want(t, 0, "convert an old MARVELO XML topology", "Example:", "marvelo import-xml network.xml -o network.json --ip-attr ip",
		"--ip-attr", "--name", "--output")
}
