package codec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

func FuzzDecodeBlock(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 2, 0xe0, 1, 2, 3}, uint8(1))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uint8(2))
	f.Add([]byte{1, 2, 3}, uint8(4))
	f.Add([]byte{}, uint8(0))
	f.Add(make([]byte, 12), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, hs uint8) {
		size := int(hs % 6) // includes invalid sizes 0 and 5
		b, err := DecodeBlock(data, size)
		if err != nil {
			return
		}
		if again := AppendBlock(nil, b, size); !bytes.Equal(again, data) {
			t.Fatalf("block %x (head %d) re-encoded to %x", data, size, again)
		}
	})
}

func FuzzSplitBatch(f *testing.F) {
	batch := AppendBatchEntry(nil, Block{SQN: 1, Head: 0x80, Payload: []byte("abc")}, 1)
	batch = AppendBatchEntry(batch, Block{SQN: 2, Payload: nil}, 1)
	f.Add(batch, uint8(1))
	f.Add(AppendBatchEntry(nil, Block{SQN: 7, Head: 0xffff, Payload: []byte{9}}, 2), uint8(2))
	f.Add([]byte{0, 0, 0, 9, 1}, uint8(1))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0}, uint8(3))
	f.Add([]byte{0, 0}, uint8(4))
	f.Fuzz(func(t *testing.T, data []byte, hs uint8) {
		size := int(hs%4) + 1
		var again []byte
		err := SplitBatch(data, size, func(b Block) error {
			again = AppendBatchEntry(again, b, size)
			return nil
		})
		if err == nil && !bytes.Equal(again, data) {
			t.Fatalf("batch %x (head %d) re-encoded to %x", data, size, again)
		}
	})
}

// fuzzFrames reads every frame of stream with c, then checks that each payload, framed again on
// its own, reads back unchanged. Errors are fine; panics and hangs are not. It returns the
// payloads read.
func fuzzFrames(t *testing.T, c Codec, stream []byte) [][]byte {
	// A tiny buffer makes frames straddle buffer refills (and keeps each exec cheap).
	fr := NewFrameReader(c, bufio.NewReaderSize(bytes.NewReader(stream), 16))
	var frames [][]byte
	for range len(stream) + 1 {
		p, err := fr.Next(nil)
		if err != nil {
			var fe *FrameError
			if err != io.EOF && !errors.As(err, &fe) {
				t.Fatalf("error %v is neither io.EOF nor a *FrameError", err)
			}
			if fr.Offset() > int64(len(stream)) {
				t.Fatalf("offset %d beyond the stream's %d bytes", fr.Offset(), len(stream))
			}
			break
		}
		frames = append(frames, p)
	}
	for _, p := range frames {
		again := NewFrameReader(c, bufio.NewReaderSize(bytes.NewReader(c.AppendFrame(nil, p)), 16))
		q, err := again.Next(nil)
		if err != nil || !bytes.Equal(p, q) {
			t.Fatalf("payload %q re-framed read back as %q, %v", p, q, err)
		}
		if _, err := again.Next(nil); err != io.EOF {
			t.Fatalf("payload %q re-framed: second read %v, want io.EOF", p, err)
		}
	}
	return frames
}

func FuzzFrameCBOR(f *testing.F) {
	c := mustNew(f, CBOR, 0)
	seed := []byte{}
	for _, v := range roundTripValues() {
		p, _ := c.Append(nil, v)
		seed = c.AppendFrame(seed, p)
		f.Add(p)
	}
	f.Add(seed)
	for _, s := range []string{"", "\x9f\x01\x02", "\x5f\x41\x01\xff", "\xbf\x61\x61\x01\xff", "\xff", "\x1c",
		"\xf8\x10", "\x5b\xff\xff\xff\xff\xff\xff\xff\xff", "\xc1\xfb\x41\xd4\x52\xd9\xec\x20\x00\x00",
		"\xa2\x01\x02\x61\x61\x03", "\x7f\x61\xff\xff", "\xd9\xd9\xf7\x81\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		// Arbitrary bytes as a payload (any NATS client can publish one).
		_, _ = c.DecodeAny(stream)
		var v any
		_ = c.Decode(stream, &v)
		for _, p := range fuzzFrames(t, c, stream) {
			// The library found the frame well-formed; our generic decoder must agree with the
			// library's on which items decode.
			_, err := c.DecodeAny(p)
			var x any
			libErr := theCBOR.dm.Unmarshal(p, &x)
			if (err == nil) != (libErr == nil) {
				t.Fatalf("item %x: DecodeAny says %v, the library says %v", p, err, libErr)
			}
		}
	})
}

func FuzzFrameJSON(f *testing.F) {
	c := mustNew(f, JSON, 0)
	for _, s := range []string{"1\n2\n", "{\"a\": [1, 2.5, null]}\r\n", "\n\n1\n\n", "1\n{bad\n", "1\n2",
		"\"x\\ny\"\n", "  [ ]  \n", "1e400\n", "\xff\n", "\r\r\n", "1\r\r\n", "{\"a\":\n1}\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, stream []byte) {
		_, _ = c.DecodeAny(stream)
		for _, p := range fuzzFrames(t, c, stream) {
			// Every frame is valid JSON; DecodeAny fails only where encoding/json also fails
			// (a number out of range).
			got, err := c.DecodeAny(p)
			var std any
			stdErr := json.Unmarshal(p, &std)
			if (err == nil) != (stdErr == nil) {
				t.Fatalf("frame %q: DecodeAny %#v, %v; encoding/json %v", p, got, err, stdErr)
			}
		}
	})
}

func FuzzFrameBytes(f *testing.F) {
	f.Add([]byte("abcdefgh"), uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("x"), uint8(15))
	f.Fuzz(func(t *testing.T, stream []byte, size uint8) {
		c := mustNew(t, Bytes, int(size%16)+1)
		frames := fuzzFrames(t, c, stream)
		if n := len(stream) / len(c.Zero()); len(frames) != n {
			t.Fatalf("%d bytes in blocks of %d gave %d frames", len(stream), len(c.Zero()), len(frames))
		}
	})
}

// FuzzCBORFast: the hand-written encodings must equal the library's for every value.
func FuzzCBORFast(f *testing.F) {
	f.Add(int64(0), uint64(0), 0.0, float32(0), "", []byte(nil))
	f.Add(int64(-1<<63), uint64(1<<64-1), 65504.0, float32(1e-40), "\xff", []byte{1})
	f.Fuzz(func(t *testing.T, i int64, u uint64, fl float64, f32 float32, s string, b []byte) {
		for _, v := range []any{i, int(i), int32(i), u, uint32(u), fl, f32, s, b} {
			checkCBORFast(t, v)
		}
	})
}

// FuzzJSONFast: the hand-written encodings must equal encoding/json's.
func FuzzJSONFast(f *testing.F) {
	f.Add(int64(0), uint64(0), 0.0, "")
	f.Add(int64(-1<<63), uint64(1<<64-1), 1e-7, "a~")
	f.Fuzz(func(t *testing.T, i int64, u uint64, fl float64, s string) {
		vals := []any{i, int(i), u}
		if fl == fl && fl-fl == 0 { // finite
			vals = append(vals, fl)
		}
		if plainASCII(s) {
			vals = append(vals, s)
		}
		for _, v := range vals {
			checkJSONFast(t, v)
		}
	})
}
