package codec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The CBOR stream scanner finds where one data item ends while reading it, so ReadFrame never
// reads past the item (the next bytes may be a block head or the next item). It follows only
// the structure — heads, lengths, nesting, breaks — and leaves the remaining well-formedness
// rules to the library's check of the complete item. The CBORReader (cbor_reader.go) reads each
// head and applies the rules, with MaxFrameSize as the bytes the item may have.
//
// The item's bytes come from the reader's buffer as long as they are there: the scanner reads
// them in place, without consuming them, and takes them all at once at the end. From the first
// head that is not wholly buffered, or that breaks a rule, it goes on from the stream: it takes
// the bytes before that head, reads the head's bytes off the stream onto the item and has the
// reader read it there, then string content in bounded chunks once the reader checked its
// length. Either way the item reads the same, with the same errors after the same bytes; the
// buffer only saves the copying byte by byte. No declared length makes it allocate.

// scanLevel is one open container: an array, map or tag (remaining items, or indefinite) or an
// indefinite-length string (whose chunks must be definite strings of major type str).
type scanLevel struct {
	remaining uint64
	indef     bool
	str       byte // major type of an indefinite string, 0 for containers
}

type cborScanner struct {
	r     *bufio.Reader
	buf   []byte
	start int   // len(buf) when the item began
	base  int64 // stream offset of the item's first byte
	rd    CBORReader
	// buffered: rd.data is the unread part of r's buffer, where the item starts; otherwise it is
	// buf[start:], the item's bytes read so far.
	buffered bool
}

// scanChunk bounds each read of string content, so memory grows with the bytes that really
// arrive rather than with a declared length.
const scanChunk = 64 << 10

// errUnbuffered: the next head or string content of the item is not wholly in the buffer.
var errUnbuffered = errors.New("not buffered")

// scanCBOR reads one data item from r and appends its bytes to dst. n is the number of bytes
// consumed, also on error. At a clean end of stream it returns io.EOF.
func scanCBOR(r *bufio.Reader, dst []byte, base int64) (out []byte, n int64, err error) {
	var s cborScanner // set field by field: a copy of a composite literal stalls on this hot path
	s.r, s.buf, s.start, s.base = r, dst, len(dst), base
	s.rd.limit, s.rd.maxDepth, s.rd.lenientSimple = MaxFrameSize, MaxDepth, true
	if b, _ := r.Peek(r.Buffered()); len(b) > 0 {
		s.rd.data, s.buffered = b, true
	}
	if err = s.item(); s.buffered { // the whole item was in the buffer
		s.take(s.rd.off)
	}
	n = int64(len(s.buf) - s.start)
	if err == io.EOF && n > 0 || err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("%w: item truncated after %d bytes", io.ErrUnexpectedEOF, n)
	}
	return s.buf, n, err
}

// take consumes the first n buffered bytes onto the item.
func (s *cborScanner) take(n int) {
	s.buf = append(s.buf, s.rd.data[:n]...)
	_, _ = s.r.Discard(n) // n ≤ r.Buffered(): no error
}

// unbuffer goes on from the stream at the head at offset at: the bytes before it are the item's.
func (s *cborScanner) unbuffer(at int) {
	s.take(at)
	s.buffered = false
	s.rd.data, s.rd.off = s.buf[s.start:], at
}

// size is the number of bytes of the item read so far.
func (s *cborScanner) size() int { return len(s.buf) - s.start }

func (s *cborScanner) readByte() (byte, error) {
	c, err := s.r.ReadByte()
	if err != nil {
		return 0, err
	}
	s.buf = append(s.buf, c)
	return c, nil
}

// fill makes sure the bytes of the next head are there for the reader: buffered, or read off
// the stream onto the item.
func (s *cborScanner) fill() error {
	off := s.rd.off
	switch {
	case s.buffered && off < s.rd.limit && off < len(s.rd.data) && cborHeadLen(s.rd.data[off]) <= len(s.rd.data)-off:
		return nil
	case s.buffered:
		return errUnbuffered
	case off >= s.rd.limit:
		return fmt.Errorf("item larger than %d bytes at byte %d", MaxFrameSize, s.base+int64(off))
	}
	b, err := s.readByte()
	if err != nil {
		return err
	}
	for range cborHeadLen(b) - 1 {
		if _, err := s.readByte(); err != nil {
			return err
		}
	}
	s.rd.data = s.buf[s.start:]
	return nil
}

