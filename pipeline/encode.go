package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/fxamacker/cbor/v2"
)

// coreDet encodes CBOR with the core deterministic encoding of RFC 8949 §4.2: shortest
// arguments and floats, map keys sorted, no indefinite lengths. The same document therefore
// always gives the same bytes, which lets a broker compare or hash submissions.
var coreDet = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err) // the options are constants: this cannot fail at run time
	}
	return em
}()

// EncodeCBOR encodes the document as CBOR in core deterministic encoding.
func EncodeCBOR(p *Pipeline) ([]byte, error) {
	if p == nil {
		return nil, errors.New("pipeline: encode: no document")
	}
	data, err := coreDet.Marshal(withJobs(p))
	if err != nil {
		return nil, fmt.Errorf("pipeline: encode CBOR: %w", err)
	}
	return data, nil
}

// EncodeJSON encodes the document as JSON indented by two spaces, with a trailing newline. Keys
// come in struct order and args keys sorted, so the output is deterministic too.
func EncodeJSON(p *Pipeline) ([]byte, error) {
	if p == nil {
		return nil, errors.New("pipeline: encode: no document")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // paths and params are easier to read unescaped
	if err := enc.Encode(jsonView(withJobs(p))); err != nil {
		return nil, fmt.Errorf("pipeline: encode JSON: %w", err)
	}
	return buf.Bytes(), nil
}

// withJobs returns p, or a copy whose nil Jobs is empty: "jobs" has no omitempty, and a nil
// slice would encode as null, which Parse rightly rejects.
func withJobs(p *Pipeline) *Pipeline {
	if p.Jobs != nil {
		return p
	}
	q := *p
	q.Jobs = []Job{}
	return &q
}

// jsonView returns a copy of p in which every float in args and optional defaults keeps a
// fraction or exponent when written as JSON (2.0, not 2). Parse reads a JSON number without one
// as an integer, so without this a float would come back from JSON as an int64.
func jsonView(p *Pipeline) *Pipeline {
	q := *p
	q.Jobs = make([]Job, len(p.Jobs)) // never nil: see withJobs
	copy(q.Jobs, p.Jobs)
	for i := range q.Jobs {
		if q.Jobs[i].Args != nil {
			q.Jobs[i].Args, _ = jsonFloats(q.Jobs[i].Args).(map[string]any)
		}
	}
	q.Pipes = append([]Pipe(nil), p.Pipes...)
	for i := range q.Pipes {
		if o := q.Pipes[i].Optional; o != nil {
			oc := *o
			oc.Default = jsonFloats(o.Default)
			q.Pipes[i].Optional = &oc
		}
	}
	return &q
}

func jsonFloats(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = jsonFloats(e)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = jsonFloats(e)
		}
		return out
	case float64:
		return jsonFloat(v)
	case float32:
		return jsonFloat(v)
	}
	return v
}

// jsonFloat is a float64 that always marshals with a fraction or an exponent.
type jsonFloat float64

// MarshalJSON writes f as encoding/json would, adding ".0" to whole numbers.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return nil, fmt.Errorf("%v is not representable in JSON", float64(f))
	}
	b, err := json.Marshal(float64(f))
	if err == nil && !bytes.ContainsAny(b, ".eE") {
		b = append(b, ".0"...)
	}
	return b, err
}

// EncodeDOT draws the document as a Graphviz digraph: one node per job labelled with its name and
// id, one edge per pipe labelled with its id and codec. Async and optional pipes are dashed. A
// pipe missing an end (an invalid document is worth drawing too) ends in a small point.
func EncodeDOT(p *Pipeline) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n", dotQuote(p.Name))
	b.WriteString("  rankdir=LR;\n  node [shape=box, style=rounded];\n")
	for i := range p.Jobs {
		j := &p.Jobs[i]
		fmt.Fprintf(&b, "  %s [label=%s%s];\n", dotJob(i), dotQuote(j.Label()), dotJobStyle(j))
	}
	sources, dests, ids := pipeEnds(p)
	for _, id := range ids {
		writeDOTPipe(&b, p.PipeByID(id), sources[id], dests[id])
	}
	b.WriteString("}\n")
	return []byte(b.String())
}

// pipeEnds indexes the jobs writing and reading each pipe, and lists every pipe id (used or only
// listed) in ascending order.
func pipeEnds(p *Pipeline) (sources, dests map[int][]int, ids []int) {
	sources, dests = map[int][]int{}, map[int][]int{}
	seen := map[int]bool{}
	note := func(id int) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for i, j := range p.Jobs {
		for _, id := range j.Outputs {
			sources[id] = append(sources[id], i)
			note(id)
		}
		for _, id := range j.Inputs {
			dests[id] = append(dests[id], i)
			note(id)
		}
	}
	for _, pp := range p.Pipes {
		note(pp.ID)
	}
	sort.Ints(ids)
	return sources, dests, ids
}

func writeDOTPipe(b *strings.Builder, pp Pipe, sources, dests []int) {
	attrs := "label=" + dotQuote(strconv.Itoa(pp.ID)+" "+pp.EffectiveCodec())
	if pp.IsAsync() {
		attrs += ", style=dashed"
	}
	from := make([]string, 0, len(sources))
	for _, i := range sources {
		from = append(from, dotJob(i))
	}
	to := make([]string, 0, len(dests))
	for _, i := range dests {
		to = append(to, dotJob(i))
	}
	if len(from) == 0 {
		from = []string{dotLooseEnd(b, pp.ID, "from")}
	}
	if len(to) == 0 {
		to = []string{dotLooseEnd(b, pp.ID, "to")}
	}
	for _, f := range from {
		for _, t := range to {
			fmt.Fprintf(b, "  %s -> %s [%s];\n", f, t, attrs)
		}
	}
}

// dotLooseEnd declares the point standing in for a missing end of a pipe.
func dotLooseEnd(b *strings.Builder, id int, end string) string {
	name := dotQuote(fmt.Sprintf("pipe%d_%s", id, end))
	fmt.Fprintf(b, "  %s [shape=point, label=\"\"];\n", name)
	return name
}

// dotJob names a job's node by its index, which stays unique even when ids are not.
func dotJob(i int) string { return "j" + strconv.Itoa(i) }

func dotJobStyle(j *Job) string {
	switch {
	case j.Exec != nil, j.Python != nil:
		return ", shape=component"
	case j.IsLocal():
		return ", style=\"rounded,bold\""
	}
	return ""
}

// dotQuote quotes s as a DOT string (DOT understands only \" and \\ escapes and \n).
func dotQuote(s string) string { return `"` + dotEscaper.Replace(s) + `"` }

var dotEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", "")
