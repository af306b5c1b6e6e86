package pipeline_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/marvelo/marvelo/pipeline"
)

// builtinTypes stands in for the worker registry in the type check.
func builtinTypes(name string) bool {
	switch name {
	case "counter", "forward", "discard", "clock", "csv_sink", "logging_sink", "interactive", "sum", "product", "collect":
		return true
	}
	return false
}

// check parses and validates a document, returning the error of whichever step fails.
func check(data []byte) error {
	p, err := pipeline.Parse(data)
	if err != nil {
		return err
	}
	return pipeline.Validate(p, pipeline.ValidateOptions{KnownType: builtinTypes})
}

// Each file under testdata/invalid holds one mistake; the table says what the error must say.
var invalidFixtures = map[string]string{
	// decoding
	"unknown-key.json":         "pipes[0].blockcount: unknown key (did you mean block_count?)",
	"unknown-key.cbor":         "jbos: unknown key (did you mean jobs?)",
	"unknown-job-key.json":     "jobs[0].grups: unknown key (did you mean groups?)",
	"wrong-type.json":          "jobs[1].inputs[1]: expected integer, got string",
	"float-id.json":            "jobs[0].id: expected integer, got number",
	"bad-mode.json":            `jobs[1].exec.mode: "fd2" is not one of fifo, fd`,
	"bad-codec.json":           `pipes[0].codec: "pickle" is not one of cbor, json, bytes`,
	"bad-dummy.json":           `jobs[1].dummy: "last" is not one of zero, prev`,
	"bad-drop.json":            `pipes[0].optional.drop: "random" is not one of oldest, newest`,
	"zero-block-count.json":    "pipes[0].block_count: must be at least 1, got 0",
	"negative-block-size.json": "pipes[0].block_size: must be at least 1, got -8",
	"head-size-range.json":     "jobs[0].head_size: must be 1 to 4, got 5",
	"big-integer.json":         "jobs[0].args.count: 99999999999999999999 is out of range",
	"duplicate-key.json":       "jobs[0].outputs: duplicate key",
	"malformed.json":           `invalid JSON at line 4, column 33 (byte 63): invalid character '"' after object key:value pair`,
	"trailing-data.json":       "invalid JSON at line 2, column 1 (byte 118): unexpected data after the document",
	"not-an-object.json":       "(the input looks like text, but a JSON document must be an object starting with '{')",
	"truncated.cbor":           "invalid CBOR at byte ",
	// YAML: the same decoder after the YAML parser
	"yaml-unknown-key.yaml":   "pipes[0].blockcount: unknown key (did you mean block_count?)",
	"yaml-duplicate-key.yaml": "jobs[0].outputs: duplicate key",
	"yaml-wrong-type.yaml":    "jobs[1].inputs[1]: expected integer, got string",
	"yaml-malformed.yaml":     "invalid YAML at line 5",
	"yaml-alias.yaml":         "jobs[1].args: a YAML alias (*common) is not allowed: write the value out",
	"yaml-two-documents.yaml": "a pipeline document is one YAML document, this file has a second",
	"yaml-sequence.yaml":      "a pipeline document must be a YAML mapping or a JSON object, got array",
	"yaml-tagged.yaml":        "jobs[0].args.count: YAML tag !!binary is not allowed: a pipeline document holds JSON values only",
	// validation
	"missing-name.json":             "name is required",
	"bad-name.json":                 `name "my pipeline" must match ^[A-Za-z0-9_-]{1,64}$`,
	"no-jobs.json":                  "no jobs defined",
	"zero-job-id.json":              "job 0 (counter): job id must be a positive integer, got 0",
	"duplicate-job-id.json":         "job 1 (csv_sink): job id 1 is already used by jobs[0] (counter)",
	"type-and-exec.json":            "job 1 (counter): has both type and exec; give exactly one of type, exec and python",
	"neither-type-nor-exec.json":    "job 1 (job): has neither type nor exec nor python; give exactly one",
	"missing-exec-path.json":        "job 2 (job): exec.path is required",
	"unknown-type.json":             `job 1 (frobnicate): unknown job type "frobnicate"`,
	"no-source.json":                "pipe 9: no source: job 2 (csv_sink) reads it but no job lists it in outputs",
	"no-destination.json":           "pipe 9: no destination: job 1 (counter) writes it but no job lists it in inputs",
	"two-sources.json":              "pipe 3: source defined twice: job 1 (counter) and job 2 (counter)",
	"two-destinations.json":         "pipe 3: destination defined twice: job 2 (csv_sink) and job 3 (csv_sink)",
	"loop-back.json":                "pipe 2: loops back to job 2 (sum), which lists it as both input and output",
	"duplicate-input.json":          "job 2 (csv_sink): pipe 1 appears twice in inputs",
	"zero-pipe-id.json":             "job 1 (counter): outputs: pipe id must be a positive integer, got 0",
	"unused-pipe.json":              "pipe 7: listed in pipes but no job uses it",
	"duplicate-pipe-id.json":        "pipe 1: listed twice in pipes (pipes[0] and pipes[1])",
	"bytes-without-block-size.json": "pipe 1: codec bytes needs block_size of at least 1",
	"from-types.json":               `pipe 1: source job 1 (counter) has type "counter", which from_types does not allow (allowed: clock)`,
	"to-types.json":                 `pipe 1: destination job 2 (csv_sink) has type "csv_sink", which to_types does not allow (allowed: discard)`,
	"sync-cycle.json":               "synchronous cycle job 2 (sum) → pipe 2 → job 3 (product) → pipe 3 → job 2 (sum) deadlocks: make one of its pipes async or optional",
	"negative-max-queue.json":       "job 2 (csv_sink): max_queue must not be negative, got -1",
	"negative-buffer.json":          "pipe 1: optional.buffer must not be negative, got -2",
	"empty-group.json":              "job 1 (counter): groups[1] is empty",
	"python-bad-class.json":         `job 2 (jobs.SumJob): python.class "jobs.SumJob" is not "module:Class"`,
	"python-and-type.json":          "job 1 (counter): has both type and python; give exactly one of type, exec and python",
	"python-bad-arrays.json":        `jobs[0].python.arrays: "tensor" is not one of numpy, list`,
	"dtype-not-bytes.json":          "pipe 1: dtype is for bytes pipes; this pipe is cbor",
	"dtype-block-size.json":         "pipe 1: block_size 6 is not a multiple of dtype float32's 4 bytes",
	"dtype-unknown.json":            `pipe 1: dtype "float128x" is not a numeric numpy type`,
}

