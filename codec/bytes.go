package codec

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"reflect"
	"slices"
)

// bytesCodec carries raw blocks of a fixed size: the payload is the value's bytes, and on a
// stream a frame is exactly size bytes with no framing at all.
type bytesCodec struct {
	size int
	zero []byte
}

func newBytes(blockSize int) (*bytesCodec, error) {
	if blockSize < 1 {
		return nil, fmt.Errorf("codec %s needs a block_size of at least 1, has %d", Bytes, blockSize)
	}
	if blockSize > MaxFrameSize {
		return nil, fmt.Errorf("codec %s: block_size %d exceeds the limit of %d bytes", Bytes, blockSize, MaxFrameSize)
	}
	return &bytesCodec{size: blockSize, zero: make([]byte, blockSize)}, nil
}

func (c *bytesCodec) Name() string { return Bytes }

func (c *bytesCodec) sizeErr(what string, n int) error {
	return fmt.Errorf("codec %s: %s has %d bytes, the block size is %d", Bytes, what, n, c.size)
}

// Append accepts []byte, string and byte arrays (also of named types) of exactly the block size.
func (c *bytesCodec) Append(dst []byte, v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		if len(b) != c.size {
			return dst, c.sizeErr("value", len(b))
		}
		return append(dst, b...), nil
	case string:
		if len(b) != c.size {
			return dst, c.sizeErr("value", len(b))
		}
		return append(dst, b...), nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && rv.Type().Elem().Kind() == reflect.Array && !rv.IsNil() {
		rv = rv.Elem()
	}
	if !isByteKind(rv) {
		return dst, fmt.Errorf("codec %s: cannot encode %T: need []byte, string or [%d]byte", Bytes, v, c.size)
	}
	if rv.Len() != c.size {
		return dst, c.sizeErr("value", rv.Len())
	}
	n := len(dst)
	dst = slices.Grow(dst, c.size)[:n+c.size]
	reflect.Copy(reflect.ValueOf(dst[n:]), rv)
	return dst, nil
}

// isByteKind reports whether v is a byte slice, byte array or string, named or not.
func isByteKind(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.String:
		return true
	case reflect.Slice, reflect.Array:
		return v.Type().Elem().Kind() == reflect.Uint8
	}
	return false
}

// Decode copies the payload (it aliases a message buffer) into a *[]byte, *string, *[N]byte or
// *any, named types included.
func (c *bytesCodec) Decode(payload []byte, ptr any) error {
	if len(payload) != c.size {
		return c.sizeErr("payload", len(payload))
	}
	switch p := ptr.(type) {
	case *[]byte:
		*p = bytes.Clone(payload)
		return nil
	case *string:
		*p = string(payload)
		return nil
	case *any:
		*p = bytes.Clone(payload)
		return nil
	}
	rv := reflect.ValueOf(ptr)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || !isByteKind(rv.Elem()) {
		return fmt.Errorf("codec %s: cannot decode into %T: need *[]byte, *string or *[%d]byte", Bytes, ptr, c.size)
	}
	e := rv.Elem()
	switch e.Kind() {
	case reflect.String:
		e.SetString(string(payload))
	case reflect.Slice:
		e.SetBytes(bytes.Clone(payload))
	default:
		if e.Len() != c.size {
			return fmt.Errorf("codec %s: cannot decode into %s: the block size is %d", Bytes, e.Type(), c.size)
		}
		reflect.Copy(e, reflect.ValueOf(payload))
	}
	return nil
}

// DecodeAny returns a copy of the payload, which aliases a message buffer.
func (c *bytesCodec) DecodeAny(payload []byte) (any, error) {
	if len(payload) != c.size {
		return nil, c.sizeErr("payload", len(payload))
	}
	return bytes.Clone(payload), nil
}

// Zero is size zero bytes (SPEC: a dummy in zero mode carries BLOCK_SIZE zero bytes). Callers
// must not modify it.
func (c *bytesCodec) Zero() []byte { return c.zero }

func (c *bytesCodec) AppendFrame(dst, payload []byte) []byte { return append(dst, payload...) }

func (c *bytesCodec) ReadFrame(r *bufio.Reader, dst []byte) ([]byte, error) {
	out, _, err := c.readFrame(r, dst, 0)
	return out, err
}

func (c *bytesCodec) readFrame(r *bufio.Reader, dst []byte, base int64) ([]byte, int64, error) {
	n := len(dst)
	buf := slices.Grow(dst, c.size)[:n+c.size]
	m, err := io.ReadFull(r, buf[n:])
	switch {
	case err == nil:
		return buf, int64(m), nil
	case err == io.EOF:
		return dst, 0, io.EOF
	case err == io.ErrUnexpectedEOF:
		err = fmt.Errorf("%w: block has %d of %d bytes", io.ErrUnexpectedEOF, m, c.size)
	}
	return dst, int64(m), &FrameError{Codec: Bytes, Offset: base, Err: err}
}

// decoderFor returns fast decoders for the Go types a bytes pipe can carry; NewDecoder has
// already checked that t is one of them.
func (c *bytesCodec) decoderFor(t reflect.Type) Decoder {
	switch t {
	case typeBytes:
		return func(p []byte) (reflect.Value, error) {
			if len(p) != c.size {
				return reflect.Value{}, c.sizeErr("payload", len(p))
			}
			return reflect.ValueOf(bytes.Clone(p)), nil
		}
	case typeString:
		return func(p []byte) (reflect.Value, error) {
			if len(p) != c.size {
				return reflect.Value{}, c.sizeErr("payload", len(p))
			}
			return reflect.ValueOf(string(p)), nil
		}
	}
	return nil
}

// checkType reports whether a bytes pipe can be decoded into t.
func (c *bytesCodec) checkType(t reflect.Type) error {
	switch t.Kind() {
	case reflect.String:
		return nil
	case reflect.Interface:
		if t.NumMethod() == 0 {
			return nil
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			if t.Len() != c.size {
				return fmt.Errorf("codec %s: cannot decode %d-byte blocks into %s", Bytes, c.size, t)
			}
			return nil
		}
	}
	return fmt.Errorf("codec %s: cannot decode into %s: need []byte, string, [%d]byte or any", Bytes, t, c.size)
}
