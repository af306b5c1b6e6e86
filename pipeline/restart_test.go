package pipeline_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/pipeline"
)

const restartJSON = `{
  "name": "restarts",
  "jobs": [
    {"id": 1, "type": "counter", "args": {"count": 5}, "outputs": [1]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2],
     "restart": {"policy": "on-failure", "max": 5, "backoff": "250ms", "skip_poison": true}},
    {"id": 3, "type": "discard", "inputs": [2], "restart": {"policy": "never"}}
  ]
}`

const restartYAML = `name: restarts
jobs:
  - {id: 1, type: counter, args: {count: 5}, outputs: [1]}
  - id: 2
    type: forward
    inputs: [1]
    outputs: [2]
    restart: {policy: on-failure, max: 5, backoff: 250ms, skip_poison: true}
  - {id: 3, type: discard, inputs: [2], restart: {policy: never}}
`

func TestRestartPolicyRoundTripsThroughJSONYAMLAndCBOR(t *testing.T) {
	fromJSON := mustParse(t, []byte(restartJSON))
	if err := pipeline.Validate(fromJSON, pipeline.ValidateOptions{KnownType: builtinTypes}); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	r := fromJSON.Jobs[1].Restart
	if r == nil || *r != (pipeline.Restart{Policy: "on-failure", Max: 5, Backoff: "250ms", SkipPoison: true}) {
		t.Fatalf("job 2's restart decoded as %+v", r)
	}
	if r := fromJSON.Jobs[2].Restart; r == nil || r.Policy != "never" {
		t.Fatalf("job 3's restart decoded as %+v", r)
	}
	want := mustJSON(t, fromJSON)
	if got := mustJSON(t, mustParse(t, []byte(restartYAML))); !bytes.Equal(got, want) {
		t.Errorf("YAML decodes otherwise than JSON:\n%s\nvs\n%s", got, want)
	}
	if got := mustJSON(t, mustParse(t, mustCBOR(t, fromJSON))); !bytes.Equal(got, want) {
		t.Errorf("JSON → CBOR → JSON changed the document:\n%s\nvs\n%s", got, want)
	}
	if !bytes.Contains(want, []byte(`"restart": {`)) || !bytes.Contains(want, []byte(`"skip_poison": true`)) {
		t.Errorf("the JSON encoding lacks the restart policy:\n%s", want)
	}
}

func TestRestartPolicyDefaultsAndBackoffDoublingCappedAtAMinute(t *testing.T) {
	p := mustParse(t, []byte(restartJSON))
	none := pipeline.Job{ID: 9, Type: "forward"}
	if none.RestartMax() != 0 || none.SkipsPoison() {
		t.Errorf("a job without restart: max %d, skips poison %v; want never (0, false)", none.RestartMax(), none.SkipsPoison())
	}
	if never := p.Jobs[2]; never.RestartMax() != 0 {
		t.Errorf("policy never: max %d, want 0", never.RestartMax())
	}
	job := p.Jobs[1]
	if job.RestartMax() != 5 || !job.SkipsPoison() {
		t.Errorf("job 2: max %d, skips poison %v; want 5, true", job.RestartMax(), job.SkipsPoison())
	}
	for n, want := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 3: time.Second, 9: time.Minute, 60: time.Minute} {
		if got := job.RestartDelay(n); got != want {
			t.Errorf("restart %d of job 2 waits %s, want %s", n, got, want)
		}
	}
	def := pipeline.Job{ID: 4, Type: "forward", Restart: &pipeline.Restart{Policy: "on-failure"}}
	if def.RestartMax() != pipeline.DefaultRestartMax || def.SkipsPoison() {
		t.Errorf("on-failure alone: max %d, skips poison %v; want %d, false", def.RestartMax(), def.SkipsPoison(), pipeline.DefaultRestartMax)
	}
	if d1, d2 := def.RestartDelay(1), def.RestartDelay(2); d1 != time.Second || d2 != 2*time.Second {
		t.Errorf("on-failure alone waits %s then %s, want 1s then 2s", d1, d2)
	}
}

// TestRestartPolicyProblemsNameJobKeyAndLine: every mistake in a restart object is a problem with
// its path, its line and column, and the job it is about; an unknown key gets a did-you-mean.
func TestRestartPolicyProblemsNameJobKeyAndLine(t *testing.T) {
	doc := `{"name": "bad",
  "jobs": [
    {"id": 1, "type": "counter", "outputs": [1]},
    {"id": 2, "type": "forward", "inputs": [1], "outputs": [2],
     "restart": {"policy": "always", "max": 0, "skip_poisson": true}},
    {"id": 3, "type": "forward", "inputs": [2], "outputs": [3],
     "restart": {"policy": "on-failure", "backoff": "soon"}},
    {"id": 4, "type": "forward", "inputs": [3], "outputs": [4],
     "restart": {"max": 2}},
    {"id": 5, "type": "forward", "inputs": [4], "outputs": [5],
     "restart": {"policy": "never", "max": 2}},
    {"id": 6, "type": "discard", "inputs": [5],
     "restart": {"policy": "on-failure", "backoff": "2m"}}
  ]}`
	_, err := pipeline.Check([]byte(doc), pipeline.ValidateOptions{KnownType: builtinTypes})
	var verr *pipeline.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Check: %v, want a *ValidationError", err)
	}
	var got []string
	for _, p := range verr.Problems {
		got = append(got, p.Located())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`jobs[1].restart.policy: "always" is not one of never, on-failure (line 5, column 18)`,
		`jobs[1].restart.max: must be at least 1, got 0 (line 5, column 38)`,
		`jobs[1].restart.skip_poisson: unknown key (did you mean skip_poison?) (line 5, column 48)`,
		`jobs[2].restart.backoff: job 3 (forward): restart.backoff "soon" is not a duration`,
		`(line 7, column 42)`,
		`jobs[3].restart: job 4 (forward): restart.policy is required (never or on-failure) (line 9, column 6)`,
		`jobs[4].restart.max: job 5 (forward): restart.max has no effect with policy "never"`,
		`jobs[5].restart.backoff: job 6 (discard): restart.backoff 2m is out of range: 0s to 1m0s`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("problems lack %q; got:\n%s", want, all)
		}
	}
}
