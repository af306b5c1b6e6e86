package codec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"sync"
	"unicode/utf8"
)

// jsonCodec: a payload is one JSON text without a newline; on a stream a frame is one line.
type jsonCodec struct{}

var theJSON = jsonCodec{}

func (jsonCodec) Name() string { return JSON }

// jsonNull is the zero payload. null, not 0: encoding/json decodes null into every Go type as
// its zero value without error (a 0 would fail for strings, slices, structs...), and DecodeAny
// gives nil, which a generic job can tell from a real 0. SPEC's "zero value" is thus honoured
// whatever type the job asks for.
var jsonNull = []byte("null")

func (jsonCodec) Zero() []byte { return jsonNull }

// jsonEncoder pairs a json.Encoder with its buffer: json.Marshal cannot turn HTML escaping off,
// and an Encoder per call would allocate.
type jsonEncoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

var jsonEncoders = sync.Pool{New: func() any {
	e := &jsonEncoder{}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// Append encodes v as encoding/json does with HTML escaping off, without the newline. Integers,
// booleans, nil, float64 and plain ASCII strings are formatted here, identically (tested).
func (jsonCodec) Append(dst []byte, v any) ([]byte, error) {
	if out, ok := appendJSONFast(dst, v); ok {
		return out, nil
	}
	e := jsonEncoders.Get().(*jsonEncoder)
	defer e.release()
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return dst, err
	}
	out := e.buf.Bytes()
	return append(dst, out[:len(out)-1]...), nil // Encode always ends with '\n'
}

// release returns e to the pool unless one huge value left it holding a huge buffer.
func (e *jsonEncoder) release() {
	if e.buf.Cap() <= 1<<20 {
		jsonEncoders.Put(e)
	}
}

func appendJSONFast(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), true
	case bool:
		return strconv.AppendBool(dst, x), true
	case int:
		return strconv.AppendInt(dst, int64(x), 10), true
	case int64:
		return strconv.AppendInt(dst, x, 10), true
	case int32:
		return strconv.AppendInt(dst, int64(x), 10), true
	case uint64:
		return strconv.AppendUint(dst, x, 10), true
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10), true
	case uint:
		return strconv.AppendUint(dst, uint64(x), 10), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return dst, false // the library reports the error
		}
		return appendJSONFloat(dst, x), true
	case string:
		if !plainASCII(x) {
			return dst, false
		}
		return append(append(append(dst, '"'), x...), '"'), true
	}
	return dst, false
}

// appendJSONFloat formats a finite float64 exactly as encoding/json does: shortest
// representation, exponent form only for very small or large magnitudes, e-07 shortened to e-7.
func appendJSONFloat(dst []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// plainASCII reports whether s needs no escaping in JSON: printable ASCII without '"' and '\'.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// Decode decodes with encoding/json; generic targets (*any, *[]any, *map[string]any) get
// DecodeAny's number rules instead of float64 everywhere.
func (c jsonCodec) Decode(payload []byte, ptr any) error {
	switch p := ptr.(type) {
	case *any:
		v, err := c.DecodeAny(payload)
		if err == nil {
			*p = v
		}
		return err
	case *[]any:
		if v, err := c.DecodeAny(payload); err == nil {
			if s, ok := v.([]any); ok {
				*p = s
				return nil
			}
		}
	case *map[string]any:
		if v, err := c.DecodeAny(payload); err == nil {
			if m, ok := v.(map[string]any); ok {
				*p = m
				return nil
			}
		}
	}
	return json.Unmarshal(payload, ptr)
}

// DecodeAny decodes into generic values: integer literals become int64 (uint64 above MaxInt64,
// float64 beyond that), other numbers float64, objects map[string]any, arrays []any. Scalars
// are parsed here without encoding/json's allocations.
func (c jsonCodec) DecodeAny(payload []byte) (any, error) {
	if v, ok := jsonScalar(payload); ok {
		return v, nil
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			err = errors.New("json: empty payload")
		}
		return nil, err
	}
	if rest := payload[dec.InputOffset():]; len(bytes.TrimLeft(rest, " \t\r\n")) > 0 {
		return nil, fmt.Errorf("json: extra data after the value at byte %d", len(payload)-len(rest))
	}
	return convertNumbers(v)
}

