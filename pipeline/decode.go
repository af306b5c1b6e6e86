package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/marvelo/marvelo/codec"
)

// Decoding happens in two passes. The first turns JSON, YAML (yaml.go) or CBOR into a generic
// tree (objects keep their members in document order, duplicates included) and stops only at
// malformed input. The second walks the tree into the structs and collects every problem it
// meets (unknown keys, wrong types, out-of-range values) so that a user fixes a document in one
// round, not one error at a time. The formats share the second pass, so they are equally
// strict. Where each problem is in the text (line and column) is found only when there are
// problems (locate.go).

// maxNesting bounds how deeply arrays and objects may nest, so that a hostile document cannot
// exhaust the stack. Real documents nest a handful of levels; args rarely more than a few more.
const maxNesting = 256

// Limits on the size of a document, far above any real pipeline, so that a small hostile
// document (one byte per job in CBOR) cannot make Parse or Validate allocate gigabytes.
const (
	MaxJobs  = 10000
	MaxPipes = 10000
)

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

// --- the generic tree ---

// object is a decoded JSON object or CBOR map, members in document order.
type object []member

type member struct {
	key    string
	badKey string // the type of a CBOR map key that is not a text string; key is then empty
	val    any
}

// outOfRange is a number that does not fit an int64 (or a float64), kept as text so that the
// second pass can say where it is.
type outOfRange struct{ text string }

// unsupported is a well-formed CBOR item that has no JSON equivalent (byte string, tag,
// undefined, simple value, NaN, infinity). Documents are JSON values in either form, so these are
// problems, reported with their path by the second pass.
type unsupported struct{ what string }

// syntaxError is malformed input at a byte offset.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return e.msg }

// typeName names a tree value's type in messages.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case object, map[string]any:
		return "object"
	case outOfRange:
		return "number " + v.text
	case unsupported:
		return v.what
	case yamlAlias:
		return v.String()
	}
	return fmt.Sprintf("%T", v)
}

// --- JSON ---

// jsonTree builds the tree from the token stream, which (unlike decoding into any) keeps
// duplicate keys visible and lets us bound the nesting ourselves.
type jsonTree struct {
	dec  *json.Decoder
	data []byte
	// pos, when set, receives where every path is (Locate); paths are built only then.
	pos positions
}

func parseJSONTree(data []byte) (any, error) {
	t := &jsonTree{dec: json.NewDecoder(bytes.NewReader(data)), data: data}
	return t.parse()
}

func (t *jsonTree) parse() (any, error) {
	t.dec.UseNumber()
	t.mark("")
	v, err := t.value(0, "")
	if err == nil {
		err = t.end()
	}
	if err != nil {
		return nil, t.fail(err)
	}
	return v, nil
}

// mark records that path starts at the next token, when positions are wanted.
func (t *jsonTree) mark(path string) {
	if t.pos != nil {
		t.pos.add(path, position{off: t.next()})
	}
}

// next is the offset of the next token: past the end of the last one, the whitespace and the
// separator after it.
func (t *jsonTree) next() int {
	off := int(t.dec.InputOffset())
	for off < len(t.data) && strings.IndexByte(" \t\r\n,:", t.data[off]) >= 0 {
		off++
	}
	return off
}

func (t *jsonTree) value(depth int, path string) (any, error) {
	tok, err := t.dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		if depth >= maxNesting {
			return nil, &syntaxError{int(t.dec.InputOffset()) - 1, fmt.Sprintf("nested deeper than %d levels", maxNesting)}
		}
		switch tok {
		case '{':
			return t.object(depth+1, path)
		case '[':
			return t.array(depth+1, path)
		}
		return nil, &syntaxError{int(t.dec.InputOffset()) - 1, fmt.Sprintf("unexpected %q", rune(tok))}
	case json.Number:
		return jsonNumber(tok), nil
	}
	return tok, nil // string, bool or nil
}