func TestInvalidFixtures(t *testing.T) {
	files, err := os.ReadDir(invalidDir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		name := f.Name()
		seen[name] = true
		want, ok := invalidFixtures[name]
		if !ok {
			t.Errorf("%s has no entry in the table", name)
			continue
		}
		data, err := os.ReadFile(filepath.Join(invalidDir, name))
		if err != nil {
			t.Fatal(err)
		}
		err = check(data)
		if err == nil {
			t.Errorf("%s: no error, want %q", name, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %s\nwant %s", name, err, want)
		}
		var de *pipeline.DocumentError
		var ve *pipeline.ValidationError
		if !errors.As(err, &de) && !errors.As(err, &ve) {
			t.Errorf("%s: error is a %T", name, err)
		}
	}
	for name := range invalidFixtures {
		if !seen[name] {
			t.Errorf("table entry %s has no file in %s", name, invalidDir)
		}
	}
}

func validationProblems(t *testing.T, p *pipeline.Pipeline, opts pipeline.ValidateOptions) []string {
	t.Helper()
	err := pipeline.Validate(p, opts)
	var ve *pipeline.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *ValidationError", err)
	}
	var msgs []string
	for _, pr := range ve.Problems {
		msgs = append(msgs, pr.Message)
	}
	if got := strings.Join(msgs, "\n"); got != err.Error() {
		t.Errorf("Error() = %q, want the messages one per line", err.Error())
	}
	return msgs
}

// Three distinct mistakes give three problems, in document, job, pipe order.
func TestValidateReportsAllProblems(t *testing.T) {
	p := mustParse(t, []byte(`{"jobs": [
		{"id": 1, "type": "counter", "outputs": [3]},
		{"id": 2, "type": "counter", "outputs": [3]},
		{"id": 3, "type": "csv_sink", "inputs": [3]}],
		"pipes": [{"id": 3, "codec": "bytes"}]}`))
	got := validationProblems(t, p, pipeline.ValidateOptions{})
	wantProblems(t, got,
		"name is required",
		"pipe 3: source defined twice: job 1 (counter) and job 2 (counter)",
		"pipe 3: codec bytes needs block_size of at least 1",
	)
}

// A document built in Go can hold values Parse would reject; Validate catches them too, and
// orders problems job by job, then pipe by pipe, however they were found.
func TestValidateGoBuiltDocument(t *testing.T) {
	p := &pipeline.Pipeline{
		Name: "go-built",
		Jobs: []pipeline.Job{
			{ID: 1, Name: "gen", Exec: &pipeline.Exec{Path: "./gen", Mode: "pipe"}, Outputs: []int{1, 2}, HeadSize: 9},
			{ID: 2, Type: "mystery", Inputs: []int{1, 2}, Dummy: "last"},
			{ID: 3, Type: "discard", Inputs: []int{5}},
		},
		Pipes: []pipeline.Pipe{
			{ID: 5, Codec: "xml", BlockSize: -1, BlockCount: -2},
			{ID: 2, Optional: &pipeline.Optional{Drop: "middle"}},
		},
	}
	got := validationProblems(t, p, pipeline.ValidateOptions{KnownType: builtinTypes})
	wantProblems(t, got,
		`job 1 (gen): exec.mode "pipe" is not one of fifo, fd`,
		"job 1 (gen): head_size must be 1 to 4, got 9",
		`job 2 (mystery): unknown job type "mystery"`,
		`job 2 (mystery): dummy "last" is not one of zero, prev`,
		`pipe 5: codec "xml" is not one of cbor, json, bytes`,
		"pipe 5: block_size must be at least 1, got -1",
		"pipe 5: block_count must be at least 1, got -2",
		"pipe 5: no source: job 3 (discard) reads it but no job lists it in outputs",
		`pipe 2: optional.drop "middle" is not one of oldest, newest`,
	)
	// Without KnownType the type is not checked.
	for _, msg := range validationProblems(t, p, pipeline.ValidateOptions{}) {
		if strings.Contains(msg, "unknown job type") {
			t.Errorf("type checked without KnownType: %s", msg)
		}
	}
}

