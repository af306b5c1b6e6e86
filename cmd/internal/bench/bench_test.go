package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/pipeline/builtin"
)

// quickOptions are marvelo bench's defaults with --quick, for the scenarios named.
func quickOptions(scenarios ...string) Options {
	return Options{
		Scenarios: scenarios, Stages: []int{1}, Sizes: []int{64}, Count: 20_000, Runs: 1, Rates: []float64{1000, 10000},
		Duration: 200 * time.Millisecond, JSCount: 2_000, Timeout: 2 * time.Minute, QoS: "reliable", Codec: "bytes",
	}
}

// result is what a bench run printed and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// runBench runs the bench in process, as marvelo bench does with o's flags.
func runBench(t *testing.T, o Options) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	o.Out, o.Progress = &stdout, &stderr
	r := result{}
	if err := Run(context.Background(), o); err != nil {
		stderr.WriteString("bench: " + err.Error() + "\n")
		r.code = cliutil.ExitCode(err)
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// want fails the test unless the run exited with code and its stdout holds every string of
// stdout.
func (r result) want(t *testing.T, code int, stdout ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
}

func TestBenchQuickJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	o := quickOptions(scenarioLinear, scenarioFanin, scenarioExec)
	o.JSON, o.Baseline, o.Count, o.JSCount = true, true, 5000, 500
	r := runBench(t, o)
	r.want(t, 0)
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Machine.CPUs < 1 || rep.Broker != "embedded" || !rep.Settings.Baseline {
		t.Errorf("machine %+v, broker %q, settings %+v", rep.Machine, rep.Broker, rep.Settings)
	}
	type key struct {
		scenario string
		rate     float64
	}
	rows := map[key]benchRow{}
	for _, row := range rep.Results {
		rows[key{row.Scenario, row.Rate}] = row
	}
	for _, sc := range []string{scenarioLinear, scenarioFanin, scenarioExec} {
		for _, rate := range []float64{0, 1000, 10000} {
			row, ok := rows[key{sc, rate}]
			if !ok {
				t.Errorf("no row for %s at rate %g", sc, rate)
				continue
			}
			if sc == scenarioExec && strings.HasPrefix(row.Error, "not available: ") {
				t.Logf("exec: %s", row.Error)
				continue
			}
			if row.Error != "" {
				t.Errorf("%s at %g: %s", sc, rate, row.Error)
				continue
			}
			checkFigures(t, sc+" marvelo", &row.benchFigures, rate, row.Count)
			if row.BrokerBytesPerBlock < float64(row.Size) {
				t.Errorf("%s at %g: %.0f bytes through the broker per block of %d bytes", sc, rate, row.BrokerBytesPerBlock, row.Size)
			}
			if row.Size != 64 || row.Sources < 1 {
				t.Errorf("%s at %g: size %d, sources %d", sc, rate, row.Size, row.Sources)
			}
			for _, kind := range []string{baselineCore, baselineJetStream} {
				b := row.Baseline[kind]
				if b == nil {
					t.Errorf("%s at %g: no %s baseline (notes %v)", sc, rate, kind, row.Notes)
					continue
				}
				count := row.Count
				if kind == baselineJetStream && rate == 0 {
					count = min(count, 500)
				}
				checkFigures(t, sc+" "+kind, b, rate, count)
				ratio := row.Ratio[kind]
				if rate == 0 && ratio.BlocksPerS <= 0 || rate > 0 && (ratio.P50 <= 0 || ratio.P99 <= 0) {
					t.Errorf("%s at %g: %s ratio %+v", sc, rate, kind, ratio)
				}
			}
		}
	}
	if !strings.Contains(r.stderr, "run 1/1") {
		t.Errorf("no progress on stderr:\n%s", r.stderr)
	}
}

func checkFigures(t *testing.T, what string, f *benchFigures, rate float64, count int) {
	t.Helper()
	if f.Blocks != int64(count) || f.Seconds <= 0 || f.BlocksPerS <= 0 || f.MBPerS <= 0 || f.CPUSecPerM <= 0 || f.PeakRSSMB <= 0 || f.WallSeconds <= 0 {
		t.Errorf("%s at %g: figures %+v (want %d blocks)", what, rate, f, count)
	}
	if rate == 0 {
		if f.Latency != nil {
			t.Errorf("%s: latency in a throughput run", what)
		}
		return
	}
	l := f.Latency
	if l == nil || l.Samples != uint64(count) || l.P50 <= 0 || l.P99 < l.P50 || l.P999 < l.P99 || l.Max < l.P999 {
		t.Errorf("%s at %g: latency %+v (want %d samples)", what, rate, l, count)
	}
}