func (t *jsonTree) object(depth int, path string) (any, error) {
	obj := object{}
	for t.dec.More() {
		start := 0
		if t.pos != nil {
			start = t.next()
		}
		tok, err := t.dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := tok.(string) // the tokenizer accepts only strings as object keys
		mpath := ""
		if t.pos != nil { // a member is where its key is
			mpath = joinKey(path, key)
			t.pos.add(mpath, position{off: start})
		}
		v, err := t.value(depth, mpath)
		if err != nil {
			return nil, err
		}
		obj = append(obj, member{key: key, val: v})
	}
	_, err := t.dec.Token() // the closing brace
	return obj, err
}

func (t *jsonTree) array(depth int, path string) (any, error) {
	arr := []any{}
	for t.dec.More() {
		elem := ""
		if t.pos != nil {
			elem = indexPath(path, len(arr))
			t.mark(elem)
		}
		v, err := t.value(depth, elem)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	_, err := t.dec.Token() // the closing bracket
	return arr, err
}

// end checks that nothing but whitespace follows the document.
func (t *jsonTree) end() error {
	off := skipSpace(t.data, int(t.dec.InputOffset()))
	if _, err := t.dec.Token(); err != io.EOF {
		return &syntaxError{off, "unexpected data after the document"}
	}
	return nil
}

// fail turns a tokenizer error into a DocumentError naming the line, column and byte offset.
func (t *jsonTree) fail(err error) error {
	off, msg := len(t.data), err.Error()
	var se *json.SyntaxError
	var own *syntaxError
	switch {
	case errors.As(err, &own):
		off = own.off
	case errors.As(err, &se):
		// The offending token or, for a malformed literal, the start of the value.
		off = int(se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		msg = "unexpected end of input"
	}
	off = min(off, len(t.data))
	line, col := lineColumn(t.data, off)
	return &DocumentError{Problems: []Problem{{
		Message: fmt.Sprintf("invalid JSON at line %d, column %d (byte %d): %s", line, col, off, msg),
		Line:    line, Column: col, placed: true,
	}}}
}

// lineColumn gives the 1-based line and column (in bytes) of offset off.
func lineColumn(data []byte, off int) (line, col int) {
	before := data[:off]
	line = bytes.Count(before, []byte{'\n'}) + 1
	return line, off - (bytes.LastIndexByte(before, '\n') + 1) + 1
}

// jsonNumber keeps integers as int64 and everything else as float64, as CBOR does.
func jsonNumber(n json.Number) any {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
		return outOfRange{s}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return outOfRange{s}
	}
	return f
}

// --- CBOR ---

// cborTree reads CBOR (RFC 8949) into the tree. It is a small reader of our own rather than a
// generic decode so that malformed input can be reported with its byte offset, and so that
// non-JSON items become problems with a path instead of values that cannot round-trip. Every
// declared length is checked against the bytes left before anything is allocated.
type cborTree struct {
	data []byte
	off  int
}

func parseCBORTree(data []byte) (any, error) {
	r := &cborTree{data: data}
	v, err := r.value(0)
	if err == nil && r.off < len(data) {
		err = &syntaxError{r.off, "unexpected data after the document"}
	}
	if err != nil {
		var se *syntaxError
		errors.As(err, &se)
		msg := fmt.Sprintf("invalid CBOR at byte %d: %s", se.off, se.msg)
		if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
			msg += " (the input starts with a UTF-8 byte order mark: save the JSON without one)"
		} else if looksLikeText(data) {
			msg += " (the input looks like text, but a JSON document must be an object starting with '{')"
		}
		return nil, &DocumentError{Problems: []Problem{{Message: msg}}}
	}
	return v, nil
}

// looksLikeText guesses whether a user handed us text that is not a JSON object, to give a
// better hint than a CBOR error alone.
func looksLikeText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

func (r *cborTree) errorf(off int, format string, args ...any) error {
	return &syntaxError{off, fmt.Sprintf(format, args...)}
}

