package codec

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
)

// readAll reads frames until an error and returns the payloads and that error.
func readAll(c Codec, stream []byte) ([]string, *FrameReader, error) {
	fr := NewFrameReader(c, bytes.NewReader(stream))
	var got []string
	for i := 0; i <= len(stream); i++ { // every frame consumes at least a byte: no endless loop
		p, err := fr.Next(nil)
		if err != nil {
			return got, fr, err
		}
		got = append(got, string(p))
	}
	return got, fr, errors.New("reader did not stop")
}

func TestFramesBackToBack(t *testing.T) {
	for _, name := range []string{CBOR, JSON} {
		c := mustNew(t, name, 0)
		var stream []byte
		var want []string
		for _, v := range roundTripValues() {
			p, err := c.Append(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, string(p))
			stream = c.AppendFrame(stream, p)
		}
		got, fr, err := readAll(c, stream)
		if err != io.EOF {
			t.Fatalf("%s: stream ended with %v", name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
			t.Errorf("%s: read %q, want %q", name, got, want)
		}
		if fr.Offset() != int64(len(stream)) {
			t.Errorf("%s: offset %d after the stream, want %d", name, fr.Offset(), len(stream))
		}
	}
	c := mustNew(t, Bytes, 3)
	got, fr, err := readAll(c, []byte("abcdefghi"))
	if err != io.EOF || strings.Join(got, ",") != "abc,def,ghi" || fr.Offset() != 9 {
		t.Errorf("bytes frames %q, offset %d, %v", got, fr.Offset(), err)
	}
}

// TestReadFrameDoesNotReadAhead: what follows a frame (a head, another frame) stays in the
// reader, since ReadFrame stops at the frame's last byte.
func TestReadFrameDoesNotReadAhead(t *testing.T) {
	for _, tc := range []struct {
		name, stream, frame string
	}{
		{CBOR, "\x82\x01\x9f\x02\xffREST", "\x82\x01\x9f\x02\xff"},
		{JSON, "[1,2]\nREST", "[1,2]"},
		{Bytes, "abcREST", "abc"},
	} {
		c := mustNew(t, tc.name, 3)
		r := bufio.NewReader(strings.NewReader(tc.stream))
		p, err := c.ReadFrame(r, nil)
		rest, _ := io.ReadAll(r)
		if err != nil || string(p) != tc.frame || string(rest) != "REST" {
			t.Errorf("%s: frame %q rest %q, %v", tc.name, p, rest, err)
		}
	}
}

func TestFrameReaderHeads(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	var stream []byte
	stream = AppendHead(stream, 0x8001, 2)
	stream = c.AppendFrame(stream, []byte{0x01})
	stream = AppendHead(stream, 0x2000, 2)
	stream = c.AppendFrame(stream, []byte{0x63, 'a', 'b', 'c'})
	fr := NewFrameReader(c, bytes.NewReader(stream))
	for _, want := range []struct {
		head    uint32
		payload string
	}{{0x8001, "\x01"}, {0x2000, "cabc"}} {
		h, err := fr.ReadHead(2)
		if err != nil || h != want.head {
			t.Fatalf("head %x, %v; want %x", h, err, want.head)
		}
		p, err := fr.Next(nil)
		if err != nil || string(p) != want.payload {
			t.Fatalf("payload %q, %v", p, err)
		}
	}
	if _, err := fr.ReadHead(2); err != io.EOF {
		t.Errorf("head at the end: %v, want io.EOF", err)
	}
	// A head cut short, and a head with no frame after it.
	fr = NewFrameReader(c, bytes.NewReader([]byte{0x01, 0x80}))
	if _, err := fr.Next(nil); err != nil {
		t.Fatal(err)
	}
	_, err := fr.ReadHead(2)
	checkFrameErr(t, "short head", err, 1, true)
	fr = NewFrameReader(c, bytes.NewReader([]byte{0x80}))
	if _, err := fr.ReadHead(1); err != nil {
		t.Fatal(err)
	}
	_, err = fr.Next(nil)
	checkFrameErr(t, "head without frame", err, 1, true)
}

// checkFrameErr wants a *FrameError at offset off whose message names the offset.
func checkFrameErr(t *testing.T, what string, err error, off int64, unexpectedEOF bool) {
	t.Helper()
	var fe *FrameError
	if !errors.As(err, &fe) {
		t.Errorf("%s: error %v (%T), want a *FrameError", what, err, err)
		return
	}
	if fe.Offset != off || !strings.Contains(err.Error(), fmt.Sprintf("at byte %d", off)) {
		t.Errorf("%s: error %q at offset %d, want offset %d", what, err, fe.Offset, off)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) != unexpectedEOF {
		t.Errorf("%s: error %q: errors.Is(io.ErrUnexpectedEOF) = %v", what, err, !unexpectedEOF)
	}
}

func TestJSONFraming(t *testing.T) {
	c := mustNew(t, JSON, 0)
	cases := []struct {
		stream string
		want   []string
	}{
		{"1\n2\n", []string{"1", "2"}},
		{"1\r\n{\"a\": 2}\r\n", []string{"1", `{"a": 2}`}},
		{"1\n2", []string{"1", "2"}},                    // last line without newline
		{"1\n\n", []string{"1"}},                        // empty line at the end
		{"\n\n1\n\n \t\r\n2\n\n\n", []string{"1", "2"}}, // blank lines anywhere
		{"", nil},
		{"\n", nil},
		{"  [1, 2]  \n", []string{"  [1, 2]"}},
	}
	for _, tc := range cases {
		got, fr, err := readAll(c, []byte(tc.stream))
		if err != io.EOF || strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("json frames of %q = %q, %v; want %q", tc.stream, got, err, tc.want)
		}
		if fr.Offset() != int64(len(tc.stream)) {
			t.Errorf("json stream %q: offset %d, want %d", tc.stream, fr.Offset(), len(tc.stream))
		}
	}
	// Invalid lines, at the right offsets (blank lines before them are not the frame).
	for _, tc := range []struct {
		stream string
		frames int
		off    int64
		eof    bool
	}{
		{"1\n{bad\n2\n", 1, 2, false},
		{"1\n\n\nnope\n", 1, 4, false},
		{"[1,\n2]\n", 0, 0, false},
		{"1\n{\"a\":", 1, 2, true}, // cut short at the end
		{"1 2\n", 0, 0, false},
	} {
		got, _, err := readAll(c, []byte(tc.stream))
		if len(got) != tc.frames {
			t.Errorf("json %q: %d frames before the error, want %d", tc.stream, len(got), tc.frames)
		}
		checkFrameErr(t, fmt.Sprintf("json %q", tc.stream), err, tc.off, tc.eof)
	}
}

