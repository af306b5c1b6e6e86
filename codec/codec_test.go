package codec

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
)

func mustNew(t testing.TB, name string, size int) Codec {
	t.Helper()
	c, err := New(name, size)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNew(t *testing.T) {
	for _, name := range []string{CBOR, JSON} {
		c := mustNew(t, name, 0)
		if c.Name() != name {
			t.Errorf("New(%q).Name() = %q", name, c.Name())
		}
	}
	if c := mustNew(t, Bytes, 8); c.Name() != Bytes || len(c.Zero()) != 8 {
		t.Errorf("bytes codec: name %q, zero %d bytes", c.Name(), len(c.Zero()))
	}
	for _, size := range []int{0, -1, MaxFrameSize + 1} {
		if _, err := New(Bytes, size); err == nil {
			t.Errorf("New(bytes, %d) succeeded", size)
		}
	}
	_, err := New("pickle", 0)
	if err == nil || !strings.Contains(err.Error(), "cbor, json and bytes") {
		t.Errorf("New(pickle) error = %v, want one listing the valid names", err)
	}
}

func TestZero(t *testing.T) {
	if z := mustNew(t, CBOR, 0).Zero(); !bytes.Equal(z, []byte{0xf6}) { // null: the zero value of any type
		t.Errorf("cbor zero = %x", z)
	}
	jc := mustNew(t, JSON, 0)
	if z := jc.Zero(); string(z) != "null" {
		t.Errorf("json zero = %q", z)
	}
	// The reason for null: it decodes into every type as that type's zero value.
	var s string
	var st struct{ A int }
	var sl []float64
	for _, p := range []any{&s, &st, &sl} {
		if err := jc.Decode(jc.Zero(), p); err != nil {
			t.Errorf("json zero into %T: %v", p, err)
		}
	}
	if z := mustNew(t, Bytes, 3).Zero(); !bytes.Equal(z, []byte{0, 0, 0}) {
		t.Errorf("bytes zero = %x", z)
	}
}

type point struct {
	X, Y  float64
	Label string `cbor:"label" json:"label"`
	Tags  []string
}

// roundTripValues are values every general codec must carry unchanged when decoded into their
// own type.
func roundTripValues() []any {
	return []any{
		0, 1, -1, 23, 24, 255, 256, 65535, 65536, -24, -25, -256, -257,
		int64(math.MaxInt64), int64(math.MinInt64), int32(-7), int8(-128), int16(300),
		uint(7), uint8(255), uint16(65535), uint32(1 << 31), uint64(math.MaxUint64),
		0.0, 1.5, -2.25, 0.1, 1e300, -1e-300, 5e-324, 65504.0, 1e21, 1e-7, 123456789.125,
		float32(3.25), float32(0.1), float32(-1e-40),
		"", "hello", "héllo wörld", "<tag> & \"quotes\" \\ \n\t", "\u2028",
		true, false,
		[]byte{}, []byte{0, 1, 2, 255},
		[]int{1, 2, 3}, []float64{0.5, -1, 1e10}, []string{"a", "b"},
		map[string]int{"a": 1, "b": 2},
		point{X: 1, Y: -2.5, Label: "p", Tags: []string{"x"}},
		[]point{{X: 1}, {Y: 2}},
		map[string][]int{"z": {1}, "a": {}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, name := range []string{CBOR, JSON} {
		c := mustNew(t, name, 0)
		for _, v := range roundTripValues() {
			payload, err := c.Append([]byte("prefix"), v)
			if err != nil {
				t.Errorf("%s: Append(%#v): %v", name, v, err)
				continue
			}
			if !bytes.HasPrefix(payload, []byte("prefix")) {
				t.Fatalf("%s: Append did not append to dst", name)
			}
			payload = payload[len("prefix"):]
			ptr := reflect.New(reflect.TypeOf(v))
			if err := c.Decode(payload, ptr.Interface()); err != nil {
				t.Errorf("%s: Decode(%q) into %T: %v", name, payload, v, err)
				continue
			}
			if got := ptr.Elem().Interface(); !reflect.DeepEqual(got, v) {
				t.Errorf("%s: round trip of %#v gave %#v (payload %q)", name, v, got, payload)
			}
			dec, err := NewDecoder(c, reflect.TypeOf(v))
			if err != nil {
				t.Fatal(err)
			}
			rv, err := dec(payload)
			if err != nil || !reflect.DeepEqual(rv.Interface(), v) || rv.Type() != reflect.TypeOf(v) {
				t.Errorf("%s: Decoder for %T gave %#v, %v", name, v, rv, err)
			}
		}
	}
}

func TestCBORSpecialFloats(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1)} {
		p, err := c.Append(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		var got float64
		if err := c.Decode(p, &got); err != nil {
			t.Fatal(err)
		}
		if math.Float64bits(got) != math.Float64bits(f) && !(math.IsNaN(f) && math.IsNaN(got)) {
			t.Errorf("float %v round trip gave %v (payload %x)", f, got, p)
		}
	}
}

func TestCBORCoreDeterministic(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	// Map keys sorted by their encodings; shortest forms.
	p, err := c.Append(nil, map[string]any{"bb": 1, "a": 1.5, "c": uint64(300)})
	if err != nil {
		t.Fatal(err)
	}
	if want := "a3 6161 f93e00 6163 19012c 626262 01"; hex.EncodeToString(p) != strings.ReplaceAll(want, " ", "") {
		t.Errorf("deterministic map = %x, want %s", p, want)
	}
}

// TestCBORFastPath checks that the hand-written encodings are exactly the library's.
func TestCBORFastPath(t *testing.T) {
	vals := []any{nil, true, false, []byte(nil), []byte{}, []byte("abc"), "", "abc", "ü",
		strings.Repeat("x", 300), make([]byte, 70000)}
	for _, i := range []int64{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<32 - 1, 1 << 32, math.MaxInt64} {
		vals = append(vals, i, -i, -i-1, int(i), uint64(i))
	}
	vals = append(vals, int8(-5), int16(-500), int32(-70000), uint8(200), uint16(60000), uint32(1<<31), uint(9), uint64(math.MaxUint64))
	for _, f := range []float64{0, math.Copysign(0, -1), 1, 1.5, 0.1, 65504, 65505, 65536, 1e-5, 5.960464477539063e-08,
		6e-8, 1e-40, 3.4028234663852886e+38, 1e39, 5e-324, math.MaxFloat64, math.NaN(), math.Inf(1), math.Inf(-1), 1.0000001} {
		vals = append(vals, f, -f, float32(f))
	}
	vals = append(vals, float32(math.NaN()))
	for _, v := range vals {
		checkCBORFast(t, v)
	}
}

func checkCBORFast(t *testing.T, v any) {
	t.Helper()
	got, ok := appendCBORFast([]byte{0xaa}, v)
	if !ok {
		t.Errorf("no fast path for %T", v)
		return
	}
	want, err := theCBOR.em.Marshal(v)
	if err != nil {
		t.Fatalf("library Marshal(%#v): %v", v, err)
	}
	if !bytes.Equal(got[1:], want) || got[0] != 0xaa {
		t.Errorf("fast CBOR of %T %v = %x, library %x", v, v, got[1:], want)
	}
}

// TestCBORInvalidUTF8: the library encodes Go strings holding invalid UTF-8 as they are, so
// every decoding path must accept them back.
func TestCBORInvalidUTF8(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	type s struct{ A string }
	for _, v := range []any{"\xff", s{"\xfe"}} {
		p, err := c.Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		ptr := reflect.New(reflect.TypeOf(v))
		if err := c.Decode(p, ptr.Interface()); err != nil || ptr.Elem().Interface() != v {
			t.Errorf("%#v decoded to %#v, %v", v, ptr.Elem().Interface(), err)
		}
		if _, err := c.DecodeAny(p); err != nil {
			t.Errorf("DecodeAny(%x): %v", p, err)
		}
	}
	checkCBORFast(t, "\xff")
}

func TestCBORDecodeAny(t *testing.T) {
	hugeNeg, _ := new(big.Int).SetString("-18446744073709551616", 10)
	big2, _ := new(big.Int).SetString("18446744073709551616", 10)
	cases := []struct {
		hex  string
		want any
	}{
		{"00", int64(0)},
		{"17", int64(23)},
		{"1864", int64(100)},
		{"3863", int64(-100)},
		{"1b7fffffffffffffff", int64(math.MaxInt64)},
		{"1b8000000000000000", uint64(1 << 63)},
		{"1bffffffffffffffff", uint64(math.MaxUint64)},
		{"3b7fffffffffffffff", int64(math.MinInt64)},
		{"3bffffffffffffffff", hugeNeg},
		{"c249010000000000000000", big2},
		{"c24101", int64(1)},
		{"c34100", int64(-1)},
		{"f93e00", 1.5},
		{"fa47c35000", 100000.0},
		{"fb3ff199999999999a", 1.1},
		{"f97c00", math.Inf(1)},
		{"f4", false},
		{"f5", true},
		{"f6", nil},
		{"f7", nil},
		{"f0", cbor.SimpleValue(16)},
		{"f8ff", cbor.SimpleValue(255)},
		{"4401020304", []byte{1, 2, 3, 4}},
		{"5f42010243030405ff", []byte{1, 2, 3, 4, 5}},
		{"5fff", []byte{}},
		{"6449455446", "IETF"},
		{"7f657374726561646d696e67ff", "streaming"},
		{"80", []any{}},
		{"83010203", []any{int64(1), int64(2), int64(3)}},
		{"9f018202039f0405ffff", []any{int64(1), []any{int64(2), int64(3)}, []any{int64(4), int64(5)}}},
		{"a26161016162820203", map[string]any{"a": int64(1), "b": []any{int64(2), int64(3)}}},
		{"bf6346756ef563416d7421ff", map[string]any{"Fun": true, "Amt": int64(-2)}},
		{"a201020304", map[any]any{int64(1): int64(2), int64(3): int64(4)}},
		{"a261610102f4", map[any]any{"a": int64(1), int64(2): false}},
		{"a0", map[string]any{}},
		{"a1420102f5", map[any]any{cbor.ByteString("\x01\x02"): true}},
		{"d82076687474703a2f2f7777772e6578616d706c652e636f6d", "http://www.example.com"},
		{"d9d9f70a", int64(10)},
		{"c074323031332d30332d32315432303a30343a30305a", time.Date(2013, 3, 21, 20, 4, 0, 0, time.UTC)},
		{"c11a514b67b0", time.Unix(1363896240, 0)},
		{"c1fb41d452d9ec200000", time.Unix(1363896240, 500000000)},
		{"c1f97e00", time.Time{}}, // NaN: no time
	}
	c := mustNew(t, CBOR, 0)
	for _, tc := range cases {
		p, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.DecodeAny(p)
		if err != nil {
			t.Errorf("DecodeAny(%s): %v", tc.hex, err)
			continue
		}
		if !equalAny(got, tc.want) {
			t.Errorf("DecodeAny(%s) = %#v (%T), want %#v (%T)", tc.hex, got, got, tc.want, tc.want)
		}
		var viaDecode any
		if err := c.Decode(p, &viaDecode); err != nil || !equalAny(viaDecode, tc.want) {
			t.Errorf("Decode(%s, *any) = %#v, %v", tc.hex, viaDecode, err)
		}
	}
}

func equalAny(a, b any) bool {
	switch x := a.(type) {
	case *big.Int:
		y, ok := b.(*big.Int)
		return ok && x.Cmp(y) == 0
	case time.Time:
		y, ok := b.(time.Time)
		return ok && x.Equal(y)
	}
	return reflect.DeepEqual(a, b)
}

func TestCBORDecodeAnyErrors(t *testing.T) {
	for _, h := range []string{
		"",                     // nothing
		"0001",                 // extra data
		"1c",                   // reserved additional information
		"18",                   // truncated argument
		"62ff",                 // truncated string
		"5bffffffffffffffff",   // huge declared length
		"9bffffffffffffffff",   // huge declared count
		"bbffffffffffffffff",   // huge declared pairs
		"9f01",                 // indefinite without break
		"ff",                   // break alone
		"1f",                   // indefinite integer
		"df00",                 // indefinite tag
		"5f6100ff",             // text chunk in a byte string
		"5f5f4100ffff",         // nested indefinite chunk
		"f818",                 // two-byte simple value below 32
		"a18001",               // array key
		"a1a001",               // map key
		"c001",                 // tag 0 on a number
		"c06161",               // tag 0 on a bad date
		"c161 61",              // tag 1 on text
		"c201",                 // bignum on a number
		"c11bffffffffffffffff", // epoch time beyond int64
		"c1fb43e0000000000000", // 2^63 seconds
	} {
		p, _ := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
		if v, err := mustNew(t, CBOR, 0).DecodeAny(p); err == nil {
			t.Errorf("DecodeAny(%s) = %#v, want an error", h, v)
		}
	}
	deep := append(bytes.Repeat([]byte{0x81}, MaxDepth), 0x00)
	if _, err := mustNew(t, CBOR, 0).DecodeAny(deep); err != nil {
		t.Errorf("nesting of %d: %v", MaxDepth, err)
	}
	deeper := append(bytes.Repeat([]byte{0x81}, MaxDepth+1), 0x00)
	if _, err := mustNew(t, CBOR, 0).DecodeAny(deeper); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Errorf("nesting of %d: %v, want a nesting error", MaxDepth+1, err)
	}
}

func TestCBORGenericTargets(t *testing.T) {
	c := mustNew(t, CBOR, 0)
	p, _ := c.Append(nil, []any{1, "a"})
	var s []any
	if err := c.Decode(p, &s); err != nil || !reflect.DeepEqual(s, []any{int64(1), "a"}) {
		t.Errorf("Decode into *[]any = %#v, %v", s, err)
	}
	p, _ = c.Append(nil, map[string]any{"k": 2})
	var m map[string]any
	if err := c.Decode(p, &m); err != nil || !reflect.DeepEqual(m, map[string]any{"k": int64(2)}) {
		t.Errorf("Decode into *map[string]any = %#v, %v", m, err)
	}
	// A payload that does not fit the generic target gets the library's error.
	if err := c.Decode([]byte{0x01}, &s); err == nil {
		t.Error("integer decoded into []any")
	}
	// Null into a generic slice is its zero value, as the library does.
	s = []any{1}
	if err := c.Decode([]byte{0xf6}, &s); err != nil || s != nil {
		t.Errorf("null into []any = %#v, %v", s, err)
	}
}

func TestJSONAppend(t *testing.T) {
	c := mustNew(t, JSON, 0)
	p, err := c.Append(nil, map[string]any{"html": "<a&b>", "n": 1})
	if err != nil {
		t.Fatal(err)
	}
	if string(p) != `{"html":"<a&b>","n":1}` {
		t.Errorf("json Append = %s (want no HTML escaping, no newline)", p)
	}
	if _, err := c.Append(nil, math.NaN()); err == nil {
		t.Error("NaN encoded as JSON")
	}
	if _, err := c.Append(nil, make(chan int)); err == nil {
		t.Error("channel encoded as JSON")
	}
}

// TestJSONFastPath checks the hand-written encodings against encoding/json.
func TestJSONFastPath(t *testing.T) {
	vals := []any{nil, true, false, "", "abc", "a b/c~", int(-5), int64(math.MinInt64), int32(7), uint64(math.MaxUint64), uint32(9), uint(3)}
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1.5, 0.1, 1e20, 1e21, 1e-6, 9.99e-7, 1e-7, 123456789012345678, 5e-324, math.MaxFloat64, 1.7976931348623157e308, 3e-10} {
		vals = append(vals, f, -f)
	}
	for _, v := range vals {
		checkJSONFast(t, v)
	}
}

