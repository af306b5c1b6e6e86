package pipeline_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

var update = flag.Bool("update", false, "rewrite the .cbor fixtures under testdata/pipelines from their .json")

const (
	pipelinesDir = "../testdata/pipelines"
	invalidDir   = "../testdata/invalid"
)

func mustParse(t testing.TB, data []byte) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func mustCBOR(t testing.TB, p *pipeline.Pipeline) []byte {
	t.Helper()
	data, err := pipeline.EncodeCBOR(p)
	if err != nil {
		t.Fatalf("EncodeCBOR: %v", err)
	}
	return data
}

func mustJSON(t testing.TB, p *pipeline.Pipeline) []byte {
	t.Helper()
	data, err := pipeline.EncodeJSON(p)
	if err != nil {
		t.Fatalf("EncodeJSON: %v", err)
	}
	return data
}

// TestFixtures checks every valid fixture: it parses and validates, JSON → CBOR → JSON gives the
// identical document, and a committed .cbor equals the encoding of its .json (run with -update
// to regenerate them).
func TestFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(pipelinesDir, "*.json"))
	if len(files) == 0 {
		t.Fatal("no fixtures under " + pipelinesDir)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			p, err := pipeline.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if err := pipeline.Validate(p, pipeline.ValidateOptions{}); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			cb := mustCBOR(t, p)
			back := mustParse(t, cb)
			if a, b := mustJSON(t, p), mustJSON(t, back); !bytes.Equal(a, b) {
				t.Errorf("JSON → CBOR → JSON changed the document:\n%s\nvs\n%s", a, b)
			}
			checkCBORFixture(t, strings.TrimSuffix(file, ".json")+".cbor", cb)
		})
	}
}

func checkCBORFixture(t *testing.T, path string, want []byte) {
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return // a .json fixture needs no .cbor twin (demo has one)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the encoding of its .json; regenerate with go test ./pipeline -run TestFixtures -update", path)
	}
}

