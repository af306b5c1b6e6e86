package codec

import (
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/x448/float16"
)

// The one CBOR item reader. Every walker of CBOR items — the generic decoder (cbor_any.go), the
// stream scanner (cbor_scan.go), the one-head fast paths (cbor.go) and the pipeline document's
// reader (pipeline/cborread.go) — reads heads through it, so RFC 8949's structure rules and this
// package's bounds are written once:
//
//   - a head lies wholly within the input, and additional information 28 to 30 is reserved;
//   - a break (0xff) only ends an indefinite-length item (walkers take it with AtBreak first,
//     so Next refuses it);
//   - indefinite lengths only for strings, arrays and maps;
//   - an indefinite string's chunks are definite strings of its major type;
//   - a simple value written in two bytes is at least 32;
//   - arrays, maps and tags nest at most the reader's depth;
//   - a string's length and an array's or map's count fit the bytes left (every element takes
//     one byte at least), so that no declared length makes a walker allocate more than the input
//     justifies.
//
// What the rules mean for a walker's values, and how its errors are worded, stays the walker's:
// a broken rule is a *CBORError that says which rule, where and with what numbers.

// CBORHead is the head of one CBOR data item (RFC 8949 §3).
type CBORHead struct {
	Off   int    // offset of the head's first byte
	Major byte   // major type, 0 to 7
	Info  byte   // additional information: the low five bits of the first byte
	Arg   uint64 // the argument (0 for an indefinite length)
}

// Indefinite reports additional information 31: an indefinite length.
func (h CBORHead) Indefinite() bool { return h.Info == 31 }

// Float is the value of a float head (major type 7, additional information 25, 26 or 27: half,
// single or double precision).
func (h CBORHead) Float() float64 {
	switch h.Info {
	case 25:
		return float64(float16.Frombits(uint16(h.Arg)).Float32())
	case 26:
		return float64(math.Float32frombits(uint32(h.Arg)))
	}
	return math.Float64frombits(h.Arg)
}

// CBORRule names the rule a CBORError reports broken.
type CBORRule uint8

const (
	CBORTruncated  CBORRule = iota + 1 // the input ends before an item does; Off is its length
	CBORReserved                       // additional information 28 to 30 (N)
	CBORBreak                          // a break outside an indefinite-length item
	CBORIndefinite                     // an indefinite length for major type 0, 1 or 6
	CBORBadChunk                       // a chunk that is not a definite string of the indefinite string's major type (Major)
	CBORBadSimple                      // simple value N, below 32, in two bytes
	CBORTooDeep                        // a container nested deeper than N levels
	CBORTooLong                        // a string of N bytes with Left bytes left
	CBORTooMany                        // an array of N items or a map of N pairs (Major) with Left bytes left
)

// CBORError is a rule broken by the input of a CBORReader. Its text is the codec's (what
// DecodeAny returns); other walkers word it their way from the fields.
type CBORError struct {
	Rule  CBORRule
	Off   int    // offset of the head that breaks the rule; for CBORTruncated, the input's length
	End   int    // offset just after that head, where a string's content or a container's items start
	Major byte   // the head's major type
	N     uint64 // the number the rule is about (see CBORRule)
	Left  int    // bytes left after the head (CBORTooLong, CBORTooMany)
}

var errBreak = errors.New("cbor: break outside an indefinite-length item")

func (e *CBORError) Error() string {
	switch e.Rule {
	case CBORTruncated:
		return fmt.Sprintf("cbor: %v: item truncated at byte %d", io.ErrUnexpectedEOF, e.Off)
	case CBORReserved:
		return fmt.Sprintf("cbor: reserved additional information %d at byte %d", e.N, e.Off)
	case CBORBreak:
		return fmt.Sprintf("%v at byte %d", errBreak, e.Off)
	case CBORIndefinite:
		return fmt.Sprintf("cbor: indefinite length for major type %d at byte %d", e.Major, e.Off)
	case CBORBadChunk:
		return fmt.Sprintf("cbor: chunk of an indefinite string is not a definite string of major type %d at byte %d", e.Major, e.Off)
	case CBORBadSimple:
		return fmt.Sprintf("cbor: simple value %d in two bytes at byte %d", e.N, e.Off)
	case CBORTooDeep:
		return fmt.Sprintf("cbor: nesting deeper than %d at byte %d", e.N, e.Off)
	case CBORTooLong:
		return fmt.Sprintf("cbor: %v: string of %d bytes at byte %d has %d", io.ErrUnexpectedEOF, e.N, e.End, e.Left)
	case CBORTooMany:
		return fmt.Sprintf("cbor: %v: %d elements declared at byte %d, %d bytes left", io.ErrUnexpectedEOF, e.N, e.End, e.Left)
	}
	return fmt.Sprintf("cbor: rule %d broken at byte %d", e.Rule, e.Off)
}

