package codec

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// FrameError is a malformed or truncated frame (or block head) on a stream. Offset is the byte
// offset, from the start of the stream, of the frame's first byte; callers add job and pipe.
type FrameError struct {
	Codec  string
	Offset int64
	Err    error
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("%s frame at byte %d: %v", e.Codec, e.Offset, e.Err)
}

func (e *FrameError) Unwrap() error { return e.Err }

// streamCodec is implemented by this package's codecs: it reads one frame knowing the stream
// offset base of its first byte, so errors name absolute offsets, and reports how many bytes it
// consumed (also on error), so a FrameReader can keep its offset exact.
type streamCodec interface {
	readFrame(r *bufio.Reader, dst []byte, base int64) (out []byte, n int64, err error)
}

// FrameReader reads the frames of one stream (the output of an executable job) and keeps track
// of the byte offset, so that every error says where in the stream it happened.
type FrameReader struct {
	c  Codec
	r  *bufio.Reader
	sc streamCodec // c's offset-aware reader, nil for codecs from elsewhere
	// off is the number of bytes consumed from r so far.
	off int64
	// headRead is set between ReadHead and Next: a stream that ends there is truncated.
	headRead bool
}

// NewFrameReader returns a reader of c's frames from r. It reuses r if it is a *bufio.Reader.
func NewFrameReader(c Codec, r io.Reader) *FrameReader {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	sc, _ := c.(streamCodec)
	return &FrameReader{c: c, r: br, sc: sc}
}

// Offset is the stream offset of the next byte to read.
func (f *FrameReader) Offset() int64 { return f.off }

// Peek returns the bytes read from the stream and not consumed yet, waiting for one at least
// (as the next read would); nil at the end of the stream or on an error, which the next read
// reports. The bytes are valid until the next read.
func (f *FrameReader) Peek() []byte {
	if _, err := f.r.Peek(1); err != nil {
		return nil
	}
	b, _ := f.r.Peek(f.r.Buffered())
	return b
}

// Next reads one frame and appends its payload to dst. It returns io.EOF at a clean end of the
// stream; every other error is a *FrameError naming the frame's offset.
func (f *FrameReader) Next(dst []byte) ([]byte, error) {
	headRead := f.headRead
	f.headRead = false
	start := f.off
	var out []byte
	var err error
	if f.sc != nil {
		var n int64
		out, n, err = f.sc.readFrame(f.r, dst, f.off)
		f.off += n
	} else {
		// A codec from elsewhere cannot report what it consumed; count the payload.
		out, err = f.c.ReadFrame(f.r, dst)
		f.off += int64(len(out) - len(dst))
		if err != nil && err != io.EOF {
			err = &FrameError{Codec: f.c.Name(), Offset: start, Err: err}
		}
	}
	if err == io.EOF && headRead {
		err = &FrameError{Codec: f.c.Name(), Offset: start,
			Err: fmt.Errorf("%w: stream ends after a block head", io.ErrUnexpectedEOF)}
	}
	return out, err
}

// ReadHead reads the head of the next block (size bytes, big-endian) on a stream that carries
// heads. It returns io.EOF at a clean end of the stream.
func (f *FrameReader) ReadHead(size int) (uint32, error) {
	if size < 1 || size > MaxHeadSize {
		return 0, fmt.Errorf("head size %d out of range 1..%d", size, MaxHeadSize)
	}
	h, err := f.readBE(size, "head")
	return uint32(h), err
}

// SQNSize is the size of the SQN that precedes each block on a stream with SQNs.
const SQNSize = 8

// ReadSQN reads the 8-byte big-endian SQN of the next block on a stream that carries SQNs
// (before the head, if any). It returns io.EOF at a clean end of the stream.
func (f *FrameReader) ReadSQN() (uint64, error) { return f.readBE(SQNSize, "SQN") }

// readBE reads a big-endian number of size bytes that precedes a frame; what names it in errors.
func (f *FrameReader) readBE(size int, what string) (uint64, error) {
	var h uint64
	for i := range size {
		c, err := f.r.ReadByte()
		if err != nil {
			if err == io.EOF && i == 0 && !f.headRead {
				return 0, io.EOF
			}
			if err == io.EOF {
				err = fmt.Errorf("%w: %s has %d of %d bytes", io.ErrUnexpectedEOF, what, i, size)
			}
			start := f.off - int64(i)
			return 0, &FrameError{Codec: f.c.Name(), Offset: start, Err: err}
		}
		f.off++
		h = h<<8 | uint64(c)
	}
	f.headRead = true
	return h, nil
}

// AppendSQN appends a block's SQN (8 bytes, big-endian), as it precedes a frame on a stream
// with SQNs.
func AppendSQN(dst []byte, sqn uint64) []byte { return binary.BigEndian.AppendUint64(dst, sqn) }

// AppendHead appends a block head of size bytes (big-endian), as it precedes a frame on a stream.
func AppendHead(dst []byte, head uint32, size int) []byte {
	for i := size - 1; i >= 0; i-- {
		dst = append(dst, byte(head>>(8*uint(i))))
	}
	return dst
}

// frameErr wraps err, unless it is a clean io.EOF, as a FrameError at offset base.
func frameErr(codec string, base int64, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	var fe *FrameError
	if errors.As(err, &fe) {
		return err
	}
	return &FrameError{Codec: codec, Offset: base, Err: err}
}
