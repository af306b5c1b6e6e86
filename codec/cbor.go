package codec

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"sync"

	"github.com/fxamacker/cbor/v2"
	"github.com/x448/float16"
)

// cborCodec encodes any Go value as one CBOR data item (RFC 8949) in core deterministic
// encoding, so equal values give equal payloads whichever worker encoded them.
type cborCodec struct {
	em cbor.UserBufferEncMode
	dm cbor.DecMode
}

// theCBOR is the one CBOR codec: it has no per-pipe state, and its modes are immutable.
var theCBOR = mustCBOR()

func mustCBOR() *cborCodec {
	em, err := cbor.CoreDetEncOptions().UserBufferEncMode()
	if err != nil {
		panic(err)
	}
	dm, err := cbor.DecOptions{
		// The stream scanner allows MaxDepth; the decoder must accept what the scanner passes.
		MaxNestedLevels: MaxDepth,
		// A block of samples may well exceed the default 131072 elements; the real bound is the
		// payload's size.
		MaxArrayElements: math.MaxInt32,
		MaxMapPairs:      math.MaxInt32,
		// Values of type any nested in typed targets get int64 as DecodeAny does (a big.Int only
		// where int64 overflows) and lose unknown tags rather than becoming cbor.Tag.
		IntDec:               cbor.IntDecConvertSignedOrBigInt,
		BigIntDec:            cbor.BigIntDecodePointer,
		UnrecognizedTagToAny: cbor.UnrecognizedTagContentToAny,
		// The encoder does not check UTF-8 (a Go string may hold any bytes), so the decoder
		// must not either, or a string one Go job sends would fail at the next.
		UTF8: cbor.UTF8DecodeInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return &cborCodec{em: em, dm: dm}
}

func (c *cborCodec) Name() string { return CBOR }

// Zero is CBOR null: it decodes into every Go type as its zero value, where 0 fails for strings,
// lists and structs.
func (c *cborCodec) Zero() []byte { return []byte{0xf6} }

// AppendFrame: a CBOR data item delimits itself, so the frame is the payload.
func (c *cborCodec) AppendFrame(dst, payload []byte) []byte { return append(dst, payload...) }

// bufPool holds bytes.Buffers used only to wrap the caller's dst for MarshalToBuffer, so that
// encoding appends in place without allocating a Buffer per call.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Append encodes v. Scalars, strings and byte slices are encoded here (they are most blocks
// and the library's reflection costs more than the encoding); the output is byte for byte what
// the core deterministic EncMode gives, which the tests check.
func (c *cborCodec) Append(dst []byte, v any) ([]byte, error) {
	if out, ok := appendCBORFast(dst, v); ok {
		return out, nil
	}
	b := bufPool.Get().(*bytes.Buffer)
	*b = *bytes.NewBuffer(dst)
	err := c.em.MarshalToBuffer(v, b)
	out := b.Bytes()
	*b = bytes.Buffer{} // drop the reference to the caller's memory
	bufPool.Put(b)
	if err != nil {
		return dst, err
	}
	return out, nil
}

// appendCBORFast encodes the common scalar types; ok is false for everything else.
func appendCBORFast(dst []byte, v any) ([]byte, bool) {
	switch x := v.(type) {
	case nil:
		return append(dst, 0xf6), true
	case bool:
		if x {
			return append(dst, 0xf5), true
		}
		return append(dst, 0xf4), true
	case int:
		return appendCBORInt(dst, int64(x)), true
	case int64:
		return appendCBORInt(dst, x), true
	case int32:
		return appendCBORInt(dst, int64(x)), true
	case int16:
		return appendCBORInt(dst, int64(x)), true
	case int8:
		return appendCBORInt(dst, int64(x)), true
	case uint:
		return appendCBORHead(dst, 0, uint64(x)), true
	case uint64:
		return appendCBORHead(dst, 0, x), true
	case uint32:
		return appendCBORHead(dst, 0, uint64(x)), true
	case uint16:
		return appendCBORHead(dst, 0, uint64(x)), true
	case uint8:
		return appendCBORHead(dst, 0, uint64(x)), true
	case float64:
		return appendCBORFloat(dst, x), true
	case float32:
		return appendCBORFloat(dst, float64(x)), true
	case string:
		return append(appendCBORHead(dst, 3, uint64(len(x))), x...), true
	case []byte:
		if x == nil { // the library encodes a nil slice as null
			return append(dst, 0xf6), true
		}
		return append(appendCBORHead(dst, 2, uint64(len(x))), x...), true
	}
	return dst, false
}

func appendCBORInt(dst []byte, i int64) []byte {
	if i < 0 {
		return appendCBORHead(dst, 1, uint64(-(i + 1)))
	}
	return appendCBORHead(dst, 0, uint64(i))
}

// appendCBORHead appends the shortest head of major type major with argument arg.
func appendCBORHead(dst []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(dst, m|byte(arg))
	case arg <= math.MaxUint8:
		return append(dst, m|24, byte(arg))
	case arg <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(arg))
	case arg <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(arg))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), arg)
}