func TestBenchFormatting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{thousands(1234567.4), "1,234,567"},
		{thousands(999), "999"},
		{thousands(1000), "1,000"},
		{ms(0.12345), "0.123"},
		{ms(1.5), "1.50"},
		{ms(12.34), "12.3"},
		{ms(1234), "1234"},
		{sizeLabel(16384), "16 KiB"},
		{sizeLabel(64), "64 B"},
		{sizeLabel(0), "int"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestBenchRemoteBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	// A deployment in miniature: a broker and a worker that carries the builtin types only.
	env, err := local.Start(local.Options{Registry: builtin.Registry(), WorkDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	o := quickOptions(scenarioLinear, scenarioFanin)
	o.JSON, o.Count, o.Broker = true, 3000, env.Broker.ClientURL()
	o.Connect = func() (*nats.Conn, *client.Client, []nats.Option, error) {
		nc, err := nats.Connect(o.Broker)
		if err != nil {
			return nil, nil, nil, err
		}
		return nc, client.New(nc), nil, nil
	}
	r := runBench(t, o)
	r.want(t, 0)
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	if rep.Broker != env.Broker.ClientURL() || len(rep.Results) != 2 {
		t.Fatalf("broker %q, %d results:\n%s", rep.Broker, len(rep.Results), r.stdout)
	}
	for _, row := range rep.Results {
		if row.Error != "" || row.Rate != 0 || row.Size != 0 || row.Blocks != 3000 || row.BlocksPerS <= 0 || row.Latency != nil || row.BrokerBytesPerBlock != 0 {
			t.Errorf("%s: %+v", row.Scenario, row)
		}
	}
}

func TestBenchTableLayout(t *testing.T) {
	fig := func(bps, p50 float64) benchFigures {
		f := benchFigures{Blocks: 1000, Seconds: 1, BlocksPerS: bps, MBPerS: bps * 64 / 1e6, CPUSecPerM: 1.5, PeakRSSMB: 40}
		if p50 > 0 {
			f.Latency = &benchLatency{P50: p50, P99: 2 * p50, P999: 3 * p50, Max: 4 * p50, Samples: 1000}
		}
		return f
	}
	core, js := fig(500_000, 0), fig(50_000, 0)
	coreLat, jsLat := fig(1000, 0.05), fig(1000, 0.2)
	rows := []benchRow{
		{Scenario: scenarioLinear, Label: "linear (1 forward)", Size: 64, benchFigures: fig(1_000_000, 0),
			Baseline: map[string]*benchFigures{baselineCore: &core, baselineJetStream: &js},
			Ratio:    map[string]benchRatio{baselineCore: {BlocksPerS: 2}, baselineJetStream: {BlocksPerS: 20}}},
		{Scenario: scenarioFanin, Label: "fanin (3 → join)", Size: 64, Error: "failed: boom"},
		{Scenario: scenarioExec, Label: "exec (cat)", Size: 64, Error: "not available: executable jobs are not supported"},
		{Scenario: scenarioLinear, Label: "linear (1 forward)", Size: 64, Rate: 1000, Count: 1000, Sources: 1, benchFigures: fig(1000, 0.1),
			Baseline: map[string]*benchFigures{baselineCore: &coreLat, baselineJetStream: &jsLat}},
		{Scenario: scenarioExec, Label: "exec (cat)", Size: 64, Rate: 1000, Error: "not available: executable jobs are not supported"},
	}
	rows[3].LateBlocks = 100
	rows[0].BrokerBytesPerBlock = 1234.4
	var b bytes.Buffer
	rep := benchReport{Machine: benchMachine{CPUs: 2, GOMAXPROCS: 2, OS: "linux", Arch: "amd64", Go: "go1"}, Broker: "embedded",
		Settings: benchSettings{Count: 1000, Runs: 3, Rates: []float64{1000}, Duration: 2, Baseline: true, JSCount: 500}, Results: rows}
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(b.String()), " ") // the columns' widths aside
	for _, want := range []string{
		"linear (1 forward) 64 B 1,000,000 64 32 3.20 2.00 20 1.50 1.50 1.50 1,234 40 MB", // MB/s and CPU s/M with their ceilings, B/block
		"CPU s/M core js broker B/block peak RSS",
		"fanin (3 → join) 64 B failed - -",
		"exec (cat) 64 B n/a - -",
		"64 B 1,000 0.100 0.050 0.200 0.200 0.100 0.400 0.300", // p50, p99, p99.9 with their ceilings
		"note: fanin (3 → join), 64 B: failed: boom",
		"note: exec (cat): not available: executable jobs are not supported",
		"the sources sent 100 of 1000 blocks more than an interval late",
		"fanin: blocks are rounds",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "not available"); n != 1 {
		t.Errorf("\"not available\" %d times, want once:\n%s", n, out)
	}
}

func TestExecUnsupported(t *testing.T) {
	for msg, want := range map[string]bool{
		"job 2 (bench-cat.sh): executable jobs are not supported by this worker yet": true,
		`invalid pipeline: job 2: unknown key "exec"`:                                true,
		"the sink saw 3 blocks, want 2":                                              false,
	} {
		if got := execUnsupported(msg); got != want {
			t.Errorf("execUnsupported(%q) = %v", msg, got)
		}
	}
}

// TestBenchPythonScenarioReportsThePythonJobsOwnProcess: marvelo bench python runs a Python
// forward between the bench's source and sink, every block arriving, and reports the job
// process's CPU and memory, which the process columns leave out.
func TestBenchPythonScenarioReportsThePythonJobsOwnProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	o := quickOptions(scenarioPython)
	o.JSON, o.Rates, o.Count, o.Sizes = true, []float64{0}, 3000, []int{64, 4096}
	r := runBench(t, o)
	r.want(t, 0)
	var rep benchReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, r.stdout)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d rows, want 64 B and 4 KiB:\n%s", len(rep.Results), r.stdout)
	}
	for _, row := range rep.Results {
		if row.Scenario != scenarioPython || row.Error != "" {
			t.Errorf("row %s %d: %s", row.Scenario, row.Size, row.Error)
			continue
		}
		checkFigures(t, "python", &row.benchFigures, 0, row.Count)
		if row.JobCPUSecPerM <= 0 || row.JobRSSMB <= 0 {
			t.Errorf("%d B: the Python job's process: %.2f CPU s/M, %.1f MB", row.Size, row.JobCPUSecPerM, row.JobRSSMB)
		}
	}
}