func TestValidateCycles(t *testing.T) {
	base := func() *pipeline.Pipeline {
		// 1 → 2 → 3 → 2 (pipe 4 closes the loop), 3 → 4 (sink)
		return &pipeline.Pipeline{Name: "loop", Jobs: []pipeline.Job{
			{ID: 1, Type: "counter", Outputs: []int{1}},
			{ID: 2, Type: "sum", Inputs: []int{1, 4}, Outputs: []int{2}},
			{ID: 3, Type: "product", Inputs: []int{2}, Outputs: []int{4, 5}},
			{ID: 4, Type: "discard", Inputs: []int{5}},
		}}
	}
	got := validationProblems(t, base(), pipeline.ValidateOptions{})
	wantProblems(t, got, "synchronous cycle job 2 (sum) → pipe 2 → job 3 (product) → pipe 4 → job 2 (sum) deadlocks: make one of its pipes async or optional")

	for name, pipe := range map[string]pipeline.Pipe{
		"async":    {ID: 4, Async: true},
		"optional": {ID: 4, Optional: &pipeline.Optional{}},
		"async 2":  {ID: 2, Async: true},
	} {
		p := base()
		p.Pipes = []pipeline.Pipe{pipe}
		if err := pipeline.Validate(p, pipeline.ValidateOptions{}); err != nil {
			t.Errorf("cycle through an %s pipe: %v", name, err)
		}
	}

	// Two separate cycles are two problems; a longer one is shown by its shortest loop.
	p := &pipeline.Pipeline{Name: "loops", Jobs: []pipeline.Job{
		{ID: 1, Type: "sum", Inputs: []int{3}, Outputs: []int{1}},
		{ID: 2, Type: "sum", Inputs: []int{1}, Outputs: []int{2, 4}},
		{ID: 3, Type: "sum", Inputs: []int{2}, Outputs: []int{3}},
		{ID: 7, Type: "sum", Inputs: []int{4, 6}, Outputs: []int{5}},
		{ID: 8, Type: "sum", Inputs: []int{5}, Outputs: []int{6}},
	}}
	got = validationProblems(t, p, pipeline.ValidateOptions{})
	wantProblems(t, got,
		"synchronous cycle job 1 (sum) → pipe 1 → job 2 (sum) → pipe 2 → job 3 (sum) → pipe 3 → job 1 (sum) deadlocks: make one of its pipes async or optional",
		"synchronous cycle job 7 (sum) → pipe 5 → job 8 (sum) → pipe 6 → job 7 (sum) deadlocks: make one of its pipes async or optional",
	)
}

func TestValidateAccepts(t *testing.T) {
	for name, p := range map[string]*pipeline.Pipeline{
		// node with a LOCAL group, an unlisted pipe with defaults, an empty Exec mode
		"local node": {Name: "a_b-C9", Jobs: []pipeline.Job{
			{ID: 10, Exec: &pipeline.Exec{Path: "/bin/gen"}, Outputs: []int{100}, Node: "head", Groups: []string{"LOCAL"}},
			{ID: 20, Type: "discard", Inputs: []int{100}, MaxQueue: 0},
		}},
		"64-char name": {Name: strings.Repeat("x", 64), Jobs: []pipeline.Job{{ID: 1, Type: "clock"}}},
	} {
		if err := pipeline.Validate(p, pipeline.ValidateOptions{KnownType: builtinTypes}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := pipeline.Validate(&pipeline.Pipeline{Name: strings.Repeat("x", 65), Jobs: []pipeline.Job{{ID: 1, Type: "clock"}}},
		pipeline.ValidateOptions{}); err == nil {
		t.Error("a 65-character name passed")
	}
	if err := pipeline.Validate(nil, pipeline.ValidateOptions{}); err == nil {
		t.Error("Validate(nil) passed")
	}
}

// Validation problems carry the path of the element concerned.
func TestValidateProblemPaths(t *testing.T) {
	p := mustParse(t, []byte(`{"name": "x", "jobs": [{"id": 1, "type": "counter", "outputs": [1]},
		{"id": 2, "exec": {"path": ""}, "inputs": [1], "groups": [" "]}], "pipes": [{"id": 1, "codec": "bytes"}]}`))
	var ve *pipeline.ValidationError
	if !errors.As(pipeline.Validate(p, pipeline.ValidateOptions{}), &ve) {
		t.Fatal("no ValidationError")
	}
	var paths []string
	for _, pr := range ve.Problems {
		paths = append(paths, pr.Path)
	}
	if want := []string{"jobs[1].exec.path", "jobs[1].groups[0]", "pipes[0].block_size"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("paths = %q, want %q", paths, want)
	}
}
