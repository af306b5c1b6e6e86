package pipeline

import (
	"bytes"
	"errors"
	"os"
	"strings"
)

// Decoding happens in two passes. The first turns JSON (jsontree.go), YAML (yaml.go) or CBOR
// (cborread.go) into a generic tree (tree.go: objects keep their members in document order,
// duplicates included) and stops only at malformed input. The second (build.go) walks the tree
// into the structs and collects every problem it meets (unknown keys, wrong types, out-of-range
// values) so that a user fixes a document in one round, not one error at a time. The formats
// share the second pass, so they are equally strict. Where each problem is in the text (line and
// column) is found only when there are problems (locate.go).
//
// This file holds the entry points (Parse, ParseFile, Check), the limits every reader obeys and
// the choice of reader by content.

// maxNesting bounds how deeply arrays and objects may nest, so that a hostile document cannot
// exhaust the stack. Real documents nest a handful of levels; args rarely more than a few more.
const maxNesting = 256

// Limits on the size of a document, far above any real pipeline, so that a small hostile
// document (one byte per job in CBOR) cannot make Parse or Validate allocate gigabytes.
const (
	MaxJobs  = 10000
	MaxPipes = 10000
)

// ParseFile reads and parses the document in the file at path. Its errors name the file.
func ParseFile(path string) (*Pipeline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := Parse(data)
	var de *DocumentError
	if errors.As(err, &de) {
		de.File = path
	}
	return p, err
}

// Parse decodes a pipeline document, JSON, YAML or CBOR, judged by content: a document whose
// first non-whitespace byte is '{' is JSON, other text (UTF-8 without control characters) is
// YAML, anything else is CBOR. Decoding is strict, the same for the three: unknown keys,
// duplicate keys, wrong types and unknown enum values are all errors. The error is a
// *DocumentError, each problem with its line and column in JSON and YAML. Parse does not
// validate the graph; see Validate.
func Parse(data []byte) (*Pipeline, error) {
	p, problems, err := parsePartial(data)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		Locate(data, problems)
		return nil, &DocumentError{Problems: problems}
	}
	return p, nil
}

// parsePartial decodes a well-formed document as far as it can: the pipeline holds every value
// that decoded, problems every one that did not. Malformed input is an error.
func parsePartial(data []byte) (*Pipeline, []Problem, error) {
	tree, err := parseTree(data)
	if err != nil {
		return nil, nil, err
	}
	var b builder
	p := b.pipeline(tree)
	for i := range b.problems {
		b.problems[i].Kind = ProblemDecode
	}
	return p, b.problems, nil
}

// Check decodes and validates a document and reports every problem at once: decoding problems
// (unknown keys, wrong types) together with the graph's and the job args' problems, each with
// its JSON path. The graph is checked on what decoded; a problem at or below a path that did
// not decode is left out, as it only repeats that one. The pipeline is nil only for malformed
// input. The error is a *DocumentError for malformed input, a *ValidationError otherwise.
func Check(data []byte, opts ValidateOptions) (*Pipeline, error) {
	p, problems, err := parsePartial(data)
	if err != nil {
		return nil, err
	}
	if verr := Validate(p, opts); verr != nil {
		for _, vp := range verr.(*ValidationError).Problems {
			if !underAny(vp.Path, problems) {
				problems = append(problems, vp)
			}
		}
	}
	if len(problems) > 0 {
		Locate(data, problems)
		return p, &ValidationError{Problems: problems}
	}
	return p, nil
}

// underAny reports whether path is one of the decoding problems' paths or below one.
func underAny(path string, problems []Problem) bool {
	if path == "" {
		return false
	}
	for _, d := range problems {
		if d.Kind != ProblemDecode || d.Path == "" {
			continue
		}
		if path == d.Path || strings.HasPrefix(path, d.Path) && (path[len(d.Path)] == '.' || path[len(d.Path)] == '[') {
			return true
		}
	}
	return false
}

func parseTree(data []byte) (any, error) {
	switch documentFormat(data) {
	case formatEmpty:
		return nil, &DocumentError{Problems: []Problem{{Message: "empty document"}}}
	case formatJSON:
		return parseJSONTree(data)
	case formatYAML:
		return parseYAMLTree(data)
	}
	return parseCBORTree(data)
}

// The formats of a document, judged by content.
const (
	formatEmpty = iota
	formatJSON
	formatYAML
	formatCBOR
)

// documentFormat judges a document by content: JSON starts with '{' (after whitespace); other
// text is YAML; anything else, CBOR. JSON saved with a byte order mark goes to the CBOR reader,
// whose error says to save it without the mark.
func documentFormat(data []byte) int {
	i := skipSpace(data, 0)
	switch {
	case i == len(data):
		return formatEmpty
	case data[i] == '{':
		return formatJSON
	case bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) && skipSpace(data, 3) < len(data) && data[skipSpace(data, 3)] == '{':
		return formatCBOR // reported as CBOR with the hint to save the JSON without the mark
	case looksLikeText(data):
		return formatYAML
	}
	return formatCBOR
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n') {
		i++
	}
	return i
}