func TestJSONAppendFrame(t *testing.T) {
	c := mustNew(t, JSON, 0)
	// A pretty-printed payload from elsewhere still makes one line, and the same JSON value.
	f := c.AppendFrame(nil, []byte("{\n  \"a\": 1\n}"))
	if string(f) != "{   \"a\": 1 }\n" {
		t.Errorf("AppendFrame = %q", f)
	}
}

func TestJSONLineLimit(t *testing.T) {
	old := MaxFrameSize
	MaxFrameSize = 1000
	defer func() { MaxFrameSize = old }()
	stream := "1\n\"" + strings.Repeat("x", 5000) + "\"\n"
	got, _, err := readAll(mustNew(t, JSON, 0), []byte(stream))
	if len(got) != 1 {
		t.Errorf("frames before the long line: %q", got)
	}
	checkFrameErr(t, "long line", err, 2, false)
}

func TestBytesFraming(t *testing.T) {
	c := mustNew(t, Bytes, 4)
	got, _, err := readAll(c, []byte("abcdefghij"))
	if strings.Join(got, ",") != "abcd,efgh" {
		t.Errorf("frames %q", got)
	}
	checkFrameErr(t, "short block", err, 8, true)
	if !strings.Contains(err.Error(), "2 of 4 bytes") {
		t.Errorf("short block error %q does not say how much was read", err)
	}
}

