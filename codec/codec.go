// Package codec turns values into the bytes of a block and back, frames blocks on byte streams
// (for executable jobs) and defines the block wire format that travels on NATS.
//
// The package is pure: no NATS, no goroutines.
package codec

import (
	"bufio"
	"fmt"
	"reflect"
)

// Names of the codecs a pipe may use.
const (
	CBOR  = "cbor"
	JSON  = "json"
	Bytes = "bytes"
)

// Codec encodes the values of one pipe. Implementations are safe for concurrent use.
type Codec interface {
	// Name is the codec's name as written in a pipeline document.
	Name() string
	// Append appends the encoding of v to dst (the payload of one block, without framing).
	Append(dst []byte, v any) ([]byte, error)
	// Decode decodes one payload into the value ptr points to.
	Decode(payload []byte, ptr any) error
	// DecodeAny decodes one payload into a generic value: integers as int64 (uint64 only when
	// larger than the largest int64), other numbers as float64, text as string, byte strings as
	// []byte, arrays as []any, maps as map[string]any (map[any]any where a key is not text).
	DecodeAny(payload []byte) (any, error)
	// Zero is the payload of a dummy block in "zero" mode.
	Zero() []byte
	// ReadFrame reads one frame from a byte stream and appends its payload to dst. At a clean
	// end of stream (no byte of a new frame read) it returns io.EOF; a partial frame is
	// io.ErrUnexpectedEOF wrapped with the byte offset; malformed content is an error, never a
	// panic or a hang. It never reads past the frame. Errors are *FrameError with offsets
	// counted from the first byte this call read; a FrameReader gives offsets in the stream.
	ReadFrame(r *bufio.Reader, dst []byte) ([]byte, error)
	// AppendFrame appends the stream framing of one payload to dst.
	AppendFrame(dst, payload []byte) []byte
}

// Decoder decodes a payload into a new value of one type, for the Go job runtime, which learns
// the types a job asks for once (NewDecoder) and decodes every block into them.
type Decoder func(payload []byte) (reflect.Value, error)

// MaxFrameSize bounds one frame read from a stream: a CBOR data item or a JSON line. It exists so
// that a hostile or corrupt length cannot make a reader allocate gigabytes; a bytes codec's block
// size may not exceed it either. Set it before creating codecs and readers.
var MaxFrameSize = 64 << 20

// MaxDepth is the deepest nesting of CBOR arrays, maps and tags a reader or decoder accepts, so
// that hostile input cannot exhaust the stack.
const MaxDepth = 1024

// New returns the codec a pipe uses: CBOR, JSON or Bytes. blockSize is the size of every payload
// for Bytes (at least 1) and is ignored by the others.
func New(name string, blockSize int) (Codec, error) {
	switch name {
	case CBOR:
		return theCBOR, nil
	case JSON:
		return theJSON, nil
	case Bytes:
		return newBytes(blockSize)
	}
	return nil, fmt.Errorf("unknown codec %q: valid codecs are %s, %s and %s", name, CBOR, JSON, Bytes)
}
