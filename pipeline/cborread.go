package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"

	"github.com/marvelo/marvelo/codec"
)

// The CBOR reader: reads the items of a CBOR document (RFC 8949) into the generic tree
// (tree.go), reporting malformed input by byte offset. It walks the items with the codec's CBOR
// item reader (codec.CBORReader), which applies RFC 8949's structure rules and the bounds, and
// shares only the tree with the JSON reader and the builder.

// cborTree reads CBOR (RFC 8949) into the tree. It is a small walker of our own rather than a
// generic decode so that malformed input can be reported with its byte offset, and so that
// non-JSON items become problems with a path instead of values that cannot round-trip. The
// item reader checks every declared length against the bytes left before anything is allocated.
type cborTree struct {
	codec.CBORReader
}

func parseCBORTree(data []byte) (any, error) {
	r := &cborTree{codec.NewCBORReader(data, maxNesting)}
	v, err := r.value()
	if err == nil && r.Offset() < len(data) {
		err = &syntaxError{r.Offset(), "unexpected data after the document"}
	}
	if err != nil {
		var se *syntaxError
		if !errors.As(err, &se) {
			se = wordCBORError(err)
		}
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

// wordCBORError words a rule the item reader found broken, for a document's author.
func wordCBORError(err error) *syntaxError {
	e, ok := err.(*codec.CBORError)
	if !ok {
		return &syntaxError{0, err.Error()}
	}
	off, msg := e.Off, ""
	switch e.Rule {
	case codec.CBORTruncated:
		msg = "unexpected end of input"
	case codec.CBORReserved:
		msg = fmt.Sprintf("reserved additional information %d", e.N)
	case codec.CBORBreak:
		msg = "unexpected break"
	case codec.CBORIndefinite:
		msg = fmt.Sprintf("indefinite length is not allowed for major type %d", e.Major)
	case codec.CBORBadChunk:
		msg = "a chunk of an indefinite-length string must be a definite-length string of the same type"
	case codec.CBORBadSimple:
		msg = fmt.Sprintf("invalid simple value %d", e.N)
	case codec.CBORTooDeep:
		msg = fmt.Sprintf("nested deeper than %d levels", e.N)
	case codec.CBORTooLong:
		off, msg = e.End, fmt.Sprintf("length %d exceeds the %d bytes left", e.N, e.Left)
	case codec.CBORTooMany:
		what := "array of %d items"
		if e.Major == 5 {
			what = "map of %d pairs"
		}
		off, msg = e.End, fmt.Sprintf(what+" exceeds the %d bytes left", e.N, e.Left)
	default:
		msg = e.Error()
	}
	return &syntaxError{off, msg}
}

func (r *cborTree) value() (any, error) {
	h, err := r.Next()
	if err != nil {
		return nil, err
	}
	switch h.Major {
	case 0:
		if h.Arg > math.MaxInt64 {
			return outOfRange{strconv.FormatUint(h.Arg, 10)}, nil
		}
		return int64(h.Arg), nil
	case 1:
		if h.Arg > math.MaxInt64 {
			n := new(big.Int).SetUint64(h.Arg)
			return outOfRange{n.Neg(n).Sub(n, big.NewInt(1)).String()}, nil
		}
		return -1 - int64(h.Arg), nil
	case 2:
		if _, err := r.str(h); err != nil {
			return nil, err
		}
		return unsupported{"byte string"}, nil
	case 3:
		s, err := r.str(h)
		return string(s), err
	case 4, 5, 6:
		if err := r.Open(h); err != nil {
			return nil, err
		}
		var v any
		switch h.Major {
		case 4:
			v, err = r.array(h)
		case 5:
			v, err = r.mapValue(h)
		default:
			if _, err = r.value(); err == nil {
				v = unsupported{fmt.Sprintf("CBOR tag %d", h.Arg)}
			}
		}
		r.Close()
		return v, err
	}
	return r.simple(h), nil
}

// str reads a byte string (major 2) or text string (major 3), definite or in chunks.
func (r *cborTree) str(h codec.CBORHead) ([]byte, error) {
	if !h.Indefinite() {
		b, err := r.Take(h)
		if err != nil {
			return nil, err
		}
		return b, r.checkText(h.Major, b)
	}
	var buf []byte
	for !r.AtBreak() {
		c, err := r.Chunk(h.Major)
		if err != nil {
			return nil, err
		}
		if err := r.checkText(h.Major, c); err != nil {
			return nil, err
		}
		buf = append(buf, c...)
	}
	return buf, nil
}

// checkText checks that the content b, just read, of a text string (major 3) is UTF-8.
func (r *cborTree) checkText(major byte, b []byte) error {
	if major == 3 && !utf8.Valid(b) {
		return &syntaxError{r.Offset() - len(b), "text string is not valid UTF-8"}
	}
	return nil
}

func (r *cborTree) array(h codec.CBORHead) (any, error) {
	n, indef := h.Arg, h.Indefinite()
	arr := make([]any, 0, min(n, 1024))
	for i := uint64(0); indef || i < n; i++ {
		if indef && r.AtBreak() {
			break
		}
		v, err := r.value()
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	return arr, nil
}

func (r *cborTree) mapValue(h codec.CBORHead) (any, error) {
	n, indef := h.Arg, h.Indefinite()
	obj := make(object, 0, min(n, 1024))
	for i := uint64(0); indef || i < n; i++ {
		if indef && r.AtBreak() {
			break
		}
		k, err := r.value()
		if err != nil {
			return nil, err
		}
		v, err := r.value()
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

// simple reads major type 7, whose head the item reader checked: false, true, null, floats;
// everything else has no JSON equivalent.
func (r *cborTree) simple(h codec.CBORHead) any {
	switch info := h.Info; {
	case info == 20:
		return false
	case info == 21:
		return true
	case info == 22:
		return nil
	case info == 23:
		return unsupported{"undefined"}
	case info < 25:
		return unsupported{fmt.Sprintf("simple value %d", h.Arg)}
	}
	switch f := h.Float(); {
	case math.IsNaN(f):
		return unsupported{"NaN"}
	case math.IsInf(f, 0):
		return unsupported{"infinity"}
	default:
		return f
	}
}
