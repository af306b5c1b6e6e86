package codec

import (
	"fmt"
	"math"
	"math/big"
	"time"

	"github.com/fxamacker/cbor/v2"
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
// Its heads come from the CBORReader (cbor_reader.go), which checks every rule and bound: payloads
// come from any NATS client, not only from the scanner.
type cborAny struct {
	CBORReader
}

func decodeCBORAny(p []byte) (any, error) {
	var d cborAny // set field by field: a copy of a composite literal stalls on this hot path
	d.data, d.limit, d.maxDepth = p, len(p), MaxDepth
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

func (d *cborAny) value() (any, error) {
	h, err := d.Next()
	if err != nil {
		return nil, err
	}
	switch h.Major {
	case 0:
		return intValue(false, h.Arg), nil
	case 1:
		return intValue(true, h.Arg), nil
	case 2:
		b, copied, err := d.str(h)
		if err != nil || copied {
			return b, err
		}
		return append([]byte{}, b...), nil
	case 3:
		b, _, err := d.str(h)
		return string(b), err
	case 4, 5, 6:
		if err := d.Open(h); err != nil {
			return nil, err
		}
		var v any
		switch h.Major {
		case 4:
			v, err = d.array(h)
		case 5:
			v, err = d.mapValue(h)
		default:
			v, err = d.tag(h.Off, h.Arg)
		}
		d.Close()
		return v, err
	}
	if h.Info > 24 {
		return h.Float(), nil
	}
	return d.simple(h), nil
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

// str returns the content of a string whose head h was read. copied reports that the result does
// not alias the payload (an indefinite string's chunks are joined in a new slice).
func (d *cborAny) str(h CBORHead) ([]byte, bool, error) {
	if !h.Indefinite() {
		b, err := d.Take(h)
		return b, false, err
	}
	out := []byte{}
	for !d.AtBreak() {
		b, err := d.Chunk(h.Major)
		if err != nil {
			return nil, false, err
		}
		out = append(out, b...)
	}
	return out, true, nil
}

// array reads the items of the array whose head h was opened.
func (d *cborAny) array(h CBORHead) (any, error) {
	if h.Indefinite() {
		out := []any{}
		for !d.AtBreak() {
			v, err := d.value()
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	}
	out := make([]any, h.Arg)
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
func (d *cborAny) mapValue(h CBORHead) (any, error) {
	n, indef := h.Arg, h.Indefinite()
	texts := make(map[string]any, min(n, 64))
	var others map[any]any
	for i := uint64(0); indef || i < n; i++ {
		if indef && d.AtBreak() {
			break
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
	h, err := d.peek()
	if err != nil {
		return err
	}
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

// simple reads a simple value of major type 7, whose head h the reader checked: false, true,
// null, undefined and the others.
func (d *cborAny) simple(h CBORHead) any {
	switch h.Info {
	case 20:
		return false
	case 21:
		return true
	case 22, 23:
		return nil
	}
	return cbor.SimpleValue(h.Arg)
}