func checkJSONFast(t *testing.T, v any) {
	t.Helper()
	got, ok := appendJSONFast(nil, v)
	if !ok {
		t.Errorf("no fast path for %T %v", v, v)
		return
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	if want := bytes.TrimSuffix(buf.Bytes(), []byte("\n")); !bytes.Equal(got, want) {
		t.Errorf("fast JSON of %T %v = %s, encoding/json %s", v, v, got, want)
	}
}

func TestJSONDecodeAny(t *testing.T) {
	cases := []struct {
		in   string
		want any
	}{
		{"0", int64(0)},
		{" -12 ", int64(-12)},
		{"9223372036854775807", int64(math.MaxInt64)},
		{"9223372036854775808", uint64(1 << 63)},
		{"18446744073709551616", 18446744073709551616.0},
		{"1.5", 1.5},
		{"2.0", 2.0},
		{"1e3", 1000.0},
		{"-0", int64(0)},
		{"true", true},
		{"null", nil},
		{`"plain"`, "plain"},
		{`"esc\n\u00e9"`, "esc\né"},
		{`[1, 2.5, "x", null, [true]]`, []any{int64(1), 2.5, "x", nil, []any{true}}},
		{`{"a": 1, "b": {"c": [1e2, 7]}}`, map[string]any{"a": int64(1), "b": map[string]any{"c": []any{100.0, int64(7)}}}},
	}
	c := mustNew(t, JSON, 0)
	for _, tc := range cases {
		got, err := c.DecodeAny([]byte(tc.in))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("DecodeAny(%s) = %#v (%T), %v; want %#v (%T)", tc.in, got, got, err, tc.want, tc.want)
		}
	}
	for _, bad := range []string{"", " ", "1 2", "[1", "01", "+1", ".5", "NaN", "1e400", `"a`, "tru", `{"a":1}x`} {
		if v, err := c.DecodeAny([]byte(bad)); err == nil {
			t.Errorf("DecodeAny(%q) = %#v, want an error", bad, v)
		}
	}
}