// item scans one complete data item. The stack of open levels lives in a small array, so the
// common shallow item allocates nothing beyond its bytes.
func (s *cborScanner) item() error {
	var levels [16]scanLevel
	stack := levels[:0]
	for {
		at := s.rd.off
		err := s.fill()
		top := len(stack) - 1
		switch {
		case err != nil:
		case top >= 0 && stack[top].indef && s.rd.AtBreak():
			if stack[top].str == 0 {
				s.rd.Close()
			}
			stack = stack[:top]
		default:
			var done bool // the head completes an item: a leaf or an empty container
			if stack, done, err = s.step(stack); err == nil && !done {
				continue
			}
		}
		switch {
		case err != nil && s.buffered:
			s.unbuffer(at) // and read the head again from the stream
			continue
		case err != nil:
			return s.wordErr(err)
		}
		if stack = s.completed(stack); len(stack) == 0 {
			return nil
		}
	}
}

// step handles one head that is not a break: it reads string content and opens containers.
// done reports that the head completed an item.
func (s *cborScanner) step(stack []scanLevel) ([]scanLevel, bool, error) {
	if top := len(stack) - 1; top >= 0 && stack[top].str != 0 {
		h, err := s.rd.chunkHead(stack[top].str)
		if err != nil {
			return stack, false, err
		}
		return stack, true, s.content(h)
	}
	h, err := s.rd.Next()
	if err != nil {
		return stack, false, err
	}
	switch {
	case h.Indefinite() && (h.Major == 2 || h.Major == 3):
		return append(stack, scanLevel{indef: true, str: h.Major}), false, nil
	case h.Indefinite(): // an array or a map: the reader refuses the others
		if err := s.rd.enter(h); err != nil {
			return stack, false, err
		}
		return append(stack, scanLevel{indef: true}), false, nil
	case h.Major == 2 || h.Major == 3:
		return stack, true, s.content(h)
	case h.Major == 4 || h.Major == 5 || h.Major == 6:
		// The count first: an empty container opens nothing (the library's check of the whole
		// item still counts it in the nesting).
		n, err := s.rd.count(h)
		if err != nil || n == 0 {
			return stack, err == nil, err
		}
		if err := s.rd.enter(h); err != nil {
			return stack, false, err
		}
		return append(stack, scanLevel{remaining: n}), false, nil
	}
	return stack, true, nil // integers, simple values, floats
}

// completed accounts for one finished item in the innermost open container and closes every
// definite container this completes.
func (s *cborScanner) completed(stack []scanLevel) []scanLevel {
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		if top.indef {
			return stack
		}
		if top.remaining--; top.remaining > 0 {
			return stack
		}
		stack = stack[:len(stack)-1]
		s.rd.Close()
	}
	return stack
}

// content takes the content of the string whose head h was read, once the reader found that
// its length fits the item: in place if it is buffered, else off the stream in chunks.
func (s *cborScanner) content(h CBORHead) error {
	if err := s.rd.fits(h); err != nil {
		return err
	}
	if s.buffered {
		if h.Arg > uint64(len(s.rd.data)-s.rd.off) {
			return errUnbuffered
		}
		s.rd.off += int(h.Arg)
		return nil
	}
	for n := h.Arg; n > 0; {
		chunk := int(min(n, scanChunk))
		l := len(s.buf)
		s.buf = slices.Grow(s.buf, chunk)[:l+chunk]
		m, err := io.ReadFull(s.r, s.buf[l:])
		s.buf = s.buf[:l+m]
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		n -= uint64(chunk)
	}
	s.rd.off = s.size()
	return nil
}

// wordErr words a rule the reader found broken, at its offset in the stream; other errors (of
// the stream) pass.
func (s *cborScanner) wordErr(err error) error {
	e, ok := err.(*CBORError)
	if !ok {
		return err
	}
	at := s.base + int64(e.Off)
	switch e.Rule {
	case CBORReserved:
		return fmt.Errorf("reserved additional information %d at byte %d", e.N, at)
	case CBORBreak:
		return fmt.Errorf("break outside an indefinite-length item at byte %d", at)
	case CBORIndefinite:
		return fmt.Errorf("indefinite length for major type %d at byte %d", e.Major, at)
	case CBORBadChunk:
		return fmt.Errorf("chunk of an indefinite string is not a definite string of major type %d at byte %d", e.Major, at)
	case CBORTooDeep:
		return fmt.Errorf("nesting deeper than %d at byte %d", e.N, at)
	case CBORTooLong:
		return fmt.Errorf("string of %d bytes exceeds the item limit of %d bytes at byte %d", e.N, MaxFrameSize, at)
	case CBORTooMany:
		elements := e.N
		if e.Major == 5 {
			if e.N > uint64(MaxFrameSize) {
				return fmt.Errorf("map of %d pairs exceeds the item limit of %d bytes at byte %d", e.N, MaxFrameSize, at)
			}
			elements *= 2
		}
		return fmt.Errorf("%d elements exceed the item limit of %d bytes at byte %d", elements, MaxFrameSize, at)
	}
	return err
}