// head reads an item's initial byte and its argument. indef reports additional information 31
// (indefinite length, or break for major type 7).
func (r *cborTree) head() (major, info byte, arg uint64, indef bool, err error) {
	start := r.off
	if r.off >= len(r.data) {
		return 0, 0, 0, false, r.errorf(r.off, "unexpected end of input")
	}
	ib := r.data[r.off]
	r.off++
	major, info = ib>>5, ib&0x1f
	switch {
	case info < 24:
		return major, info, uint64(info), false, nil
	case info == 31:
		return major, info, 0, true, nil
	case info > 27:
		return 0, 0, 0, false, r.errorf(start, "reserved additional information %d", info)
	}
	n := 1 << (info - 24)
	if len(r.data)-r.off < n {
		return 0, 0, 0, false, r.errorf(len(r.data), "unexpected end of input")
	}
	for _, b := range r.data[r.off : r.off+n] {
		arg = arg<<8 | uint64(b)
	}
	r.off += n
	return major, info, arg, false, nil
}

func (r *cborTree) value(depth int) (any, error) {
	start := r.off
	major, info, arg, indef, err := r.head()
	if err != nil {
		return nil, err
	}
	if indef && (major < 2 || major == 6) {
		return nil, r.errorf(start, "indefinite length is not allowed for major type %d", major)
	}
	if major >= 4 && major <= 6 && depth >= maxNesting {
		return nil, r.errorf(start, "nested deeper than %d levels", maxNesting)
	}
	switch major {
	case 0:
		if arg > math.MaxInt64 {
			return outOfRange{strconv.FormatUint(arg, 10)}, nil
		}
		return int64(arg), nil
	case 1:
		if arg > math.MaxInt64 {
			n := new(big.Int).SetUint64(arg)
			return outOfRange{n.Neg(n).Sub(n, big.NewInt(1)).String()}, nil
		}
		return -1 - int64(arg), nil
	case 2:
		if _, err := r.str(major, arg, indef); err != nil {
			return nil, err
		}
		return unsupported{"byte string"}, nil
	case 3:
		s, err := r.str(major, arg, indef)
		return string(s), err
	case 4:
		return r.array(arg, indef, depth)
	case 5:
		return r.mapValue(arg, indef, depth)
	case 6:
		if _, err := r.value(depth + 1); err != nil {
			return nil, err
		}
		return unsupported{fmt.Sprintf("CBOR tag %d", arg)}, nil
	}
	return r.simple(start, info, arg, indef)
}

// take returns the next n bytes.
func (r *cborTree) take(n uint64) ([]byte, error) {
	if left := uint64(len(r.data) - r.off); n > left {
		return nil, r.errorf(r.off, "length %d exceeds the %d bytes left", n, left)
	}
	b := r.data[r.off : r.off+int(n)]
	r.off += int(n)
	return b, nil
}

// atBreak consumes the break that ends an indefinite-length item, if it is next.
func (r *cborTree) atBreak() bool {
	if r.off < len(r.data) && r.data[r.off] == 0xff {
		r.off++
		return true
	}
	return false
}

// str reads a byte string (major 2) or text string (major 3), definite or in chunks.
func (r *cborTree) str(major byte, n uint64, indef bool) ([]byte, error) {
	if !indef {
		return r.chunk(major, n)
	}
	var buf []byte
	for !r.atBreak() {
		start := r.off
		m, _, n, ind, err := r.head()
		if err != nil {
			return nil, err
		}
		if m != major || ind {
			return nil, r.errorf(start, "a chunk of an indefinite-length string must be a definite-length string of the same type")
		}
		c, err := r.chunk(major, n)
		if err != nil {
			return nil, err
		}
		buf = append(buf, c...)
	}
	return buf, nil
}

func (r *cborTree) chunk(major byte, n uint64) ([]byte, error) {
	start := r.off
	b, err := r.take(n)
	if err == nil && major == 3 && !utf8.Valid(b) {
		err = r.errorf(start, "text string is not valid UTF-8")
	}
	return b, err
}