func TestCBORFramingErrors(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	deep := strings.Repeat("81", MaxDepth+1) + "00"
	deepTags := strings.Repeat("c6", MaxDepth+1) + "00"
	for _, tc := range []struct {
		what, hex string
		frames    int
		off       int64
		eof       bool
		msg       string
	}{
		{"truncated array", "01 820102 8201", 2, 4, true, ""},
		{"truncated string", "00 6568656c", 1, 1, true, ""},
		{"truncated head", "00 19 01", 1, 1, true, ""},
		{"indefinite without break", "9f0102", 0, 0, true, ""},
		{"indefinite map without break", "bf", 0, 0, true, ""},
		{"invalid simple value", "00 f810", 1, 1, false, "malformed"},
		{"reserved ai", "00 1c", 1, 1, false, "reserved additional information 28 at byte 1"},
		{"reserved ai inside", "00 83 01 02 1d", 1, 1, false, "at byte 4"},
		{"break alone", "ff", 0, 0, false, "break"},
		{"indefinite integer", "01 1f", 1, 1, false, "indefinite"},
		{"text chunk in byte string", "5f 6161 ff", 0, 0, false, "chunk"},
		{"deeply nested", deep, 0, 0, false, "nesting deeper than 1024"},
		{"deeply nested tags", deepTags, 0, 0, false, "nesting deeper than 1024"},
		{"huge string", "00 5bffffffffffffffff", 1, 1, false, "exceeds the item limit"},
		{"huge array", "9b0000010000000000", 0, 0, false, "exceed the item limit"},
		{"huge map", "bbffffffffffffffff", 0, 0, false, "exceeds the item limit"},
		{"huge array in indefinite map", "bf 61 61 9bffffffffffffff00", 0, 0, false, "exceed the item limit"},
	} {
		stream, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := readAll(c, stream)
		if len(got) != tc.frames {
			t.Errorf("%s: %d frames before the error, want %d", tc.what, len(got), tc.frames)
		}
		checkFrameErr(t, tc.what, err, tc.off, tc.eof)
		if err != nil && !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q does not contain %q", tc.what, err, tc.msg)
		}
	}
}

func TestCBORFramingDepthLimit(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	for _, open := range []string{"\x81", "\x9f", "\xc6", "\xa1\x00"} {
		item := strings.Repeat(open, MaxDepth) + "\x00"
		if open == "\x9f" {
			item += strings.Repeat("\xff", MaxDepth)
		}
		got, _, err := readAll(c, []byte(item))
		if err != io.EOF || len(got) != 1 || got[0] != item {
			t.Errorf("nesting %q×%d: %v", open, MaxDepth, err)
		}
	}
}

// TestCBORHugeLengthDoesNotAllocate: a declared 60 MB string with 10 bytes behind it costs
// what arrives, not what is declared.
func TestCBORHugeLengthDoesNotAllocate(t *testing.T) {
	stream := append([]byte{0x5a, 0x03, 0x93, 0x87, 0x00}, make([]byte, 10)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _, err := readAll(mustNew(t, CBOR, 0), stream)
	runtime.ReadMemStats(&after)
	checkFrameErr(t, "huge length", err, 0, true)
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("reading a truncated 60 MB string allocated %d bytes", n)
	}
}

func TestCBORLongStringAcrossChunks(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	long := strings.Repeat("abcdefgh", 50000) // 400 kB: several scan chunks and bufio refills
	p, err := c.Append(nil, long)
	if err != nil {
		t.Fatal(err)
	}
	stream := c.AppendFrame(c.AppendFrame(nil, p), []byte{0x07})
	got, _, err := readAll(c, stream)
	if err != io.EOF || len(got) != 2 || got[0] != string(p) || got[1] != "\x07" {
		t.Errorf("long string frames: %d, %v", len(got), err)
	}
}

// foreignCodec is a Codec from elsewhere: FrameReader must still work, counting payloads.
type foreignCodec struct{ Codec }

func TestFrameReaderForeignCodec(t *testing.T) {
	c := foreignCodec{mustNew(t, Bytes, 2)}
	got, fr, err := readAll(c, []byte("abcde"))
	if strings.Join(got, ",") != "ab,cd" || fr.Offset() != 4 {
		t.Errorf("frames %q, offset %d", got, fr.Offset())
	}
	var fe *FrameError
	if !errors.As(err, &fe) || fe.Offset != 4 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("foreign codec error %v", err)
	}
}

func TestReadFrameAppends(t *testing.T) {
	for _, name := range []string{CBOR, JSON, Bytes} {
		c := mustNew(t, name, 1)
		frame := c.AppendFrame(nil, c.Zero())
		dst := []byte("keep")
		out, err := c.ReadFrame(bufio.NewReader(bytes.NewReader(frame)), dst)
		if err != nil || string(out) != "keep"+string(c.Zero()) {
			t.Errorf("%s: ReadFrame appended %q, %v", name, out, err)
		}
		out, err = c.ReadFrame(bufio.NewReader(bytes.NewReader(nil)), dst)
		if err != io.EOF || string(out) != "keep" {
			t.Errorf("%s: ReadFrame at EOF: %q, %v", name, out, err)
		}
	}
}
