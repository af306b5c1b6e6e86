package codec

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

func benchAppend(b *testing.B, c Codec, v any) {
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = c.Append(buf[:0], v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecodeAny(b *testing.B, c Codec, v any) {
	p, err := c.Append(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.DecodeAny(p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchDecoder(b *testing.B, c Codec, v any) {
	p, err := c.Append(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	dec, err := NewDecoder(c, reflect.TypeOf(v))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dec(p); err != nil {
			b.Fatal(err)
		}
	}
}

// Small ints are the common case of the examples' pipelines (counter, sum, product).
func BenchmarkCBORAppendSmallInt(b *testing.B)    { benchAppend(b, mustNew(b, CBOR, 0), 1234) }
func BenchmarkCBORDecodeAnySmallInt(b *testing.B) { benchDecodeAny(b, mustNew(b, CBOR, 0), 1234) }
func BenchmarkCBORDecoderInt(b *testing.B)        { benchDecoder(b, mustNew(b, CBOR, 0), 1234) }
func BenchmarkJSONAppendSmallInt(b *testing.B)    { benchAppend(b, mustNew(b, JSON, 0), 1234) }
func BenchmarkJSONDecodeAnySmallInt(b *testing.B) { benchDecodeAny(b, mustNew(b, JSON, 0), 1234) }
func BenchmarkJSONDecoderInt(b *testing.B)        { benchDecoder(b, mustNew(b, JSON, 0), 1234) }
func BenchmarkCBORAppendFloat(b *testing.B)       { benchAppend(b, mustNew(b, CBOR, 0), 0.1) }
func BenchmarkCBORDecoderFloat(b *testing.B)      { benchDecoder(b, mustNew(b, CBOR, 0), 0.1) }

var samples = func() []float64 {
	s := make([]float64, 256)
	for i := range s {
		s[i] = float64(i) * 0.37
	}
	return s
}()

func BenchmarkCBORAppendFloats256(b *testing.B)    { benchAppend(b, mustNew(b, CBOR, 0), samples) }
func BenchmarkCBORDecoderFloats256(b *testing.B)   { benchDecoder(b, mustNew(b, CBOR, 0), samples) }
func BenchmarkCBORDecodeAnyFloats256(b *testing.B) { benchDecodeAny(b, mustNew(b, CBOR, 0), samples) }
func BenchmarkJSONAppendFloats256(b *testing.B)    { benchAppend(b, mustNew(b, JSON, 0), samples) }
func BenchmarkJSONDecodeAnyFloats256(b *testing.B) { benchDecodeAny(b, mustNew(b, JSON, 0), samples) }

func BenchmarkJSONAppendStruct(b *testing.B) {
	benchAppend(b, mustNew(b, JSON, 0), point{X: 1, Y: 2, Label: "p", Tags: []string{"a"}})
}

func BenchmarkCBORAppendStruct(b *testing.B) {
	benchAppend(b, mustNew(b, CBOR, 0), point{X: 1, Y: 2, Label: "p", Tags: []string{"a"}})
}

func BenchmarkBytesAppend64(b *testing.B) { benchAppend(b, mustNew(b, Bytes, 64), make([]byte, 64)) }
func BenchmarkBytesDecodeAny64(b *testing.B) {
	benchDecodeAny(b, mustNew(b, Bytes, 64), make([]byte, 64))
}

// BenchmarkBatch256 builds and splits a batch of 256 blocks of an 8-byte payload: one op is
// 256 blocks.
func BenchmarkBatch256(b *testing.B) {
	payload := make([]byte, 8)
	buf := make([]byte, 0, 256*(4+8+1+8))
	n := 0
	count := func(Block) error { n++; return nil }
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range 256 {
			buf = AppendBatchEntry(buf, Block{SQN: uint64(i), Head: 0x80, Payload: payload}, 1)
		}
		if err := SplitBatch(buf, 1, count); err != nil {
			b.Fatal(err)
		}
	}
	if n%256 != 0 {
		b.Fatal(n)
	}
}

func benchFrames(b *testing.B, c Codec, v any) {
	p, err := c.Append(nil, v)
	if err != nil {
		b.Fatal(err)
	}
	var stream []byte
	for range 1024 {
		stream = c.AppendFrame(stream, p)
	}
	rd := bytes.NewReader(stream)
	br := bufio.NewReader(rd)
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		rd.Reset(stream)
		br.Reset(rd)
		fr := FrameReader{c: c, r: br, sc: c.(streamCodec)}
		for {
			if _, err := fr.Next(dst[:0]); err != nil {
				break
			}
		}
	}
}

// One op reads 1024 frames.
func BenchmarkFramesCBOR1024(b *testing.B)  { benchFrames(b, mustNew(b, CBOR, 0), []int{1, 2, 3}) }
func BenchmarkFramesJSON1024(b *testing.B)  { benchFrames(b, mustNew(b, JSON, 0), []int{1, 2, 3}) }
func BenchmarkFramesBytes1024(b *testing.B) { benchFrames(b, mustNew(b, Bytes, 64), make([]byte, 64)) }
