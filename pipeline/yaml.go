package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"

	yaml "go.yaml.in/yaml/v3"
)

// YAML documents (pipeline.yaml) are read by the YAML parser into its node tree and turned into
// the same generic tree JSON and CBOR give, so the one strict second pass decodes all three:
// the same problems, the same paths. YAML that has no JSON equivalent is a problem with its
// path: an alias (*name) and a tag other than the core schema's. Comments are what YAML adds.

// yamlAlias is a YAML alias node: not followed (a document says each value once, and a chain of
// aliases could expand without bound), reported where it stands.
type yamlAlias struct{ name string }

func (a yamlAlias) String() string { return "a YAML alias (*" + a.name + ")" }

// yamlLine finds the line in the YAML parser's error messages ("yaml: line 5: ...").
var yamlLine = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// wholeNumber is a plain scalar the YAML parser resolved to a float only because it does not fit
// an int64: out of range, as in JSON.
var wholeNumber = regexp.MustCompile(`^[-+]?[0-9]+$`)

func parseYAMLTree(data []byte) (any, error) {
	root, err := yamlRoot(data)
	if err != nil {
		return nil, err
	}
	v, err := yamlValue(root, 0)
	if err != nil {
		return nil, err
	}
	if _, ok := v.(object); !ok {
		if _, alias := v.(yamlAlias); !alias {
			return nil, &DocumentError{Problems: []Problem{{Line: root.Line, Column: root.Column, Message: fmt.Sprintf(
				"a pipeline document must be a YAML mapping or a JSON object, got %s (the input looks like text, but a JSON document must be an object starting with '{')",
				typeName(v))}}}
		}
	}
	return v, nil
}

// yamlRoot parses the one YAML document of data and returns its root node.
func yamlRoot(data []byte) (root *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil { // a parser bug must not take down a broker parsing a submission
			root, err = nil, yamlError(0, fmt.Sprint(r))
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return nil, &DocumentError{Problems: []Problem{{Message: "empty document (only comments)"}}}
	case err != nil:
		return nil, yamlSyntax(data, err)
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlSyntax(data, err)
	default:
		return nil, yamlError(second.Line, "a pipeline document is one YAML document, this file has a second")
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &doc, nil
}

// yamlSyntax reports the YAML parser's error. The parser names the line where the enclosing
// block or flow starts ("did not find expected '-' indicator" at the list, for a key indented
// wrongly three lines below): the line reported is the first from there on that the document
// cannot be read up to.
func yamlSyntax(data []byte, err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		if at := yamlFailingLine(data, line); at != line {
			return yamlError(at, fmt.Sprintf("%s (in the block that starts at line %d)", m[2], line))
		}
		return yamlError(line, m[2])
	}
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "yaml: " {
		msg = msg[6:]
	}
	return yamlError(0, msg)
}

// yamlFailingLine is the first line from line on such that the document's lines up to it do not
// parse (the whole document does not). A binary search: a few parses, whatever the size, so a
// hostile document costs no more than a few reads of it.
func yamlFailingLine(data []byte, line int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	lo, hi := max(line, 1), len(lines)
	if lo > hi {
		return line
	}
	for lo < hi {
		mid := lo + (hi-lo)/2
		if yamlParses(bytes.Join(lines[:mid], nil)) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

func yamlParses(data []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		switch err := dec.Decode(&n); {
		case errors.Is(err, io.EOF):
			return true
		case err != nil:
			return false
		}
	}
}

func yamlError(line int, msg string) error {
	p := Problem{Message: "invalid YAML: " + msg}
	if line > 0 {
		p = Problem{Message: fmt.Sprintf("invalid YAML at line %d: %s", line, msg), Line: line, placed: true}
	}
	return &DocumentError{Problems: []Problem{p}}
}

// yamlValue turns a node into the generic tree: mappings into objects (members in order,
// duplicates kept for the second pass to report), sequences into arrays, scalars by their
// resolved tag.
func yamlValue(n *yaml.Node, depth int) (any, error) {
	if (n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode) && depth >= maxNesting {
		return nil, yamlError(n.Line, fmt.Sprintf("nested deeper than %d levels", maxNesting))
	}
	switch n.Kind {
	case yaml.AliasNode:
		return yamlAlias{n.Value}, nil
	case yaml.MappingNode:
		if n.ShortTag() != "!!map" {
			return unsupported{"YAML tag " + n.Tag}, nil
		}
		obj := make(object, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			v, err := yamlValue(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!str" {
				obj = append(obj, member{key: k.Value, val: v})
				continue
			}
			kv, err := yamlValue(k, depth+1)
			if err != nil {
				return nil, err
			}
			what := typeName(kv)
			if k.ShortTag() == "!!merge" {
				what = "the YAML merge key <<"
			}
			obj = append(obj, member{badKey: what, val: v})
		}
		return obj, nil
	case yaml.SequenceNode:
		if n.ShortTag() != "!!seq" {
			return unsupported{"YAML tag " + n.Tag}, nil
		}
		arr := make([]any, 0, len(n.Content))
		for _, e := range n.Content {
			v, err := yamlValue(e, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	case yaml.ScalarNode:
		return yamlScalar(n), nil
	}
	return unsupported{"YAML node"}, nil
}

// yamlScalar resolves a scalar as the YAML core schema does, to the values JSON has. A date is
// text, as in JSON; binary data and tags of one's own are not JSON values.
func yamlScalar(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		return n.Value
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err == nil {
			return b
		}
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i
		}
		return outOfRange{n.Value}
	case "!!float":
		if wholeNumber.MatchString(n.Value) {
			return outOfRange{n.Value}
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return outOfRange{n.Value}
		}
		switch {
		case math.IsNaN(f):
			return unsupported{"NaN"}
		case math.IsInf(f, 0):
			return unsupported{"infinity"}
		}
		return f
	}
	return unsupported{"YAML tag " + n.Tag}
}

// yamlPositions records where every path of a YAML document is: a member at its key, an
// element at itself.
func yamlPositions(data []byte) positions {
	root, err := yamlRoot(data)
	if err != nil {
		return nil
	}
	pos := positions{}
	pos.add("", position{line: root.Line, col: root.Column})
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		if depth >= maxNesting {
			return
		}
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				if k.Kind != yaml.ScalarNode {
					continue
				}
				p := joinKey(path, k.Value)
				pos.add(p, position{line: k.Line, col: k.Column})
				walk(n.Content[i+1], p, depth+1)
			}
		case yaml.SequenceNode:
			for i, e := range n.Content {
				p := indexPath(path, i)
				pos.add(p, position{line: e.Line, col: e.Column})
				walk(e, p, depth+1)
			}
		}
	}
	walk(root, "", 0)
	return pos
}

// IsYAML reports whether Parse reads data as YAML: text that is not JSON (which starts with
// '{'). A command that hands a document on (submit) may turn it into CBOR first.
func IsYAML(data []byte) bool { return documentFormat(data) == formatYAML }
