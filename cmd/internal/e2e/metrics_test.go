package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"

	"github.com/marvelo/marvelo/cmd/internal/testkit"
)

// scrape reads one series of a metrics page (name and the start of its labels), -1 if absent.
func scrape(t *testing.T, url, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(regexp.QuoteMeta(name+"{"+labels) + `[^}]*\} ([0-9.e+]+)`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestMetricsOfARealBrokerDuringARun: marvelo-broker --metrics serves, during a run, per-job
// counters that rise (blocks and bytes), the CPU and memory of an executable job's own program
// (not its worker's), the pipe series, and marvelo top --once --json shows non-zero rates.
func TestMetricsOfARealBrokerDuringARun(t *testing.T) {
	port := testkit.FreePort(t)
	c := &cluster{t: t, listen: fmt.Sprintf("127.0.0.1:%d", port), url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		workers: map[string]*proc{}, dir: t.TempDir()}
	metrics := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	c.broker = start(t, "marvelo-broker", "marvelo-broker", "--listen", c.listen, "--workdir", c.dir, "--memory", "--metrics", metrics)
	c.waitFor("the broker to answer", func() bool { _, _, code := c.marvelo("workers"); return code == 0 })
	c.startWorker("w1", "--slots", "4")
	c.addDependencies("sum", "sum.sh")
	doc := c.writeDoc("live.json", `{"name": "live", "jobs": [
    {"id": 1, "type": "counter", "args": {"interval": "2ms"}, "outputs": [1]},
    {"id": 2, "exec": {"path": "./sum.sh", "params": ["--add", "1"], "dependencies": "sum"}, "inputs": [1], "outputs": [2]},
    {"id": 3, "type": "discard", "inputs": [2]}],
  "pipes": [{"id": 1, "codec": "json"}, {"id": 2, "codec": "json"}]}`)
	c.submit(doc)
	defer c.marvelo("stop", "live", "--force")
	url := "http://" + metrics + "/metrics"
	for _, s := range []struct{ name, labels string }{
		{"marvelo_job_blocks_out_total", `pipeline="live",job="1"`},
		{"marvelo_job_bytes_out_total", `pipeline="live",job="2"`},
		{"marvelo_job_blocks_in_total", `pipeline="live",job="3"`},
		{"marvelo_pipe_messages_total", `pipeline="live",pipe="2",job="3"`},
	} {
		var first float64
		c.waitFor("a first "+s.name+"{"+s.labels+"}", func() bool { first = scrape(t, url, s.name, s.labels); return first > 0 })
		c.waitFor(s.name+"{"+s.labels+"} to rise", func() bool { return scrape(t, url, s.name, s.labels) > first })
	}
	// The executable's memory is its sh program's, far smaller than the worker process's, which
	// its Go neighbours report.
	var prog, worker float64
	c.waitFor("the memory of both", func() bool {
		prog = scrape(t, url, "marvelo_job_memory_bytes", `pipeline="live",job="2"`)
		worker = scrape(t, url, "marvelo_job_memory_bytes", `pipeline="live",job="1"`)
		return prog > 0 && worker > 0
	})
	if prog >= worker {
		t.Errorf("memory: the program %v B, the worker %v B: want the program's own", prog, worker)
	}
	if v := scrape(t, url, "marvelo_job_cpu_seconds_total", `pipeline="live",job="2"`); v < 0 {
		t.Errorf("no marvelo_job_cpu_seconds_total for the executable job")
	}

	out, errOut, code := c.marvelo("top", "live", "--once", "--json")
	if code != 0 {
		t.Fatalf("top --once --json: exit %d: %s", code, errOut)
	}
	var rows []struct {
		Job         int     `json:"job"`
		BlocksInPS  float64 `json:"blocks_in_per_s"`
		BlocksOutPS float64 `json:"blocks_out_per_s"`
		BytesOutPS  float64 `json:"bytes_out_per_s"`
		MemBytes    uint64  `json:"mem_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("top --once --json: %v\n%s", err, out)
	}
	if rows[0].BlocksOutPS <= 0 || rows[1].BytesOutPS <= 0 || rows[2].BlocksInPS <= 0 || rows[1].MemBytes == 0 {
		t.Errorf("top rates: %+v", rows)
	}
}