func (r *cborTree) array(n uint64, indef bool, depth int) (any, error) {
	if !indef && n > uint64(len(r.data)-r.off) {
		return nil, r.errorf(r.off, "array of %d items exceeds the %d bytes left", n, len(r.data)-r.off)
	}
	arr := make([]any, 0, min(n, 1024))
	for i := uint64(0); indef || i < n; i++ {
		if indef && r.atBreak() {
			break
		}
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	return arr, nil
}

func (r *cborTree) mapValue(n uint64, indef bool, depth int) (any, error) {
	if !indef && n > uint64(len(r.data)-r.off)/2 {
		return nil, r.errorf(r.off, "map of %d pairs exceeds the %d bytes left", n, len(r.data)-r.off)
	}
	obj := make(object, 0, min(n, 1024))
	for i := uint64(0); indef || i < n; i++ {
		if indef && r.atBreak() {
			break
		}
		k, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		if s, ok := k.(string); ok {
			obj = append(obj, member{key: s, val: v})
		} else {
			obj = append(obj, member{badKey: typeName(k), val: v})
		}
	}
	return obj, nil
}

// simple reads major type 7: false, true, null, floats; everything else has no JSON equivalent.
func (r *cborTree) simple(start int, info byte, arg uint64, indef bool) (any, error) {
	var f float64
	switch {
	case indef:
		return nil, r.errorf(start, "unexpected break")
	case info == 20:
		return false, nil
	case info == 21:
		return true, nil
	case info == 22:
		return nil, nil
	case info == 23:
		return unsupported{"undefined"}, nil
	case info == 24 && arg < 32:
		return nil, r.errorf(start, "invalid simple value %d", arg)
	case info < 25:
		return unsupported{fmt.Sprintf("simple value %d", arg)}, nil
	case info == 25:
		f = float16(uint16(arg))
	case info == 26:
		f = float64(math.Float32frombits(uint32(arg)))
	default:
		f = math.Float64frombits(arg)
	}
	switch {
	case math.IsNaN(f):
		return unsupported{"NaN"}, nil
	case math.IsInf(f, 0):
		return unsupported{"infinity"}, nil
	}
	return f, nil
}

// float16 converts an IEEE 754 half-precision value, which core deterministic encoding uses for
// any float it represents exactly.
func float16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, frac := int(h>>10)&0x1f, float64(h&0x3ff)
	switch exp {
	case 0:
		return sign * math.Ldexp(frac, -24)
	case 0x1f:
		if frac == 0 {
			return math.Inf(int(sign))
		}
		return math.NaN()
	}
	return sign * math.Ldexp(frac+1024, exp-25)
}

// --- from the tree to the structs ---

// builder walks the tree into a Pipeline, collecting every problem with its path.
type builder struct {
	problems []Problem
}

// fields maps the keys an object of type T may have to what decodes each value into a *T. The
// tables are built once: decoding allocates nothing per object for them.
type fields[T any] map[string]func(b *builder, t *T, path string, v any)

