package codec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// What the first bytes of a stream look like, for the errors of a program that writes in
// another codec than its pipe's: a program writing JSON lines on a pipe that is cbor by
// default produced garbage blocks (CBOR reads "-18\n" as the integers -14, -18 and -11) and
// then a count of answers that named no codec.

// sniffLen is how many bytes of a stream's start a description looks at.
const sniffLen = 64

// Looks is what the start of a stream looks like.
type Looks struct {
	What   string // "JSON lines", "text lines" or "binary data"; "" for no bytes
	Sample string // the first bytes: quoted for text ("-18\n…"), in hex otherwise (0x82 0x01 …)
	Line   bool   // text: a newline ends its first line within the bytes looked at
}

// LooksLike describes the start of a stream.
func LooksLike(b []byte) Looks {
	if len(b) == 0 {
		return Looks{}
	}
	b = b[:min(len(b), sniffLen)]
	n := textPrefix(b)
	if n < len(b) && (n == 0 || b[n] != '\n') {
		return Looks{What: "binary data", Sample: hexSample(b)}
	}
	end := min(len(b), n+1)
	l := Looks{What: "text lines", Sample: quoteSample(b[:end], end < len(b)), Line: n < len(b)}
	if lineIsJSON(b[:n]) {
		l.What = "JSON lines"
	}
	return l
}

// TextOnCBOR reports whether b, the first bytes of a stream read as CBOR, are almost surely a
// line of text instead: printable ASCII ending in a newline. CBOR reads such bytes as small
// integers and short strings, so the check is made before the first block is taken: one CBOR
// string item holding a line with its newline is CBOR, not text.
func TextOnCBOR(b []byte) bool {
	b = b[:min(len(b), sniffLen)]
	n := textPrefix(b)
	if n == len(b) || b[n] != '\n' || len(bytes.TrimSpace(b[:n])) == 0 {
		return false
	}
	_, item, err := scanCBOR(bufio.NewReader(bytes.NewReader(b)), nil, 0)
	return err != nil || item != int64(n+1)
}

// Mismatch says, for an error, that the bytes b at the start of a stream do not fit the pipe's
// codec, and what to declare: "pipe 4 is cbor (the default), but the program wrote JSON lines
// ("-18\n…"): declare {"id": 4, "codec": "json"} in "pipes"". It returns "" when they fit, or
// when nothing better can be said. defaulted: the document declares no codec for the pipe.
func Mismatch(codec string, defaulted bool, pipe int, b []byte) string {
	l := LooksLike(b)
	switch {
	case l.What == "":
		return ""
	case codec == CBOR && !TextOnCBOR(b):
		return "" // binary data that is not CBOR: a malformed item, said as it is
	case codec == JSON && l.What != "binary data":
		return "" // text that is not JSON: the frame's error says so
	case codec == Bytes && !l.Line:
		return "" // blocks of raw bytes may well be printable
	}
	is := codec
	if defaulted {
		is += " (the default)"
	}
	var fix string
	switch l.What {
	case "JSON lines":
		fix = fmt.Sprintf(`declare {"id": %d, "codec": "json"} in "pipes"`, pipe)
	case "text lines":
		fix = fmt.Sprintf(`write one JSON value a line and declare {"id": %d, "codec": "json"} in "pipes"`, pipe)
	default:
		fix = fmt.Sprintf(`declare {"id": %d, "codec": "cbor"} in "pipes" for CBOR items, or "bytes" with a "block_size" for blocks of raw bytes`, pipe)
	}
	return fmt.Sprintf("pipe %d is %s, but the program wrote %s (%s): %s", pipe, is, l.What, l.Sample, fix)
}

// textPrefix is the length of b's prefix of printable ASCII (tabs and carriage returns count).
func textPrefix(b []byte) int {
	for i, c := range b {
		if (c < 0x20 || c > 0x7e) && c != '\t' && c != '\r' {
			return i
		}
	}
	return len(b)
}

// lineIsJSON reports whether a line, without its newline, is one JSON value.
func lineIsJSON(line []byte) bool {
	line = bytes.TrimSpace(line)
	return len(line) > 0 && json.Valid(line)
}

// quoteSample quotes text as Go writes it ("-18\n"), with … inside the quotes when more follows.
func quoteSample(b []byte, more bool) string {
	const show = 24
	if len(b) > show {
		b, more = b[:show], true
	}
	q := strconv.Quote(string(b))
	if more {
		q = q[:len(q)-1] + `…"`
	}
	return q
}

// hexSample writes the first bytes in hex: 0x82 0x01 0x02 ….
func hexSample(b []byte) string {
	const show = 8
	var s []string
	for i, c := range b {
		if i == show {
			s = append(s, "…")
			break
		}
		s = append(s, fmt.Sprintf("0x%02x", c))
	}
	return strings.Join(s, " ")
}
