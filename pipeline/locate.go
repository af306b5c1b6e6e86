package pipeline

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Where problems are in the text of a document. Decoding keeps no positions (a valid document
// needs none); when there are problems, the document's text is read once more recording where
// each path is, and each problem gets the line and column of its path, or of the nearest
// enclosing path the document has.

// position is where a path is: a byte offset (JSON; turned into line and column only for the
// problems that need it) or a line and column (YAML).
type position struct{ off, line, col int }

// positions maps a path to its positions in document order: a duplicated key has several.
type positions map[string][]position

func (ps positions) add(path string, p position) { ps[path] = append(ps[path], p) }

// Locate sets the line and column of each problem that has none, for a JSON or YAML document
// (nothing for CBOR, or text that does not parse): the position of the problem's path (for a
// duplicate key, its last occurrence), else of the nearest enclosing path the document has (a
// missing key is placed at its object). Parse and Check locate their problems; Locate is for
// problems found otherwise, such as the files a document names.
func Locate(data []byte, problems []Problem) {
	need := false
	for _, p := range problems {
		need = need || p.Line == 0
	}
	if !need {
		return
	}
	var pos positions
	switch documentFormat(data) {
	case formatJSON:
		t := &jsonTree{dec: json.NewDecoder(bytes.NewReader(data)), data: data, pos: positions{}}
		if _, err := t.parse(); err != nil {
			return
		}
		pos = t.pos
	case formatYAML:
		pos = yamlPositions(data)
	}
	if pos == nil {
		return
	}
	for i := range problems {
		p := &problems[i]
		if p.Line != 0 {
			continue
		}
		path := p.Path
		if path == "" {
			path = p.at
		}
		for {
			if at, ok := pos[path]; ok {
				k := 0
				if p.Message == "duplicate key" {
					k = len(at) - 1
				}
				p.Line, p.Column = at[k].line, at[k].col
				if at[k].line == 0 {
					p.Line, p.Column = lineColumn(data, min(at[k].off, len(data)))
				}
				break
			}
			if path == "" {
				break
			}
			path = parentPath(path)
		}
	}
}

// parentPath drops the last step of a path: jobs[0].args.count → jobs[0].args → jobs[0] →
// jobs → "". A quoted key (a["odd key"]) is one step: its text never holds `["`, which Quote
// writes as `[\"`.
func parentPath(path string) string {
	switch {
	case strings.HasSuffix(path, `"]`):
		return path[:max(strings.LastIndex(path, `["`), 0)]
	case strings.HasSuffix(path, "]"):
		return path[:max(strings.LastIndexByte(path, '['), 0)]
	}
	return path[:max(strings.LastIndexByte(path, '.'), 0)]
}