func (b *builder) add(path, format string, args ...any) {
	b.problems = append(b.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

var pipelineFields = fields[Pipeline]{
	"name": func(b *builder, p *Pipeline, path string, v any) { p.Name = b.str(path, v) },
	"jobs": func(b *builder, p *Pipeline, path string, v any) {
		arr := b.array(path, v, MaxJobs)
		p.Jobs = make([]Job, len(arr))
		for i, e := range arr {
			decodeFields(b, indexPath(path, i), e, jobFields, &p.Jobs[i])
		}
	},
	"pipes": func(b *builder, p *Pipeline, path string, v any) {
		arr := b.array(path, v, MaxPipes)
		if len(arr) > 0 {
			p.Pipes = make([]Pipe, len(arr))
		}
		for i, e := range arr {
			decodeFields(b, indexPath(path, i), e, pipeFields, &p.Pipes[i])
		}
	},
}

var jobFields = fields[Job]{
	"id":   func(b *builder, j *Job, path string, v any) { j.ID, _ = b.int(path, v) },
	"name": func(b *builder, j *Job, path string, v any) { j.Name = b.str(path, v) },
	"type": func(b *builder, j *Job, path string, v any) { j.Type = b.str(path, v) },
	"args": func(b *builder, j *Job, path string, v any) { j.Args = b.args(path, v) },
	"exec": func(b *builder, j *Job, path string, v any) {
		j.Exec = &Exec{}
		decodeFields(b, path, v, execFields, j.Exec)
	},
	"python": func(b *builder, j *Job, path string, v any) {
		j.Python = &Python{}
		decodeFields(b, path, v, pythonFields, j.Python)
	},
	"inputs":    func(b *builder, j *Job, path string, v any) { j.Inputs = b.ints(path, v) },
	"outputs":   func(b *builder, j *Job, path string, v any) { j.Outputs = b.ints(path, v) },
	"groups":    func(b *builder, j *Job, path string, v any) { j.Groups = b.strs(path, v) },
	"node":      func(b *builder, j *Job, path string, v any) { j.Node = b.str(path, v) },
	"max_queue": func(b *builder, j *Job, path string, v any) { j.MaxQueue, _ = b.int(path, v) },
	"head":      func(b *builder, j *Job, path string, v any) { j.Head = b.bool(path, v) },
	"head_size": func(b *builder, j *Job, path string, v any) { j.HeadSize = b.intIn(path, v, 1, 4) },
	"dummy":     func(b *builder, j *Job, path string, v any) { j.Dummy = b.enum(path, v, DummyZero, DummyPrev) },
	"log":       func(b *builder, j *Job, path string, v any) { j.Log = b.bool(path, v) },
	"restart": func(b *builder, j *Job, path string, v any) {
		j.Restart = &Restart{}
		decodeFields(b, path, v, restartFields, j.Restart)
	},
}

// restartFields: max must be at least 1 when given (an explicit 0 cannot be told from an absent
// key later); the policy and the backoff's duration are checked by Validate.
var restartFields = fields[Restart]{
	"policy": func(b *builder, r *Restart, path string, v any) {
		r.Policy = b.enum(path, v, RestartNever, RestartOnFailure)
	},
	"max":         func(b *builder, r *Restart, path string, v any) { r.Max = b.intIn(path, v, 1, math.MaxInt) },
	"backoff":     func(b *builder, r *Restart, path string, v any) { r.Backoff = b.str(path, v) },
	"skip_poison": func(b *builder, r *Restart, path string, v any) { r.SkipPoison = b.bool(path, v) },
}

var execFields = fields[Exec]{
	"path":         func(b *builder, e *Exec, path string, v any) { e.Path = b.str(path, v) },
	"params":       func(b *builder, e *Exec, path string, v any) { e.Params = b.strs(path, v) },
	"mode":         func(b *builder, e *Exec, path string, v any) { e.Mode = b.enum(path, v, ModeFIFO, ModeFD) },
	"input_flag":   func(b *builder, e *Exec, path string, v any) { e.InputFlag = b.str(path, v) },
	"output_flag":  func(b *builder, e *Exec, path string, v any) { e.OutputFlag = b.str(path, v) },
	"dependencies": func(b *builder, e *Exec, path string, v any) { e.Dependencies = b.str(path, v) },
	"sqn":          func(b *builder, e *Exec, path string, v any) { e.SQN = b.bool(path, v) },
}

var pythonFields = fields[Python]{
	"class":        func(b *builder, p *Python, path string, v any) { p.Class = b.str(path, v) },
	"dependencies": func(b *builder, p *Python, path string, v any) { p.Dependencies = b.str(path, v) },
	"interpreter":  func(b *builder, p *Python, path string, v any) { p.Interpreter = b.str(path, v) },
	"arrays":       func(b *builder, p *Python, path string, v any) { p.Arrays = b.enum(path, v, ArraysNumpy, ArraysList) },
	"requires":     func(b *builder, p *Python, path string, v any) { p.Requires = b.strs(path, v) },
}

// block_size and block_count must be at least 1 when given: the struct cannot tell an explicit
// 0 from an absent key, so decoding is the only place an explicit 0 can be caught.
var pipeFields = fields[Pipe]{
	"id": func(b *builder, p *Pipe, path string, v any) { p.ID, _ = b.int(path, v) },
	"codec": func(b *builder, p *Pipe, path string, v any) {
		p.Codec = b.enum(path, v, codec.CBOR, codec.JSON, codec.Bytes)
	},
	"block_size":  func(b *builder, p *Pipe, path string, v any) { p.BlockSize = b.intIn(path, v, 1, math.MaxInt) },
	"block_count": func(b *builder, p *Pipe, path string, v any) { p.BlockCount = b.intIn(path, v, 1, math.MaxInt) },
	"async":       func(b *builder, p *Pipe, path string, v any) { p.Async = b.bool(path, v) },
	"optional": func(b *builder, p *Pipe, path string, v any) {
		p.Optional = &Optional{}
		decodeFields(b, path, v, optionalFields, p.Optional)
	},
	"from_types": func(b *builder, p *Pipe, path string, v any) { p.FromTypes = b.strs(path, v) },
	"to_types":   func(b *builder, p *Pipe, path string, v any) { p.ToTypes = b.strs(path, v) },
	"qos":        func(b *builder, p *Pipe, path string, v any) { p.QoS = b.enum(path, v, QoSReliable, QoSRealtime) },
	"dtype":      func(b *builder, p *Pipe, path string, v any) { p.Dtype = b.str(path, v) },
}

var optionalFields = fields[Optional]{
	"default": func(b *builder, o *Optional, path string, v any) { o.Default = b.plain(path, v) },
	"store": func(b *builder, o *Optional, path string, v any) {
		s := b.bool(path, v)
		o.Store = &s
	},
	"buffer": func(b *builder, o *Optional, path string, v any) { o.Buffer, _ = b.int(path, v) },
	"drop":   func(b *builder, o *Optional, path string, v any) { o.Drop = b.enum(path, v, "oldest", "newest") },
}

func (b *builder) pipeline(v any) *Pipeline {
	p := &Pipeline{}
	if _, ok := v.(object); !ok {
		if !b.alias("", v) {
			b.add("", "a pipeline document must be an object, got %s", typeName(v))
		}
		return p
	}
	decodeFields(b, "", v, pipelineFields, p)
	return p
}

// decodeFields decodes an object with a fixed set of keys into t: each member goes to its
// field's decoder; unknown, duplicate and non-string keys are problems.
func decodeFields[T any](b *builder, path string, v any, fs fields[T], t *T) {
	if b.alias(path, v) {
		return
	}
	obj, ok := v.(object)
	if !ok {
		b.add(path, "expected object, got %s", typeName(v))
		return
	}
	dup := obj.duplicates()
	for i, m := range obj {
		if m.badKey != "" {
			b.add(path, "keys must be strings, got %s", m.badKey)
			continue
		}
		p := joinKey(path, m.key)
		decode, known := fs[m.key]
		switch {
		case dup != nil && dup[i]:
			b.add(p, "duplicate key")
		case !known:
			b.add(p, "unknown key%s", didYouMean(m.key, slices.Sorted(maps.Keys(fs))))
		case b.alias(p, m.val):
		default:
			decode(b, t, p, m.val)
		}
	}
}

// duplicates flags each member whose key an earlier member already has.
func (o object) duplicates() []bool {
	if len(o) < 2 {
		return nil
	}
	dup := make([]bool, len(o))
	if len(o) <= 16 { // the usual case: a scan is cheaper than a set
		for i := range o {
			for _, m := range o[:i] {
				dup[i] = dup[i] || m.badKey == "" && o[i].badKey == "" && m.key == o[i].key
			}
		}
		return dup
	}
	seen := make(map[string]bool, len(o))
	for i, m := range o {
		if m.badKey == "" {
			dup[i] = seen[m.key]
			seen[m.key] = true
		}
	}
	return dup
}

// array returns v as an array of at most limit elements (any length when limit is 0), or nil
// after reporting a problem.
func (b *builder) array(path string, v any, limit int) []any {
	arr, ok := v.([]any)
	switch {
	case !ok:
		b.add(path, "expected array, got %s", typeName(v))
	case limit > 0 && len(arr) > limit:
		b.add(path, "%d entries is more than the %d a document may have", len(arr), limit)
	default:
		return arr
	}
	return nil
}

func (b *builder) list(path string, v any, each func(path string, v any)) {
	for i, e := range b.array(path, v, 0) {
		each(indexPath(path, i), e)
	}
}

func indexPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func (b *builder) str(path string, v any) string {
	s, ok := v.(string)
	if !ok {
		b.add(path, "expected string, got %s", typeName(v))
	}
	return s
}

func (b *builder) bool(path string, v any) bool {
	t, ok := v.(bool)
	if !ok {
		b.add(path, "expected boolean, got %s", typeName(v))
	}
	return t
}

// int decodes an integer; ok is false when a problem was reported.
func (b *builder) int(path string, v any) (n int, ok bool) {
	switch v := v.(type) {
	case int64:
		if int64(int(v)) == v {
			return int(v), true
		}
		b.add(path, "integer %d is out of range", v)
	case outOfRange:
		b.add(path, "%s is out of range", v.text)
	default:
		b.add(path, "expected integer, got %s", typeName(v))
	}
	return 0, false
}

// intIn decodes an integer that must lie in [lo, hi] when given.
func (b *builder) intIn(path string, v any, lo, hi int) int {
	n, ok := b.int(path, v)
	switch {
	case !ok:
	case n < lo && hi == math.MaxInt:
		b.add(path, "must be at least %d, got %d", lo, n)
	case n < lo || n > hi:
		b.add(path, "must be %d to %d, got %d", lo, hi, n)
	}
	return n
}

func (b *builder) enum(path string, v any, allowed ...string) string {
	s, ok := v.(string)
	if !ok {
		b.add(path, "expected string, got %s", typeName(v))
		return ""
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	b.add(path, "%s is not one of %s", strconv.Quote(s), strings.Join(allowed, ", "))
	return s
}

func (b *builder) ints(path string, v any) []int {
	var out []int
	b.list(path, v, func(path string, v any) {
		n, _ := b.int(path, v)
		out = append(out, n)
	})
	return out
}

func (b *builder) strs(path string, v any) []string {
	var out []string
	b.list(path, v, func(path string, v any) { out = append(out, b.str(path, v)) })
	return out
}

func (b *builder) args(path string, v any) map[string]any {
	if _, ok := v.(object); !ok {
		b.add(path, "expected object, got %s", typeName(v))
		return nil
	}
	m, _ := b.plain(path, v).(map[string]any)
	return m
}

// plain converts a free-form value (args, optional.default) to map[string]any, []any, string,
// int64, float64, bool or nil.
func (b *builder) plain(path string, v any) any {
	switch v := v.(type) {
	case object:
		m := make(map[string]any, len(v))
		for _, mem := range v {
			if mem.badKey != "" {
				b.add(path, "keys must be strings, got %s", mem.badKey)
				continue
			}
			p := joinKey(path, mem.key)
			if _, dup := m[mem.key]; dup {
				b.add(p, "duplicate key")
				continue
			}
			m[mem.key] = b.plain(p, mem.val)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = b.plain(indexPath(path, i), e)
		}
		return out
	case outOfRange:
		b.add(path, "%s is out of range", v.text)
		return nil
	case unsupported:
		b.add(path, "%s is not allowed: a pipeline document holds JSON values only", v.what)
		return nil
	case yamlAlias:
		b.alias(path, v)
		return nil
	}
	return v
}

// alias reports a YAML alias, which a document may not use: it is a problem of its own, not a
// value of the wrong type.
func (b *builder) alias(path string, v any) bool {
	a, ok := v.(yamlAlias)
	if ok {
		b.add(path, "%s is not allowed: write the value out", a)
	}
	return ok
}

// joinKey extends a path by an object key: a.b for plain keys, a["odd key"] for the rest.
func joinKey(path, key string) string {
	if !isPlainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

func isPlainKey(key string) bool {
	if key == "" || key[0] >= '0' && key[0] <= '9' {
		return false
	}
	for _, c := range key {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// didYouMean suggests the known key closest to an unknown one: " (did you mean block_count?)",
// or "" when none is close.
func didYouMean(key string, known []string) string {
	if best := closest(key, known); best != "" {
		return " (did you mean " + best + "?)"
	}
	return ""
}

// closest is the known name closest to an unknown one: the same but for case and separators,
// or at most two edits away; "" when none is. Unknown keys, args and job types use it.
func closest(name string, known []string) string {
	if len(name) > 64 {
		return ""
	}
	best, bestDist := "", 3
	for _, k := range known {
		d := editDistance(name, k)
		if normalizeKey(name) == normalizeKey(k) {
			d = 0
		}
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

// keySeparators are ignored when comparing keys: blockCount, block-count and BLOCK_COUNT all
// suggest block_count.
var keySeparators = strings.NewReplacer("_", "", "-", "", " ", "")

func normalizeKey(k string) string { return keySeparators.Replace(strings.ToLower(k)) }

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
