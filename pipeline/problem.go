package pipeline

import (
	"fmt"
	"strings"
)

// Problem and DocumentError are how this package says what is wrong with a document and where.
// Decoding, Validate, Check and Locate all report in them, so they stand apart from any one pass.

// Problem is one thing wrong with a document: where it is (a JSON path such as
// "jobs[3].exec.mode"; empty for the document as a whole) and what is wrong.
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	// Kind says what found it: "" (or KindDecode) decoding, "graph" Validate's checks of the
	// document, "args" the check of a job's args against its type.
	Kind string `json:"kind,omitempty"`
	// Line and Column (1-based, in bytes) are where the problem is in a JSON or YAML document:
	// the key of an object member, an array element, or the nearest enclosing one of these that
	// the document has (a missing key is placed at its object). Zero when unknown (CBOR, or a
	// problem found without the document's text). Set by Parse, Check and Locate.
	Line   int `json:"line,omitempty"`
	Column int `json:"column,omitempty"`

	// at is the path to place a problem that has no Path of its own (a pipe's problem, at the
	// job entry naming the pipe).
	at string
	// placed: the message states the position itself (a syntax error).
	placed bool
}

// Problem kinds.
const (
	ProblemDecode = "decode"
	ProblemGraph  = "graph"
	ProblemArgs   = "args"
	// ProblemFiles: a file the document names, checked where the document is (a Python job's
	// dependencies folder and module, an executable job's program and its interpreter).
	ProblemFiles = "files"
	// ProblemWarning: allowed, and valid, but likely not what was meant (Notes).
	ProblemWarning = "warning"
)

// String is "path: message", or the message alone when there is no path.
func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Located is String followed by the problem's line and column when they are known:
// "jobs[1].type: job 2 (x): unknown job type ... (line 6, column 15)".
func (p Problem) Located() string {
	s := p.String()
	switch {
	case p.Line == 0 || p.placed:
	case p.Column == 0:
		s += fmt.Sprintf(" (line %d)", p.Line)
	default:
		s += fmt.Sprintf(" (line %d, column %d)", p.Line, p.Column)
	}
	return s
}

// DocumentError reports why a document could not be decoded: either one problem saying where the
// input is malformed (byte offset, and line and column for JSON), or every problem found in a
// well-formed document.
type DocumentError struct {
	File     string // the file the document came from (set by ParseFile), prefixed to each line
	Problems []Problem
}

// Error lists the problems one per line.
func (e *DocumentError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteString(": ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}
