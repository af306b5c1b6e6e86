package pipeline_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tests of the CBOR reader (cborread.go): malformed CBOR, items with no JSON equivalent and the
// alternative forms another encoder may write.

func TestParseMalformedCBOR(t *testing.T) {
	demo, err := os.ReadFile(filepath.Join(pipelinesDir, "demo.cbor"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", demo[:len(demo)-3], "invalid CBOR at byte "},
		{"missing value", unhex("a1646e616d65"), "invalid CBOR at byte 6: unexpected end of input"},
		{"short argument", unhex("a1646e616d651a0000"), "invalid CBOR at byte 9: unexpected end of input"},
		{"trailing data", append(append([]byte{}, demo...), 0x00), "invalid CBOR at byte 308: unexpected data after the document"},
		{"huge map", unhex("bbffffffffffffffff"), "invalid CBOR at byte 9: map of 18446744073709551615 pairs exceeds the 0 bytes left"},
		{"huge array", unhex("a1646a6f62739bffffffffffffffff00"), "invalid CBOR at byte 15: array of"},
		{"huge text", unhex("a17bffffffffffffffff"), "invalid CBOR at byte 10: length 18446744073709551615 exceeds the 0 bytes left"},
		{"deep arrays", bytes.Repeat([]byte{0x81}, 100000), "nested deeper than 256 levels"},
		{"deep tags", bytes.Repeat([]byte{0xc1}, 100000), "nested deeper than 256 levels"},
		{"reserved info", unhex("a1646e616d651c"), "invalid CBOR at byte 6: reserved additional information 28"},
		{"lone break", unhex("ff"), "invalid CBOR at byte 0: unexpected break"},
		{"indefinite integer", unhex("1f"), "indefinite length is not allowed for major type 0"},
		{"bad chunk", unhex("a17f4161ff"), "invalid CBOR at byte 2: a chunk of an indefinite-length string"},
		{"bad utf-8", unhex("a1646e616d6561ff"), "invalid CBOR at byte 7: text string is not valid UTF-8"},
		{"bad simple", unhex("f801"), "invalid simple value 1"},
		{"json array", []byte(`[{"name": "x"}]`), "(the input looks like text, but a JSON document must be an object starting with '{')"},
		{"byte order mark", []byte("\xef\xbb\xbf{}"), "(the input starts with a UTF-8 byte order mark: save the JSON without one)"},
	} {
		got := parseProblems(t, tc.data)
		if len(got) != 1 || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// Well-formed CBOR that has no JSON equivalent is reported with its path.
func TestParseCBORNonJSONItems(t *testing.T) {
	// {"name": tag1(1), "jobs": [{"id": 18446744073709551615, "args": {"b": h'00', "u": undefined,
	//  "n": NaN, "i": -Infinity, "s": simple(16), 1: 2, "big": -18446744073709551616}}]}
	data := unhex("a2646e616d65c101646a6f627381a26269641bffffffffffffffff6461726773a7" +
		"61624100617" + "5f7616ef97e006169f9fc006173f00102636269673bffffffffffffffff")
	got := parseProblems(t, data)
	wantProblems(t, got,
		`name: expected string, got CBOR tag 1`,
		`jobs[0].id: 18446744073709551615 is out of range`,
		`jobs[0].args.b: byte string is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.u: undefined is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.n: NaN is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.i: infinity is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args.s: simple value 16 is not allowed: a pipeline document holds JSON values only`,
		`jobs[0].args: keys must be strings, got integer`,
		`jobs[0].args.big: -18446744073709551616 is out of range`,
	)
}

// Indefinite lengths, non-minimal arguments and every float width are well-formed CBOR that
// another encoder may produce; they decode like their canonical forms.
func TestParseCBORAlternativeForms(t *testing.T) {
	// {_ "name": (_ "d", "emo"), "jobs": [_ {"id": 1 (as uint16), "type": "t", "args": {"h": 1.5 (half),
	//  "s": 1.5 (single), "d": 1.5 (double), "sub": 2^-24 (half subnormal), "z": -0.0 (half)}}]}
	data := unhex("bf646e616d657f616463656d6fff646a6f62739fa3626964190001647479706561746461726773a5" +
		"6168f93e006173fa3fc000006164fb3ff8000000000000637375" + "62f90001617af98000ffff")
	p := mustParse(t, data)
	if p.Name != "demo" || p.Jobs[0].ID != 1 {
		t.Fatalf("got %+v", p)
	}
	args := p.Jobs[0].Args
	for _, k := range []string{"h", "s", "d"} {
		if args[k] != 1.5 {
			t.Errorf("args.%s = %#v, want 1.5", k, args[k])
		}
	}
	if args["sub"] != 5.960464477539063e-08 {
		t.Errorf("args.sub = %#v, want 2^-24", args["sub"])
	}
	if z, ok := args["z"].(float64); !ok || z != 0 || !signbit(z) {
		t.Errorf("args.z = %#v, want -0.0", args["z"])
	}
}

func signbit(f float64) bool { return 1/f < 0 }

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
