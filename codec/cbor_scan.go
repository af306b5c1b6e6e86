package codec

import (
	"bufio"
	"fmt"
	"io"
	"slices"
)

// The CBOR stream scanner finds where one data item ends while reading it, so ReadFrame never
// reads past the item (the next bytes may be a block head or the next item). It follows only
// the structure — heads, lengths, nesting, breaks — and leaves the remaining well-formedness
// rules to the library's check of the complete item. It never trusts a declared length to
// allocate: string content is read in bounded chunks and every length is checked against
// MaxFrameSize first.

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
	depth int   // open arrays, maps and tags
}

// scanChunk bounds each read of string content, so memory grows with the bytes that really
// arrive rather than with a declared length.
const scanChunk = 64 << 10

// scanCBOR reads one data item from r and appends its bytes to dst. n is the number of bytes
// consumed, also on error. At a clean end of stream it returns io.EOF.
func scanCBOR(r *bufio.Reader, dst []byte, base int64) (out []byte, n int64, err error) {
	s := cborScanner{r: r, buf: dst, start: len(dst), base: base}
	err = s.item()
	n = int64(len(s.buf) - s.start)
	if err == io.EOF && n > 0 || err == io.ErrUnexpectedEOF {
		err = fmt.Errorf("%w: item truncated after %d bytes", io.ErrUnexpectedEOF, n)
	}
	return s.buf, n, err
}

// size is the number of bytes of the item read so far.
func (s *cborScanner) size() int { return len(s.buf) - s.start }

// at is the stream offset of the next byte.
func (s *cborScanner) at() int64 { return s.base + int64(s.size()) }

func (s *cborScanner) errorf(at int64, format string, args ...any) error {
	return fmt.Errorf(format+" at byte %d", append(args, at)...)
}

func (s *cborScanner) readByte() (byte, error) {
	c, err := s.r.ReadByte()
	if err != nil {
		return 0, err
	}
	s.buf = append(s.buf, c)
	return c, nil
}

// head reads one head: its major type, argument and whether it is indefinite (ai 31).
func (s *cborScanner) head() (major byte, arg uint64, indef bool, err error) {
	at := s.at()
	if s.size() >= MaxFrameSize {
		return 0, 0, false, s.errorf(at, "item larger than %d bytes", MaxFrameSize)
	}
	b, err := s.readByte()
	if err != nil {
		return 0, 0, false, err
	}
	major, ai := b>>5, b&0x1f
	switch {
	case ai < 24:
		return major, uint64(ai), false, nil
	case ai <= 27:
		for range 1 << (ai - 24) {
			c, err := s.readByte()
			if err != nil {
				return 0, 0, false, err
			}
			arg = arg<<8 | uint64(c)
		}
		return major, arg, false, nil
	case ai == 31:
		return major, 0, true, nil
	}
	return 0, 0, false, s.errorf(at, "reserved additional information %d", ai)
}

// item scans one complete data item. The stack of open levels lives in a small array, so the
// common shallow item allocates nothing beyond its bytes.
func (s *cborScanner) item() error {
	var levels [16]scanLevel
	stack := levels[:0]
	for {
		at := s.at()
		major, arg, indef, err := s.head()
		if err != nil {
			return err
		}
		if err := s.checkChunk(at, stack, major, indef); err != nil {
			return err
		}
		var done bool // the head completes an item: a leaf, an empty container or a break
		if stack, done, err = s.step(at, stack, major, arg, indef); err != nil {
			return err
		}
		if done {
			if stack = s.completed(stack); len(stack) == 0 {
				return nil
			}
		}
	}
}

// checkChunk enforces that inside an indefinite-length string every item up to the break is a
// definite-length string of the same major type.
func (s *cborScanner) checkChunk(at int64, stack []scanLevel, major byte, indef bool) error {
	top := len(stack) - 1
	if top < 0 || stack[top].str == 0 || major == 7 && indef {
		return nil
	}
	if major != stack[top].str || indef {
		return s.errorf(at, "chunk of an indefinite string is not a definite string of major type %d", stack[top].str)
	}
	return nil
}

// step handles one head: it reads string content, opens containers and closes indefinite ones
// at a break. done reports that the head completed an item.
func (s *cborScanner) step(at int64, stack []scanLevel, major byte, arg uint64, indef bool) ([]scanLevel, bool, error) {
	switch {
	case major == 7 && indef: // break
		top := len(stack) - 1
		if top < 0 || !stack[top].indef {
			return stack, false, s.errorf(at, "break outside an indefinite-length item")
		}
		if stack[top].str == 0 {
			s.depth--
		}
		return stack[:top], true, nil
	case indef && (major == 2 || major == 3):
		return append(stack, scanLevel{indef: true, str: major}), false, nil
	case indef && (major == 4 || major == 5):
		if err := s.push(at); err != nil {
			return stack, false, err
		}
		return append(stack, scanLevel{indef: true}), false, nil
	case indef:
		return stack, false, s.errorf(at, "indefinite length for major type %d", major)
	case major == 2 || major == 3:
		return stack, true, s.content(at, arg)
	case major == 4 || major == 5 || major == 6:
		n, err := s.count(at, major, arg)
		if err != nil || n == 0 {
			return stack, err == nil, err
		}
		if err := s.push(at); err != nil {
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
		s.depth--
	}
	return stack
}

// left is how many more bytes the item may have.
func (s *cborScanner) left() uint64 { return uint64(max(MaxFrameSize-s.size(), 0)) }

// push opens an array, map or tag, enforcing MaxDepth; completed and the break case close them.
func (s *cborScanner) push(at int64) error {
	if s.depth >= MaxDepth {
		return s.errorf(at, "nesting deeper than %d", MaxDepth)
	}
	s.depth++
	return nil
}

// count is the number of items a definite array, map or tag holds. Every item takes at least a
// byte, so a count beyond what MaxFrameSize leaves cannot be honest.
func (s *cborScanner) count(at int64, major byte, arg uint64) (uint64, error) {
	switch major {
	case 6:
		return 1, nil
	case 5:
		if arg > uint64(MaxFrameSize) {
			return 0, s.errorf(at, "map of %d pairs exceeds the item limit of %d bytes", arg, MaxFrameSize)
		}
		arg *= 2
	}
	if arg > s.left() {
		return 0, s.errorf(at, "%d elements exceed the item limit of %d bytes", arg, MaxFrameSize)
	}
	return arg, nil
}

// content copies n bytes of string content, in chunks.
func (s *cborScanner) content(at int64, n uint64) error {
	if n > s.left() {
		return s.errorf(at, "string of %d bytes exceeds the item limit of %d bytes", n, MaxFrameSize)
	}
	for n > 0 {
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
	return nil
}