// convertNumbers replaces the json.Numbers of a decoded value in place.
func convertNumbers(v any) (any, error) {
	var err error
	switch x := v.(type) {
	case json.Number:
		return jsonNumber(string(x))
	case []any:
		for i, e := range x {
			if x[i], err = convertNumbers(e); err != nil {
				return nil, err
			}
		}
	case map[string]any:
		for k, e := range x {
			if x[k], err = convertNumbers(e); err != nil {
				return nil, err
			}
		}
	}
	return v, nil
}

// jsonNumber applies the number rules to a valid JSON number literal. s does not escape (the
// error does not quote it; strconv's error carries a copy), so callers may pass string(bytes)
// without allocating.
func jsonNumber(s string) (any, error) {
	if isJSONInt(s) {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i, nil
		}
		if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			return u, nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return f, nil
}

// jsonScalar parses payloads that are a number, true, false, null or a string without escapes.
// ok is false for anything else, which the general path then decodes or rejects.
func jsonScalar(p []byte) (any, bool) {
	p = bytes.Trim(p, " \t\r\n")
	switch {
	case len(p) == 0:
		return nil, false
	case string(p) == "null":
		return nil, true
	case string(p) == "true":
		return true, true
	case string(p) == "false":
		return false, true
	case p[0] == '"':
		if str, ok := plainJSONString(p); ok {
			return string(str), true
		}
	case isJSONNumber(p):
		v, err := jsonNumber(string(p))
		return v, err == nil
	}
	return nil, false
}

// plainJSONString returns the content of a quoted string that has no escapes, control
// characters or invalid UTF-8 (those need encoding/json's handling).
func plainJSONString(p []byte) ([]byte, bool) {
	if len(p) < 2 || p[0] != '"' || p[len(p)-1] != '"' {
		return nil, false
	}
	in := p[1 : len(p)-1]
	for _, c := range in {
		if c < 0x20 || c == '"' || c == '\\' {
			return nil, false
		}
	}
	return in, utf8.Valid(in)
}

