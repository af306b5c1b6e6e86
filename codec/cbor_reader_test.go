package codec

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

// skipCBOR walks one item with the reader's exported API, as the pipeline's walker does.
func skipCBOR(r *CBORReader) error {
	h, err := r.Next()
	if err != nil {
		return err
	}
	switch h.Major {
	case 2, 3:
		if !h.Indefinite() {
			_, err := r.Take(h)
			return err
		}
		for !r.AtBreak() {
			if _, err := r.Chunk(h.Major); err != nil {
				return err
			}
		}
	case 4, 5, 6:
		if err := r.Open(h); err != nil {
			return err
		}
		defer r.Close()
		n := h.Arg
		switch {
		case h.Major == 6:
			n = 1
		case h.Major == 5:
			n *= 2
		}
		for i := uint64(0); h.Indefinite() || i < n; i++ {
			if h.Indefinite() && r.AtBreak() {
				break
			}
			if err := skipCBOR(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestCBORReaderRefusesEveryBrokenRuleAtItsHead: each rule the item reader enforces is refused
// with its rule, the offset of the head that breaks it and the numbers its walkers word; the
// generic decoder reports the very same error, and the stream scanner refuses the item at the
// same byte.
func TestCBORReaderRefusesEveryBrokenRuleAtItsHead(t *testing.T) {
	for _, tc := range []struct {
		what, hex string
		want      CBORError
		stream    string // what the stream scanner says, "" if the rule is not one of its own
	}{
		{"nothing", "", CBORError{Rule: CBORTruncated, Off: 0}, ""},
		{"truncated argument", "8119", CBORError{Rule: CBORTruncated, Off: 2}, ""},
		{"missing item", "9f01", CBORError{Rule: CBORTruncated, Off: 2}, ""},
		{"reserved information", "811c", CBORError{Rule: CBORReserved, Off: 1, End: 1, Major: 0, N: 28}, "reserved additional information 28 at byte 1"},
		{"reserved in a chunk", "5f5d", CBORError{Rule: CBORReserved, Off: 1, End: 1, Major: 2, N: 29}, "reserved additional information 29 at byte 1"},
		{"break alone", "ff", CBORError{Rule: CBORBreak, Off: 0, End: 1, Major: 7}, "break outside an indefinite-length item at byte 0"},
		{"break in a definite array", "81ff", CBORError{Rule: CBORBreak, Off: 1, End: 2, Major: 7}, "break outside"},
		{"indefinite integer", "811f", CBORError{Rule: CBORIndefinite, Off: 1, End: 2, Major: 0}, "indefinite length for major type 0 at byte 1"},
		{"indefinite negative", "3f", CBORError{Rule: CBORIndefinite, Off: 0, End: 1, Major: 1}, "indefinite length for major type 1"},
		{"indefinite tag", "df00", CBORError{Rule: CBORIndefinite, Off: 0, End: 1, Major: 6}, "indefinite length for major type 6"},
		{"text chunk in bytes", "5f6161ff", CBORError{Rule: CBORBadChunk, Off: 1, End: 2, Major: 2}, "chunk of an indefinite string is not a definite string of major type 2 at byte 1"},
		{"indefinite chunk", "7f7fffff", CBORError{Rule: CBORBadChunk, Off: 1, End: 2, Major: 3}, "chunk of an indefinite string"},
		{"integer chunk", "5f00ff", CBORError{Rule: CBORBadChunk, Off: 1, End: 2, Major: 2}, "chunk of an indefinite string"},
		{"simple value in two bytes", "81f81f", CBORError{Rule: CBORBadSimple, Off: 1, End: 3, Major: 7, N: 31}, ""},
		{"string longer than the input", "5a00010000ff", CBORError{Rule: CBORTooLong, Off: 0, End: 5, Major: 2, N: 65536, Left: 1}, ""},
		{"chunk longer than the input", "7f63ff", CBORError{Rule: CBORTooLong, Off: 1, End: 2, Major: 3, N: 3, Left: 1}, ""},
		{"huge string", "7bffffffffffffffff", CBORError{Rule: CBORTooLong, Off: 0, End: 9, Major: 3, N: 1<<64 - 1}, ""},
		{"array longer than the input", "830102", CBORError{Rule: CBORTooMany, Off: 0, End: 1, Major: 4, N: 3, Left: 2}, ""},
		{"map longer than the input", "a2010203", CBORError{Rule: CBORTooMany, Off: 0, End: 1, Major: 5, N: 2, Left: 3}, ""},
		{"huge map", "bbffffffffffffffff", CBORError{Rule: CBORTooMany, Off: 0, End: 9, Major: 5, N: 1<<64 - 1}, ""},
	} {
		p, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		r := NewCBORReader(p, MaxDepth)
		err = skipCBOR(&r)
		var got *CBORError
		if !errors.As(err, &got) || !sameCBORError(got, &tc.want) {
			t.Errorf("%s: reader error %#v, want %#v", tc.what, err, &tc.want)
			continue
		}
		if _, err := decodeCBORAny(p); err == nil || err.Error() != got.Error() {
			t.Errorf("%s: DecodeAny error %v, want the reader's %v", tc.what, err, got)
		}
		if truncates := got.Rule == CBORTruncated || got.Rule == CBORTooLong || got.Rule == CBORTooMany; truncates != errors.Is(got, io.ErrUnexpectedEOF) {
			t.Errorf("%s: errors.Is(io.ErrUnexpectedEOF) = %v", tc.what, !truncates)
		}
		if tc.stream == "" {
			continue
		}
		for _, buffered := range []bool{false, true} {
			br := bufio.NewReader(bytes.NewReader(p))
			if buffered {
				_, _ = br.Peek(1)
			}
			_, _, err = scanCBOR(br, nil, 0)
			if err == nil || !strings.Contains(err.Error(), tc.stream) {
				t.Errorf("%s: stream scanner (buffered %v) says %v, want %q", tc.what, buffered, err, tc.stream)
			}
		}
	}
}

// sameCBORError compares the fields that mean something for the rule.
func sameCBORError(got, want *CBORError) bool {
	if got.Rule == CBORTooLong || got.Rule == CBORTooMany {
		return *got == *want
	}
	return got.Rule == want.Rule && got.Off == want.Off && got.Major == want.Major && got.N == want.N
}

// TestCBORReaderNestsArraysMapsAndTagsToItsDepthOnly: maxDepth open containers are fine, one
// more is refused at its head, whatever the containers; strings do not count.
func TestCBORReaderNestsArraysMapsAndTagsToItsDepthOnly(t *testing.T) {
	const depth = 5
	for _, open := range []string{"\x81", "\x9f", "\xa1\x00", "\xbf\x00", "\xc6"} {
		ok := strings.Repeat(open, depth) + "\x5f\x41\x00\xff" // an indefinite string innermost
		if open == "\x9f" || open == "\xbf\x00" {
			ok += strings.Repeat("\xff", depth)
		}
		r := NewCBORReader([]byte(ok), depth)
		if err := skipCBOR(&r); err != nil || r.Offset() != len(ok) {
			t.Errorf("%q×%d: %v after %d of %d bytes", open, depth, err, r.Offset(), len(ok))
		}
		deeper := strings.Repeat(open, depth+1) + "\x00"
		r = NewCBORReader([]byte(deeper), depth)
		var e *CBORError
		if err := skipCBOR(&r); !errors.As(err, &e) || e.Rule != CBORTooDeep || e.Off != depth*len(open) || e.N != depth {
			t.Errorf("%q×%d: %v, want nesting deeper than %d at byte %d", open, depth+1, err, depth, depth*len(open))
		}
	}
}

// TestCBORReaderBoundsLengthsByTheBytesLeft: a string may take every byte left and an array or
// map one byte an element, not one more; so no declared length outgrows the input.
func TestCBORReaderBoundsLengthsByTheBytesLeft(t *testing.T) {
	for _, tc := range []struct {
		hex  string
		rule CBORRule // 0: fits
	}{
		{"4400000000", 0}, {"44000000", CBORTooLong},
		{"8400000000", 0}, {"84000000", CBORTooMany},
		{"a200000000", 0}, {"a2000000", CBORTooMany},
		{"7f6100ff", 0}, {"7f6300ff", CBORTooLong},
	} {
		p, _ := hex.DecodeString(tc.hex)
		r := NewCBORReader(p, MaxDepth)
		err := skipCBOR(&r)
		var e *CBORError
		switch {
		case tc.rule == 0 && err != nil:
			t.Errorf("%s: %v", tc.hex, err)
		case tc.rule != 0 && (!errors.As(err, &e) || e.Rule != tc.rule):
			t.Errorf("%s: %v, want rule %d", tc.hex, err, tc.rule)
		}
	}
}
