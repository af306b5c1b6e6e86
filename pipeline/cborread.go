package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"unicode/utf8"
)

// The CBOR reader: reads the items of a CBOR document (RFC 8949) into the generic tree
// (tree.go), reporting malformed input by byte offset. It is a self-contained decoder of its own,
// separate from the JSON reader and the builder, with which it shares only the tree.

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
