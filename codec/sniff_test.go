package codec

import (
	"testing"
)

// TestMismatchNamesThePipeItsCodecWhatTheBytesLookLikeAndTheFix: the start of a stream written
// in another codec than its pipe's is described (quoted text, hex bytes) with what to declare;
// bytes that fit say nothing.
func TestMismatchNamesThePipeItsCodecWhatTheBytesLookLikeAndTheFix(t *testing.T) {
	cases := []struct {
		name, codec string
		defaulted   bool
		b           []byte
		want        string
	}{
		{"json lines on default cbor", CBOR, true, []byte("-18\n-17\n"),
			`pipe 4 is cbor (the default), but the program wrote JSON lines ("-18\n…"): declare {"id": 4, "codec": "json"} in "pipes"`},
		{"text lines on cbor", CBOR, false, []byte("sum is 5\n"),
			`pipe 4 is cbor, but the program wrote text lines ("sum is 5\n"): write one JSON value a line and declare {"id": 4, "codec": "json"} in "pipes"`},
		{"cbor on json", JSON, false, []byte{0x82, 0x01, 0x02},
			`pipe 4 is json, but the program wrote binary data (0x82 0x01 0x02): declare {"id": 4, "codec": "cbor"} in "pipes" for CBOR items, or "bytes" with a "block_size" for blocks of raw bytes`},
		{"json lines on bytes", Bytes, false, []byte("[1, 2]\n[3, 4]\n"),
			`pipe 4 is bytes, but the program wrote JSON lines ("[1, 2]\n…"): declare {"id": 4, "codec": "json"} in "pipes"`},
		{"json on json", JSON, false, []byte("1\n2\n"), ""},
		{"cbor on cbor", CBOR, true, []byte{0x83, 0x01, 0x02, 0x03}, ""},
		{"a cbor string holding a line", CBOR, true, []byte("fhello\n"), ""},
		{"the cbor integer 10", CBOR, true, []byte("\n\n"), ""},
		{"raw bytes on bytes", Bytes, false, []byte{0, 0, 0, 1, 0, 0, 0, 2}, ""},
		{"printable bytes without a line", Bytes, false, []byte("ABCDEFGH"), ""},
		{"nothing written", CBOR, true, nil, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Mismatch(tc.codec, tc.defaulted, 4, tc.b); got != tc.want {
				t.Errorf("Mismatch(%s, %q):\n got %s\nwant %s", tc.codec, tc.b, got, tc.want)
			}
		})
	}
}