// appendCBORFloat appends f in the shortest of half, single and double precision that keeps
// its value, NaN as 0xf97e00 and infinities as half floats: the core deterministic rules.
func appendCBORFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, 0xf9, 0x7e, 0x00)
	case math.IsInf(f, 1):
		return append(dst, 0xf9, 0x7c, 0x00)
	case math.IsInf(f, -1):
		return append(dst, 0xf9, 0xfc, 0x00)
	}
	f32 := float32(f)
	if float64(f32) != f {
		return binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(f))
	}
	p := float16.PrecisionFromfloat32(f32)
	f16 := float16.Fromfloat32(f32)
	if p == float16.PrecisionExact || p == float16.PrecisionUnknown && f16.Float32() == f32 {
		return binary.BigEndian.AppendUint16(append(dst, 0xf9), f16.Bits())
	}
	return binary.BigEndian.AppendUint32(append(dst, 0xfa), math.Float32bits(f32))
}

// Decode decodes into the value ptr points to. Generic targets (*any, *[]any, *map[string]any)
// get DecodeAny's rules; the rest goes through the library.
func (c *cborCodec) Decode(payload []byte, ptr any) error {
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
	// Also the fallback for a generic target the payload does not fit: the library says why.
	return c.dm.Unmarshal(payload, ptr)
}

// DecodeAny decodes with this package's own decoder (cbor_any.go), because the library's
// options cannot give int64-unless-too-large and map[string]any-when-all-keys-are-text.
func (c *cborCodec) DecodeAny(payload []byte) (any, error) {
	return decodeCBORAny(payload)
}

// decoderFor decodes the commonest types straight from a one-head payload and falls back to
// the library for anything else (nulls, tags, conversions, errors).
func (c *cborCodec) decoderFor(t reflect.Type) Decoder {
	slow := reflectDecoder(c, t)
	switch t {
	case typeInt, typeInt64:
		return func(p []byte) (reflect.Value, error) {
			if i, ok := cborSmallInt(p); ok {
				if t == typeInt {
					return reflect.ValueOf(int(i)), nil
				}
				return reflect.ValueOf(i), nil
			}
			return slow(p)
		}
	case typeFloat64:
		return func(p []byte) (reflect.Value, error) {
			if f, ok := cborFloat(p); ok {
				return reflect.ValueOf(f), nil
			}
			return slow(p)
		}
	case typeString:
		return func(p []byte) (reflect.Value, error) {
			if s, ok := cborDefiniteString(p, 3); ok {
				return reflect.ValueOf(string(s)), nil
			}
			return slow(p)
		}
	case typeBytes:
		return func(p []byte) (reflect.Value, error) {
			if s, ok := cborDefiniteString(p, 2); ok {
				return reflect.ValueOf(bytes.Clone(s)), nil
			}
			return slow(p)
		}
	}
	return nil
}

// cborSmallInt reads a payload that is exactly one integer fitting int64. It and
// cborDefiniteString decode the head as the item reader does (cborHeadAt); a payload of one
// whole head, and content of exactly its length, breaks none of the reader's rules.
func cborSmallInt(p []byte) (int64, bool) {
	major, info, arg, n := cborHeadAt(p)
	if n == 0 || n != len(p) || major > 1 || info > 27 || arg > math.MaxInt64 {
		return 0, false
	}
	if major == 1 {
		return -1 - int64(arg), true
	}
	return int64(arg), true
}

// cborFloat reads a payload that is exactly one half, single or double float: its three
// shapes, matched whole, need no rule of the item reader.
func cborFloat(p []byte) (float64, bool) {
	switch {
	case len(p) == 3 && p[0] == 0xf9:
		return float64(float16.Frombits(binary.BigEndian.Uint16(p[1:])).Float32()), true
	case len(p) == 5 && p[0] == 0xfa:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(p[1:]))), true
	case len(p) == 9 && p[0] == 0xfb:
		return math.Float64frombits(binary.BigEndian.Uint64(p[1:])), true
	}
	return 0, false
}

// cborDefiniteString returns the content of a payload that is exactly one definite-length
// string of the given major type.
func cborDefiniteString(p []byte, major byte) ([]byte, bool) {
	m, info, arg, n := cborHeadAt(p)
	if n == 0 || m != major || info > 27 || uint64(len(p)-n) != arg {
		return nil, false
	}
	return p[n:], true
}

func (c *cborCodec) ReadFrame(r *bufio.Reader, dst []byte) ([]byte, error) {
	out, _, err := c.readFrame(r, dst, 0)
	return out, err
}

// readFrame scans one data item off the stream (cbor_scan.go), then checks it with the library,
// which knows every well-formedness rule the scanner does not need for finding the item's end.
func (c *cborCodec) readFrame(r *bufio.Reader, dst []byte, base int64) ([]byte, int64, error) {
	out, n, err := scanCBOR(r, dst, base)
	if err != nil {
		return dst, n, frameErr(CBOR, base, err)
	}
	if err := c.dm.Wellformed(out[len(dst):]); err != nil {
		return dst, n, &FrameError{Codec: CBOR, Offset: base, Err: fmt.Errorf("malformed CBOR item: %w", err)}
	}
	return out, n, nil
}
