package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// TestLogsJSONPrintsOneObjectALine: marvelo logs --json prints each line of the run as one JSON
// object with its time, pipeline, run, job, name, worker, stream, level and text; a job's
// printed rows are stream stdout, its log records stream log with their level, the pipeline's
// events stream event with their kind.
func TestLogsJSONPrintsOneObjectALine(t *testing.T) {
	env, err := local.Start(local.Options{Registry: registry, WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	doc := []byte(`{"name": "jl", "jobs": [
		{"id": 1, "type": "counter", "args": {"count": 3}, "outputs": [1]},
		{"id": 2, "name": "rows", "type": "csv_sink", "args": {"path": "out.csv", "echo": true}, "inputs": [1]}]}`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.Client.Submit(ctx, doc, ""); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 30*time.Second, "the pipeline to finish", func() bool {
		st, err := env.Client.Status(ctx, "jl")
		return err == nil && len(st) == 1 && protocol.Terminal(st[0].State)
	})
	r := runApp(t, "logs", "jl", "--json", "--broker", env.Broker.ClientURL())
	if r.code != 0 {
		t.Fatalf("logs --json: exit %d: %s", r.code, r.stderr)
	}
	var rows, logs, events int
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not one JSON object a line: %v: %q", err, sc.Text())
		}
		for _, k := range []string{"time", "pipeline", "run", "job", "name", "worker", "stream", "text"} {
			if _, ok := l[k]; !ok {
				t.Errorf("line without %q: %s", k, sc.Text())
			}
		}
		if l["pipeline"] != "jl" || l["run"] != 1.0 {
			t.Errorf("pipeline and run: %s", sc.Text())
		}
		switch l["stream"] {
		case "stdout":
			if l["job"] == 2.0 && l["name"] == "rows" && l["level"] == nil {
				rows++
			}
		case "log":
			if l["level"] == "info" {
				logs++
			}
		case "event":
			if l["kind"] == "job finished" && l["job"] == 2.0 && l["level"] == nil {
				events++
			}
		default:
			t.Errorf("stream %v: %s", l["stream"], sc.Text())
		}
	}
	if rows < 3 || logs == 0 || events != 1 {
		t.Errorf("%d printed lines of job 2 (want the header and 3 rows), %d info log lines, %d events of job 2 finishing:\n%s", rows, logs, events, r.stdout)
	}
}