// isJSONInt reports whether s is a JSON integer literal: -?(0|[1-9][0-9]*).
func isJSONInt(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if len(s) == 0 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isJSONNumber reports whether p is exactly a JSON number (RFC 8259 grammar), which strconv
// alone would not check (it accepts "+1", ".5", "Inf", "0x1p3", leading zeros...).
func isJSONNumber(p []byte) bool {
	i := 0
	if i < len(p) && p[i] == '-' {
		i++
	}
	switch {
	case i < len(p) && p[i] == '0':
		i++
	case i < len(p) && p[i] >= '1' && p[i] <= '9':
		i = digits(p, i)
	default:
		return false
	}
	if i < len(p) && p[i] == '.' {
		if j := digits(p, i+1); j > i+1 {
			i = j
		} else {
			return false
		}
	}
	if i < len(p) && (p[i] == 'e' || p[i] == 'E') {
		i++
		if i < len(p) && (p[i] == '+' || p[i] == '-') {
			i++
		}
		j := digits(p, i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(p)
}

func digits(p []byte, i int) int {
	for i < len(p) && p[i] >= '0' && p[i] <= '9' {
		i++
	}
	return i
}

// AppendFrame writes the payload as one line. A valid JSON text can contain a newline only as
// whitespace between tokens (never inside a string), so replacing newlines with spaces keeps its
// meaning and keeps the framing intact for payloads that arrive pretty-printed from elsewhere.
func (jsonCodec) AppendFrame(dst, payload []byte) []byte {
	n := len(dst)
	dst = append(dst, payload...)
	if bytes.IndexByte(payload, '\n') >= 0 {
		for i := n; i < len(dst); i++ {
			if dst[i] == '\n' {
				dst[i] = ' '
			}
		}
	}
	return append(dst, '\n')
}

func (c jsonCodec) ReadFrame(r *bufio.Reader, dst []byte) ([]byte, error) {
	out, _, err := c.readFrame(r, dst, 0)
	return out, err
}

// readFrame reads lines until one is not blank. The payload is the line without its newline and
// trailing whitespace (a '\r' from CRLF, also spaces: stripping all of it makes reading a
// re-framed payload give the same payload).
func (c jsonCodec) readFrame(r *bufio.Reader, dst []byte, base int64) ([]byte, int64, error) {
	var n int64
	for {
		start := base + n
		line, m, err := readLine(r, dst)
		n += m
		if err != nil && err != io.EOF {
			return dst, n, &FrameError{Codec: JSON, Offset: start, Err: err}
		}
		payload := bytes.TrimRight(line[len(dst):], " \t\r")
		if len(payload) == 0 {
			if err == io.EOF {
				return dst, n, io.EOF // blank lines and then the end: no frame
			}
			continue
		}
		if !json.Valid(payload) {
			return dst, n, &FrameError{Codec: JSON, Offset: start, Err: jsonLineError(payload, err == io.EOF)}
		}
		return line[:len(dst)+len(payload)], n, nil
	}
}

// jsonLineError says why a line is not JSON. A last line without newline that is not JSON is
// most likely cut short, so it also wraps io.ErrUnexpectedEOF.
func jsonLineError(line []byte, last bool) error {
	var raw json.RawMessage
	err := json.Unmarshal(line, &raw)
	if err == nil {
		err = errors.New("not a JSON text")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		err = fmt.Errorf("invalid JSON (%v at byte %d of the line)", se, se.Offset)
	} else {
		err = fmt.Errorf("invalid JSON (%v)", err)
	}
	if last {
		err = fmt.Errorf("%w: last line has no newline and %w", io.ErrUnexpectedEOF, err)
	}
	return err
}

// readLine appends one line without its '\n' to dst and returns the bytes consumed, including
// the '\n'. At the end of the stream it returns what it has and io.EOF.
func readLine(r *bufio.Reader, dst []byte) ([]byte, int64, error) {
	var n int64
	for {
		chunk, err := r.ReadSlice('\n')
		n += int64(len(chunk))
		if n > int64(MaxFrameSize)+1 {
			return dst, n, fmt.Errorf("line longer than %d bytes", MaxFrameSize)
		}
		switch err {
		case nil:
			return append(dst, chunk[:len(chunk)-1]...), n, nil
		case bufio.ErrBufferFull:
			dst = append(dst, chunk...)
		default:
			return append(dst, chunk...), n, err
		}
	}
}

// decoderFor decodes the commonest types without encoding/json when the payload is a plain
// literal, and falls back to it (null, conversions, errors) otherwise.
func (c jsonCodec) decoderFor(t reflect.Type) Decoder {
	slow := reflectDecoder(c, t)
	switch t {
	case typeInt, typeInt64:
		return func(p []byte) (reflect.Value, error) {
			if s := string(bytes.Trim(p, " \t\r\n")); isJSONInt(s) {
				if i, err := strconv.ParseInt(s, 10, 64); err == nil {
					if t == typeInt {
						return reflect.ValueOf(int(i)), nil
					}
					return reflect.ValueOf(i), nil
				}
			}
			return slow(p)
		}
	case typeFloat64:
		return func(p []byte) (reflect.Value, error) {
			if q := bytes.Trim(p, " \t\r\n"); isJSONNumber(q) {
				if f, err := strconv.ParseFloat(string(q), 64); err == nil {
					return reflect.ValueOf(f), nil
				}
			}
			return slow(p)
		}
	case typeString:
		return func(p []byte) (reflect.Value, error) {
			if s, ok := plainJSONString(bytes.Trim(p, " \t\r\n")); ok {
				return reflect.ValueOf(string(s)), nil
			}
			return slow(p)
		}
	case typeBool:
		return func(p []byte) (reflect.Value, error) {
			switch string(bytes.Trim(p, " \t\r\n")) {
			case "true":
				return reflect.ValueOf(true), nil
			case "false":
				return reflect.ValueOf(false), nil
			}
			return slow(p)
		}
	}
	return nil
}