func TestJSONGenericTargets(t *testing.T) {
	c := mustNew(t, JSON, 0)
	var s []any
	if err := c.Decode([]byte(`[1, 1.5]`), &s); err != nil || !reflect.DeepEqual(s, []any{int64(1), 1.5}) {
		t.Errorf("Decode into *[]any = %#v, %v", s, err)
	}
	var m map[string]any
	if err := c.Decode([]byte(`{"n": 3}`), &m); err != nil || !reflect.DeepEqual(m, map[string]any{"n": int64(3)}) {
		t.Errorf("Decode into *map[string]any = %#v, %v", m, err)
	}
	if err := c.Decode([]byte(`5`), &m); err == nil {
		t.Error("number decoded into a map")
	}
}

func TestBytesCodec(t *testing.T) {
	c := mustNew(t, Bytes, 4)
	type quad [4]byte
	for _, v := range []any{[]byte("abcd"), "abcd", [4]byte{'a', 'b', 'c', 'd'}, quad{'a', 'b', 'c', 'd'}, &[4]byte{'a', 'b', 'c', 'd'}, json.RawMessage("abcd")} {
		p, err := c.Append([]byte("x"), v)
		if err != nil || string(p) != "xabcd" {
			t.Errorf("Append(%T) = %q, %v", v, p, err)
		}
	}
	for _, v := range []any{[]byte("abc"), "abcde", [3]byte{}, [5]byte{}} {
		_, err := c.Append(nil, v)
		if err == nil || !strings.Contains(err.Error(), "the block size is 4") {
			t.Errorf("Append(%T of wrong size) error = %v", v, err)
		}
	}
	if _, err := c.Append(nil, 42); err == nil {
		t.Error("bytes codec encoded an int")
	}
	payload := []byte("wxyz")
	var b []byte
	var s string
	var a [4]byte
	var q quad
	var x any
	for _, p := range []any{&b, &s, &a, &q, &x} {
		if err := c.Decode(payload, p); err != nil {
			t.Errorf("Decode into %T: %v", p, err)
		}
	}
	payload[0] = 'W' // the decoded values must be copies
	if string(b) != "wxyz" || s != "wxyz" || string(a[:]) != "wxyz" || string(q[:]) != "wxyz" || string(x.([]byte)) != "wxyz" {
		t.Errorf("decoded %q %q %q %q %q", b, s, a, q, x)
	}
	var wrong [3]byte
	if err := c.Decode(payload, &wrong); err == nil {
		t.Error("decoded 4 bytes into [3]byte")
	}
	if err := c.Decode([]byte("abc"), &b); err == nil || !strings.Contains(err.Error(), "payload has 3 bytes, the block size is 4") {
		t.Errorf("short payload error = %v", err)
	}
	if _, err := c.DecodeAny([]byte("abcde")); err == nil {
		t.Error("DecodeAny of a long payload succeeded")
	}
	var n int
	if err := c.Decode(payload, &n); err == nil {
		t.Error("decoded bytes into an int")
	}
}

