package pipeline_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"

	"github.com/marvelo/marvelo/pipeline"
)

// fxDecoder is an independent CBOR decoder to check ours against: whatever our reader accepts,
// fxamacker/cbor must decode to the same document.
var fxDecoder = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		DefaultMapType:    reflect.TypeOf(map[string]any(nil)),
		IntDec:            cbor.IntDecConvertSigned,
		MaxNestedLevels:   300,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

// FuzzParse: no input makes Parse panic or hang; a document Parse accepts survives CBOR and
// JSON round trips unchanged, and validating and drawing it does not panic.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{pipelinesDir, invalidDir} {
		files, err := os.ReadDir(dir)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(filepath.Join(dir, file.Name()))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	// Seeds for corners of CBOR the fixtures do not reach: indefinite lengths, floats of every
	// width, tags, big integers.
	f.Add(unhex("bf646e616d657f616463656d6fff646a6f62739fa3626964190001647479706561746461726773a5" +
		"6168f93e006173fa3fc000006164fb3ff8000000000000637375" + "62f90001617af98000ffff"))
	f.Add(unhex("a2646e616d65c101646a6f627381a26269641bffffffffffffffff6461726773a7" +
		"61624100617" + "5f7616ef97e006169f9fc006173f00102636269673bffffffffffffffff"))

	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := pipeline.Parse(data)
		if err != nil {
			return
		}
		cb, err := pipeline.EncodeCBOR(p)
		if err != nil {
			t.Fatalf("EncodeCBOR of a parsed document: %v", err)
		}
		again, err := pipeline.Parse(cb)
		if err != nil {
			t.Fatalf("Parse of EncodeCBOR output: %v\n%x", err, cb)
		}
		if cb2 := mustCBOR(t, again); !bytes.Equal(cb, cb2) {
			t.Fatalf("CBOR changed on a round trip:\n%x\n%x", cb, cb2)
		}
		js, err := pipeline.EncodeJSON(p)
		if err != nil {
			t.Fatalf("EncodeJSON of a parsed document: %v", err)
		}
		fromJSON, err := pipeline.Parse(js)
		if err != nil {
			t.Fatalf("Parse of EncodeJSON output: %v\n%s", err, js)
		}
		if cb3 := mustCBOR(t, fromJSON); !bytes.Equal(cb, cb3) {
			t.Fatalf("CBOR changed on a JSON round trip:\n%x\n%x\n%s", cb, cb3, js)
		}
		if isCBOR(data) {
			var fx pipeline.Pipeline
			if err := fxDecoder.Unmarshal(data, &fx); err != nil {
				t.Fatalf("our reader accepted CBOR that fxamacker/cbor rejects: %v", err)
			}
			if cbfx := mustCBOR(t, &fx); !bytes.Equal(cb, cbfx) {
				t.Fatalf("fxamacker/cbor decodes differently:\n%x\n%x", cb, cbfx)
			}
		}
		_ = pipeline.Validate(p, pipeline.ValidateOptions{KnownType: func(string) bool { return true }})
		_ = pipeline.EncodeDOT(p)
	})
}

// isCBOR tells a CBOR document from a JSON one (starting with '{') and a YAML one (other text:
// UTF-8 without control characters but tab, CR and LF), as Parse judges them.
func isCBOR(data []byte) bool {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] == '{' {
		return false
	}
	if !utf8.Valid(data) {
		return true
	}
	for _, c := range data {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}
