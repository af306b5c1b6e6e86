package codec

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/x448/float16"
)

// cborAny decodes one CBOR data item into generic Go values:
//
//	unsigned and negative integers  int64; uint64 above MaxInt64; *big.Int below MinInt64
//	byte strings                    []byte (a copy; indefinite strings concatenated)
//	text strings                    string (invalid UTF-8 kept as is, like the library's encoder)
//	arrays                          []any
//	maps                            map[string]any if every key is text, else map[any]any
//	                                (byte string keys as cbor.ByteString, as the library does)
//	tag 0, tag 1                    time.Time
//	tag 2, tag 3 (bignums)          as the integers above: int64, uint64, else *big.Int
//	other tags                      their content (the tag number is dropped)
//	false, true, null, undefined    false, true, nil, nil
//	other simple values             cbor.SimpleValue
//	floats of any precision         float64
//
// It checks every bound itself: payloads come from any NATS client, not only from the scanner.
type cborAny struct {
	data  []byte
	off   int
	depth int
}

func decodeCBORAny(p []byte) (any, error) {
	d := cborAny{data: p}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	if d.off != len(p) {
		return nil, fmt.Errorf("cbor: %d bytes of extra data after the item, at byte %d", len(p)-d.off, d.off)
	}
	return v, nil
}

func (d *cborAny) errorf(at int, format string, args ...any) error {
	return fmt.Errorf("cbor: "+format+" at byte %d", append(args, at)...)
}

func (d *cborAny) eof() error {
	return fmt.Errorf("cbor: %w: item truncated at byte %d", io.ErrUnexpectedEOF, len(d.data))
}

// head reads the head at d.off. indef reports additional information 31, which the caller
// validates for the major type.
func (d *cborAny) head() (major byte, arg uint64, indef bool, err error) {
	if d.off >= len(d.data) {
		return 0, 0, false, d.eof()
	}
	b := d.data[d.off]
	major, ai := b>>5, b&0x1f
	switch {
	case ai < 24:
		d.off++
		return major, uint64(ai), false, nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(d.data)-d.off-1 < n {
			return 0, 0, false, d.eof()
		}
		for _, c := range d.data[d.off+1 : d.off+1+n] {
			arg = arg<<8 | uint64(c)
		}
		d.off += 1 + n
		return major, arg, false, nil
	case ai == 31:
		d.off++
		return major, 0, true, nil
	}
	return 0, 0, false, d.errorf(d.off, "reserved additional information %d", ai)
}

// atBreak consumes a break byte if one is next.
func (d *cborAny) atBreak() (bool, error) {
	if d.off >= len(d.data) {
		return false, d.eof()
	}
	if d.data[d.off] == 0xff {
		d.off++
		return true, nil
	}
	return false, nil
}

func (d *cborAny) value() (any, error) {
	start := d.off
	major, arg, indef, err := d.head()
	if err != nil {
		return nil, err
	}
	if indef && (major < 2 || major == 6) {
		return nil, d.errorf(start, "indefinite length for major type %d", major)
	}
	switch major {
	case 0:
		return intValue(false, arg), nil
	case 1:
		return intValue(true, arg), nil
	case 2:
		b, copied, err := d.str(2, arg, indef)
		if err != nil || copied {
			return b, err
		}
		return append([]byte{}, b...), nil
	case 3:
		b, _, err := d.str(3, arg, indef)
		return string(b), err
	case 4, 5, 6:
		if d.depth++; d.depth > MaxDepth {
			return nil, d.errorf(start, "nesting deeper than %d", MaxDepth)
		}
		defer func() { d.depth-- }()
		switch major {
		case 4:
			return d.array(arg, indef)
		case 5:
			return d.mapValue(arg, indef)
		}
		return d.tag(start, arg)
	}
	return d.simple(start, arg, indef)
}

// intValue applies the integer rule: int64 where it fits, uint64 for large unsigned values,
// *big.Int for negative values below MinInt64.
func intValue(negative bool, arg uint64) any {
	switch {
	case arg <= math.MaxInt64 && negative:
		return -1 - int64(arg)
	case arg <= math.MaxInt64:
		return int64(arg)
	case !negative:
		return arg
	}
	n := new(big.Int).SetUint64(arg)
	return n.Neg(n.Add(n, big.NewInt(1)))
}

// str returns the content of a string whose head was read. copied reports that the result does
// not alias the payload (an indefinite string's chunks are joined in a new slice).
func (d *cborAny) str(major byte, arg uint64, indef bool) ([]byte, bool, error) {
	if !indef {
		b, err := d.take(arg)
		return b, false, err
	}
	var out []byte
	for {
		if end, err := d.atBreak(); end || err != nil {
			if out == nil {
				out = []byte{}
			}
			return out, true, err
		}
		at := d.off
		m, n, ind, err := d.head()
		if err != nil {
			return nil, false, err
		}
		if m != major || ind {
			return nil, false, d.errorf(at, "chunk of an indefinite string is not a definite string of major type %d", major)
		}
		b, err := d.take(n)
		if err != nil {
			return nil, false, err
		}
		out = append(out, b...)
	}
}

// take consumes n bytes of content.
func (d *cborAny) take(n uint64) ([]byte, error) {
	if n > uint64(len(d.data)-d.off) {
		return nil, fmt.Errorf("cbor: %w: string of %d bytes at byte %d has %d", io.ErrUnexpectedEOF, n, d.off, len(d.data)-d.off)
	}
	b := d.data[d.off : d.off+int(n)]
	d.off += int(n)
	return b, nil
}