func TestNewDecoder(t *testing.T) {
	for _, name := range []string{CBOR, JSON} {
		c := mustNew(t, name, 0)
		dec, err := NewDecoder(c, typeAny)
		if err != nil {
			t.Fatal(err)
		}
		// An any result has type any even when the value is nil, so reflect.Call accepts it.
		v, err := dec(c.Zero())
		if err != nil || v.Type() != typeAny {
			t.Errorf("%s: any decoder gave %v of type %v, %v", name, v, v.Type(), err)
		}
		p, _ := c.Append(nil, 7)
		if v, err = dec(p); err != nil || v.Interface() != int64(7) {
			t.Errorf("%s: any decoder of 7 gave %#v, %v", name, v.Interface(), err)
		}
		// The fast paths fall back to the general path for what they do not handle.
		for typ, payloadVal := range map[reflect.Type]any{typeInt: nil, typeFloat64: 3, typeString: "é\n", typeInt64: nil, typeBool: true} {
			dec, err := NewDecoder(c, typ)
			if err != nil {
				t.Fatal(err)
			}
			p, _ := c.Append(nil, payloadVal)
			v, err := dec(p)
			if err != nil || v.Type() != typ {
				t.Errorf("%s: decoder for %v of %q: %v, %v", name, typ, p, v, err)
			}
		}
		intDec, _ := NewDecoder(c, typeInt)
		if _, err := intDec([]byte(`"x"`)); err == nil {
			t.Errorf("%s: int decoder accepted garbage", name)
		}
		if _, err := NewDecoder(c, reflect.TypeFor[error]()); err == nil {
			t.Errorf("%s: decoder for a non-empty interface", name)
		}
	}
	bc := mustNew(t, Bytes, 4)
	for _, typ := range []reflect.Type{typeBytes, typeString, reflect.TypeFor[[4]byte](), typeAny, reflect.TypeFor[json.RawMessage]()} {
		dec, err := NewDecoder(bc, typ)
		if err != nil {
			t.Errorf("bytes decoder for %v: %v", typ, err)
			continue
		}
		v, err := dec([]byte("abcd"))
		if err != nil || v.Type() != typ {
			t.Errorf("bytes decoder for %v gave %v, %v", typ, v, err)
		}
		if _, err := dec([]byte("abc")); err == nil {
			t.Errorf("bytes decoder for %v accepted 3 bytes", typ)
		}
	}
	for _, typ := range []reflect.Type{typeInt, reflect.TypeFor[[3]byte](), reflect.TypeFor[[]int](), reflect.TypeFor[error]()} {
		if _, err := NewDecoder(bc, typ); err == nil {
			t.Errorf("bytes decoder for %v accepted at construction", typ)
		}
	}
	if _, err := NewDecoder(nil, typeInt); err == nil {
		t.Error("NewDecoder(nil codec) succeeded")
	}
}