// Unwrap gives io.ErrUnexpectedEOF for input that ends, or declares more than it has, as the
// codec's errors always have.
func (e *CBORError) Unwrap() error {
	switch e.Rule {
	case CBORTruncated, CBORTooLong, CBORTooMany:
		return io.ErrUnexpectedEOF
	case CBORBreak:
		return errBreak
	}
	return nil
}

// CBORReader reads the heads of one CBOR data item from a byte slice, enforcing the rules above.
// The zero value is not usable; make one with NewCBORReader.
type CBORReader struct {
	data     []byte // the input: a whole payload, or on a stream the item's bytes read so far
	off      int    // offset of the next head
	limit    int    // the most bytes the item may have: len(data), or MaxFrameSize on a stream
	depth    int    // open arrays, maps and tags (Open, Close)
	maxDepth int
	// lenientSimple leaves two-byte simple values below 32 to someone else: the stream scanner
	// checks structure only and lets the library's check of the whole item word that error.
	lenientSimple bool
}

// NewCBORReader returns a reader of data whose arrays, maps and tags nest at most maxDepth deep.
func NewCBORReader(data []byte, maxDepth int) CBORReader {
	return CBORReader{data: data, limit: len(data), maxDepth: maxDepth}
}

// Offset is the offset of the next head: after a whole item, the item's length.
func (r *CBORReader) Offset() int { return r.off }

// left is how many more bytes the item may have after the offset.
func (r *CBORReader) left() int { return max(r.limit-r.off, 0) }

// cborHeadAt decodes the head at the start of p: major type, additional information, argument
// and the head's length n, which is 0 when p ends inside the head. Reserved additional
// information (28 to 30) and 31 come back as they are, with argument 0 and n 1.
func cborHeadAt(p []byte) (major, info byte, arg uint64, n int) {
	if len(p) == 0 {
		return 0, 0, 0, 0
	}
	major, info = p[0]>>5, p[0]&0x1f
	if info < 24 {
		return major, info, uint64(info), 1
	}
	if n = 1; info < 28 {
		n += 1 << (info - 24)
	}
	if len(p) < n {
		return major, info, 0, 0
	}
	for _, c := range p[1:n] {
		arg = arg<<8 | uint64(c)
	}
	return major, info, arg, n
}

// cborHeadLen is the length of the head whose first byte is b (1 for reserved information).
func cborHeadLen(b byte) int {
	if info := b & 0x1f; info >= 24 && info <= 27 {
		return 1 + 1<<(info-24)
	}
	return 1
}

// Next reads the head of the next item: an item, not a break (see AtBreak) nor a chunk of an
// indefinite string (see Chunk).
func (r *CBORReader) Next() (CBORHead, error) { return r.head(0) }

// head reads the head at the offset and applies the rules: those of any head (complete, not
// reserved information), then those of an item's head (chunk 0) or those of a chunk of an
// indefinite string of major type chunk. It is the one decoder of heads from the input. On an
// error the head is the zero CBORHead.
func (r *CBORReader) head(chunk byte) (CBORHead, error) {
	off := r.off
	major, info, arg, n := cborHeadAt(r.data[off:])
	if n == 0 || info > 27 || chunk != 0 || major == 7 && info == 24 {
		// Only these heads may break a rule: a truncated one, reserved information, a break,
		// an indefinite length, any chunk, a simple value in two bytes.
		if err := r.check(chunk, CBORHead{off, major, info, arg}, n); err != nil {
			return CBORHead{}, err
		}
	}
	r.off = off + n
	return CBORHead{off, major, info, arg}, nil
}