// TestDemoFixture pins the demo: its CBOR twin exists, decodes to the very bytes of demo.json,
// and describes the MARVELO demo.
func TestDemoFixture(t *testing.T) {
	js, err := os.ReadFile(filepath.Join(pipelinesDir, "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.ParseFile(filepath.Join(pipelinesDir, "demo.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, p); !bytes.Equal(got, js) {
		t.Errorf("decode demo.cbor:\n%s\nwant demo.json:\n%s", got, js)
	}
	if p.Name != "demo" || len(p.Jobs) != 6 {
		t.Fatalf("demo: name %q, %d jobs", p.Name, len(p.Jobs))
	}
	if pipe4 := p.PipeByID(4); pipe4.EffectiveBlockCount() != 5 {
		t.Errorf("pipe 4 block_count = %d, want 5", pipe4.BlockCount)
	}
	if n, ok := p.Jobs[0].Args["count"].(int64); !ok || n != 30 {
		t.Errorf("job 1 args.count = %#v, want int64(30)", p.Jobs[0].Args["count"])
	}
	if sink := p.JobByID(6); sink == nil || !sink.IsLocal() || sink.Args["echo"] != true {
		t.Errorf("job 6 = %+v, want a LOCAL csv_sink with echo", sink)
	}
}

func TestEncodeDeterministic(t *testing.T) {
	p := &pipeline.Pipeline{Name: "det", Jobs: []pipeline.Job{{
		ID: 1, Type: "counter", Outputs: []int{1},
		Args: map[string]any{"zeta": 1, "a": []any{1.5, "x", map[string]any{"k": true, "b": nil}}, "mid": int64(-7)},
	}}}
	first, second := mustCBOR(t, p), mustCBOR(t, p)
	if !bytes.Equal(first, second) {
		t.Fatal("two encodings differ")
	}
	// Core deterministic encoding sorts map keys shortest first, then bytewise: "a" < "mid" < "zeta".
	if a, m, z := bytes.Index(first, []byte("a")), bytes.Index(first, []byte("mid")), bytes.Index(first, []byte("zeta")); !(a < m && m < z) {
		t.Errorf("args keys not in core deterministic order: a@%d mid@%d zeta@%d", a, m, z)
	}
	if !bytes.Equal(mustJSON(t, p), mustJSON(t, p)) {
		t.Fatal("two JSON encodings differ")
	}
}

// A float that happens to be whole must stay a float through JSON, and an integer an integer.
func TestEncodeJSONKeepsNumberKinds(t *testing.T) {
	p := &pipeline.Pipeline{Name: "n", Jobs: []pipeline.Job{{ID: 1, Type: "t", Args: map[string]any{
		"f": 2.0, "neg0": -0.0, "big": 1e300, "i": int64(2), "list": []any{3.0, int64(3)},
	}}}, Pipes: []pipeline.Pipe{{ID: 1, Optional: &pipeline.Optional{Default: 0.0}}}}
	js := mustJSON(t, p)
	for _, want := range []string{`"f": 2.0`, `"i": 2`, `"big": 1e+300`, `"default": 0.0`, "3.0,\n", "3\n"} {
		if !bytes.Contains(js, []byte(want)) {
			t.Errorf("JSON lacks %q:\n%s", want, js)
		}
	}
	back := mustParse(t, js)
	if _, ok := back.Jobs[0].Args["f"].(float64); !ok {
		t.Errorf("f came back as %T", back.Jobs[0].Args["f"])
	}
	if _, ok := back.Jobs[0].Args["i"].(int64); !ok {
		t.Errorf("i came back as %T", back.Jobs[0].Args["i"])
	}
	if !bytes.Equal(mustCBOR(t, back), mustCBOR(t, p)) {
		t.Error("CBOR differs after a JSON round trip")
	}
	if !strings.HasSuffix(string(js), "}\n") || !strings.Contains(string(js), "\n  \"jobs\": [") {
		t.Errorf("JSON is not indented by two spaces with a trailing newline:\n%s", js)
	}
}

// A document built in Go without jobs must still encode to something Parse accepts.
func TestEncodeNilJobs(t *testing.T) {
	for _, enc := range []func(*pipeline.Pipeline) ([]byte, error){pipeline.EncodeCBOR, pipeline.EncodeJSON} {
		data, err := enc(&pipeline.Pipeline{Name: "empty"})
		if err != nil {
			t.Fatal(err)
		}
		p := mustParse(t, data)
		if p.Jobs == nil || len(p.Jobs) != 0 {
			t.Errorf("jobs = %#v, want empty", p.Jobs)
		}
	}
	if _, err := pipeline.EncodeCBOR(nil); err == nil {
		t.Error("EncodeCBOR(nil) succeeded")
	}
}

func TestEncodeDOT(t *testing.T) {
	p, err := pipeline.ParseFile(filepath.Join(pipelinesDir, "feedback.json"))
	if err != nil {
		t.Fatal(err)
	}
	dot := string(pipeline.EncodeDOT(p))
	for _, want := range []string{
		`digraph "feedback" {`,
		`j2 [label="mix 3"];`,
		`j0 -> j2 [label="1 cbor"];`,
		`j3 -> j2 [label="4 cbor", style=dashed];`, // the async feedback pipe
		`j3 -> j4 [label="5 json"];`,
	} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %q:\n%s", want, dot)
		}
	}
	// An invalid document is drawn too: the loose end of a pipe becomes a point.
	loose := &pipeline.Pipeline{Name: `q"uote`, Jobs: []pipeline.Job{{ID: 1, Type: "counter", Outputs: []int{9}}}}
	dot = string(pipeline.EncodeDOT(loose))
	for _, want := range []string{`digraph "q\"uote"`, `"pipe9_to" [shape=point`, `j0 -> "pipe9_to" [label="9 cbor"];`} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %q:\n%s", want, dot)
		}
	}
}
