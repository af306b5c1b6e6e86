package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The JSON reader: turns a JSON document into the generic tree (tree.go), reporting malformed
// input by line, column and byte offset, and, for Locate, recording where each path starts. It is
// separate from the CBOR reader and the builder, with which it shares only the tree.

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