// check applies the rules to the head h of n bytes at the offset.
func (r *CBORReader) check(chunk byte, h CBORHead, n int) error {
	switch {
	case n == 0:
		return r.fail(CBORTruncated, CBORHead{Off: len(r.data)})
	case h.Info > 27 && h.Info < 31:
		return r.fail(CBORReserved, h)
	}
	r.off = h.Off + n // the End of the errors below; head sets it anyway
	switch {
	case chunk != 0:
		if h.Major != chunk || h.Info == 31 {
			return r.fail(CBORBadChunk, CBORHead{Off: h.Off, Major: chunk})
		}
	case h.Info == 31 && h.Major == 7:
		return r.fail(CBORBreak, h)
	case h.Info == 31 && (h.Major < 2 || h.Major == 6):
		return r.fail(CBORIndefinite, h)
	case h.Major == 7 && h.Info == 24 && h.Arg < 32 && !r.lenientSimple:
		return r.fail(CBORBadSimple, h)
	}
	return nil
}

// AtBreak consumes the break that ends an indefinite-length item, if it is next.
func (r *CBORReader) AtBreak() bool {
	if r.off < len(r.data) && r.data[r.off] == 0xff {
		r.off++
		return true
	}
	return false
}

// peek returns the next byte without consuming it; at the end of the input, the item is
// truncated.
func (r *CBORReader) peek() (byte, error) {
	if r.off < len(r.data) {
		return r.data[r.off], nil
	}
	return 0, r.fail(CBORTruncated, CBORHead{Off: len(r.data)})
}

// Take returns the content of the definite-length string whose head h was just read. It
// aliases the input.
func (r *CBORReader) Take(h CBORHead) ([]byte, error) {
	if err := r.fits(h); err != nil {
		return nil, err
	}
	r.off += int(h.Arg)
	return r.data[r.off-int(h.Arg) : r.off], nil
}

// Chunk reads the next chunk of an indefinite string of major type major (after AtBreak said
// the string goes on) and returns its content, which aliases the input.
func (r *CBORReader) Chunk(major byte) ([]byte, error) {
	h, err := r.chunkHead(major)
	if err != nil {
		return nil, err
	}
	return r.Take(h)
}

// chunkHead reads the head of a chunk of an indefinite string of major type major.
func (r *CBORReader) chunkHead(major byte) (CBORHead, error) { return r.head(major) }

// fits checks the length of the string whose head h was just read against the bytes left.
func (r *CBORReader) fits(h CBORHead) error {
	if h.Arg <= uint64(r.left()) {
		return nil
	}
	return r.fail(CBORTooLong, h)
}

// Open enters the array, map or tag whose head h was just read: it checks the depth, then the
// count of a definite array or map against the bytes left. Close leaves it.
func (r *CBORReader) Open(h CBORHead) error {
	if err := r.enter(h); err != nil {
		return err
	}
	_, err := r.count(h)
	return err
}

// Close leaves the array, map or tag last opened.
func (r *CBORReader) Close() { r.depth-- }

// enter counts one more open container, refusing to go deeper than the limit.
func (r *CBORReader) enter(h CBORHead) error {
	if r.depth >= r.maxDepth {
		return r.fail(CBORTooDeep, h)
	}
	r.depth++
	return nil
}

// count is the number of items the array, map or tag whose head h was just read holds (0 for
// an indefinite length): every item takes a byte at least, so a count the bytes left cannot
// hold is refused.
func (r *CBORReader) count(h CBORHead) (uint64, error) {
	switch {
	case h.Major == 6:
		return 1, nil
	case h.Info == 31:
		return 0, nil
	case h.Major == 5 && h.Arg > uint64(r.left())/2, h.Major == 4 && h.Arg > uint64(r.left()):
		return 0, r.fail(CBORTooMany, h)
	case h.Major == 5:
		return 2 * h.Arg, nil
	}
	return h.Arg, nil
}

// fail makes the error for rule, broken by the head h (just read, so r.off is just after it).
// It is kept out of line: the rules are checked on every head, broken rarely.
//
//go:noinline
func (r *CBORReader) fail(rule CBORRule, h CBORHead) error {
	e := &CBORError{Rule: rule, Off: h.Off, End: r.off, Major: h.Major, N: h.Arg, Left: r.left()}
	switch rule {
	case CBORTruncated:
		e.End, e.Left = h.Off, 0
	case CBORReserved:
		e.N = uint64(h.Info)
	case CBORTooDeep:
		e.N = uint64(r.maxDepth)
	}
	return e
}