// maxItems bounds a declared element count by the bytes left (each element takes at least
// one), so a hostile count cannot make us allocate more than the payload justifies.
func (d *cborAny) maxItems(n uint64, per uint64) error {
	if n > uint64(len(d.data)-d.off)/per {
		return fmt.Errorf("cbor: %w: %d elements declared at byte %d, %d bytes left", io.ErrUnexpectedEOF, n, d.off, len(d.data)-d.off)
	}
	return nil
}

func (d *cborAny) array(n uint64, indef bool) (any, error) {
	if indef {
		out := []any{}
		for {
			if end, err := d.atBreak(); end || err != nil {
				return out, err
			}
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	if err := d.maxItems(n, 1); err != nil {
		return nil, err
	}
	out := make([]any, n)
	for i := range out {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// mapValue builds a map[string]any and switches to map[any]any at the first key that is not
// text. A later duplicate key wins, as with the library's default.
func (d *cborAny) mapValue(n uint64, indef bool) (any, error) {
	if !indef {
		if err := d.maxItems(n, 2); err != nil {
			return nil, err
		}
	}
	texts := make(map[string]any, min(n, 64))
	var others map[any]any
	for i := uint64(0); indef || i < n; i++ {
		if indef {
			if end, err := d.atBreak(); err != nil {
				return nil, err
			} else if end {
				break
			}
		}
		at := d.off
		k, err := d.value()
		if err != nil {
			return nil, err
		}
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		if s, ok := k.(string); ok && others == nil {
			texts[s] = v
			continue
		}
		if b, ok := k.([]byte); ok {
			k = cbor.ByteString(b) // as the library does: []byte cannot be a map key
		}
		if !hashable(k) {
			return nil, d.errorf(at, "map key of type %T is not supported", k)
		}
		if others == nil {
			others = make(map[any]any, len(texts)+1)
			for ks, vs := range texts {
				others[ks] = vs
			}
		}
		others[k] = v
	}
	if others != nil {
		return others, nil
	}
	return texts, nil
}

// hashable reports whether a decoded key can be a Go map key: everything decodeCBORAny makes
// is, except arrays and maps.
func hashable(k any) bool {
	switch k.(type) {
	case []any, map[string]any, map[any]any:
		return false
	}
	return true
}

func (d *cborAny) tag(start int, num uint64) (any, error) {
	if err := d.checkTagContent(start, num); err != nil {
		return nil, err
	}
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	switch num {
	case 0:
		s, ok := v.(string)
		if !ok {
			return nil, d.errorf(start, "tag 0 (date/time) needs a text string, has %T", v)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return nil, d.errorf(start, "tag 0 (date/time): %v", err)
		}
		return t, nil
	case 1:
		return d.epochTime(start, v)
	case 2, 3:
		b, ok := v.([]byte)
		if !ok {
			return nil, d.errorf(start, "tag %d (bignum) needs a byte string, has %T", num, v)
		}
		return bignum(num == 3, b), nil
	}
	return v, nil
}

// checkTagContent applies RFC 8949's content types of tags 0 to 3 to the content's head, as the
// library does: a nested tag in between is an error, not something to unwrap.
func (d *cborAny) checkTagContent(start int, num uint64) error {
	if num > 3 {
		return nil
	}
	if d.off >= len(d.data) {
		return d.eof()
	}
	h := d.data[d.off]
	ok := false
	switch major := h >> 5; num {
	case 0:
		ok = major == 3
	case 1:
		ok = major <= 1 || h >= 0xf9 && h <= 0xfb
	default:
		ok = major == 2
	}
	if !ok {
		return d.errorf(start, "tag %d has content of the wrong type (head %#02x)", num, h)
	}
	return nil
}

// epochTime follows the library: NaN and infinities mean "no time" (RFC 8949 §3.4.2) and give
// the zero time.Time; seconds must fit int64.
func (d *cborAny) epochTime(start int, v any) (any, error) {
	switch x := v.(type) {
	case int64:
		return time.Unix(x, 0), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return time.Time{}, nil
		}
		sec, frac := math.Modf(x)
		if sec >= math.MaxInt64 || sec < math.MinInt64 {
			return nil, d.errorf(start, "tag 1 (epoch time) %v overflows int64", x)
		}
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	return nil, d.errorf(start, "tag 1 (epoch time) %v overflows int64", v)
}

// bignum turns tag 2/3 content into the same types plain integers get.
func bignum(negative bool, b []byte) any {
	n := new(big.Int).SetBytes(b)
	if n.IsUint64() {
		return intValue(negative, n.Uint64())
	}
	if negative {
		n.Neg(n.Add(n, big.NewInt(1)))
	}
	return n
}

var errBreak = errors.New("cbor: break outside an indefinite-length item")

func (d *cborAny) simple(start int, arg uint64, indef bool) (any, error) {
	if indef {
		return nil, fmt.Errorf("%w at byte %d", errBreak, start)
	}
	switch ai := d.data[start] & 0x1f; {
	case ai == 20:
		return false, nil
	case ai == 21:
		return true, nil
	case ai == 22, ai == 23:
		return nil, nil
	case ai < 24:
		return cbor.SimpleValue(ai), nil
	case ai == 24:
		if arg < 32 {
			return nil, d.errorf(start, "simple value %d in two bytes", arg)
		}
		return cbor.SimpleValue(arg), nil
	case ai == 25:
		return float64(float16.Frombits(uint16(arg)).Float32()), nil
	case ai == 26:
		return float64(math.Float32frombits(uint32(arg))), nil
	}
	return math.Float64frombits(arg), nil
}