// TestBenchCodecCarriesIntegersThroughEveryScenario: with --codec cbor and json each block is one
// integer, every block reaches the sink (the figures check the count), and paced runs read their
// send times back from the integers.
func TestBenchCodecCarriesIntegersThroughEveryScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines")
	}
	for _, codec := range []string{"cbor", "json"} {
		o := quickOptions(scenarioLinear, scenarioPython)
		o.Codec, o.JSON, o.Rates, o.Count = codec, true, []float64{0, 500}, 2000
		r := runBench(t, o)
		r.want(t, 0)
		var rep benchReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("%s: output is not JSON: %v\n%s", codec, err, r.stdout)
		}
		if len(rep.Results) != 4 || rep.Settings.Codec != codec {
			t.Fatalf("%s: %d rows, codec %q, want 4 rows (two scenarios, two rates)", codec, len(rep.Results), rep.Settings.Codec)
		}
		for _, row := range rep.Results {
			if row.Error != "" || row.Size != 0 {
				t.Errorf("%s %s at %g: size %d, %s", codec, row.Scenario, row.Rate, row.Size, row.Error)
				continue
			}
			f := row.benchFigures
			if f.Blocks != int64(row.Count) || f.BlocksPerS <= 0 || f.MBPerS != 0 {
				t.Errorf("%s %s at %g: %d blocks of %d, %.0f blocks/s, %.1f MB/s (integers have no size)", codec, row.Scenario, row.Rate, f.Blocks, row.Count, f.BlocksPerS, f.MBPerS)
			}
			if l := f.Latency; row.Rate > 0 && (l == nil || l.Samples != uint64(row.Count) || l.P50 <= 0) {
				t.Errorf("%s %s at %g: latency %+v, want %d samples read from the integers", codec, row.Scenario, row.Rate, l, row.Count)
			}
		}
	}
}
