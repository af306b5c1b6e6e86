//go:build unix

package stream

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/marvelo/marvelo/codec"
)

func TestParseArgs(t *testing.T) {
	for _, c := range []struct {
		args          []string
		in, out       string
		params        []string
		inputs, outps []string
		err           string
	}{
		{args: []string{"--factor", "2", "-i", "/p/in_1", "-i", "/p/in_2", "-o", "/p/out_3"},
			params: []string{"--factor", "2"}, inputs: []string{"/p/in_1", "/p/in_2"}, outps: []string{"/p/out_3"}},
		{args: []string{"-x", "--in", "3", "--out=5", "--in=4", "tail"}, in: "--in", out: "--out",
			params: []string{"-x", "tail"}, inputs: []string{"3", "4"}, outps: []string{"5"}},
		{args: []string{"-i"}, err: "flag -i needs a value"},
		{args: []string{"-i", "1"}, in: "-x", out: "-x", err: `input flag and output flag are both "-x"`},
		{args: nil},
	} {
		a, err := ParseArgs(c.args, c.in, c.out)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.args, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(a.Params, c.params) || !slices.Equal(a.Inputs, c.inputs) || !slices.Equal(a.Outputs, c.outps) {
			t.Errorf("%q: %+v %v", c.args, a, err)
		}
	}
	for v, want := range map[string]bool{"3": true, "12": true, "": false, "/a/3": false, "3a": false, "-3": false} {
		if IsFD(v) != want {
			t.Errorf("IsFD(%q) = %v", v, !want)
		}
	}
}

func mustCodec(t *testing.T, name string, size int) codec.Codec {
	t.Helper()
	c, err := codec.New(name, size)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReaderWriter(t *testing.T) {
	for _, c := range []struct {
		codec    codec.Codec
		values   []any
		headSize int
	}{
		{mustCodec(t, codec.JSON, 0), []any{int64(1), "two", []any{int64(3)}}, 0},
		{mustCodec(t, codec.CBOR, 0), []any{int64(1), "two", map[string]any{"k": 3.5}}, 2},
		{mustCodec(t, codec.Bytes, 3), []any{[]byte("abc"), []byte("def")}, 1},
	} {
		var buf bytes.Buffer
		w := NewWriter(&buf, c.codec, c.headSize, "output 1")
		for i, v := range c.values {
			if err := w.Encode(v, uint32(i+1)); err != nil {
				t.Fatal(err)
			}
		}
		if buf.Len() != 0 {
			t.Errorf("%s: written before Flush", c.codec.Name())
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		r := NewReader(&buf, c.codec, c.headSize, "input 1")
		for i, want := range c.values {
			var got any
			head, err := r.Decode(&got)
			if err != nil {
				t.Fatalf("%s: block %d: %v", c.codec.Name(), i, err)
			}
			wantHead := uint32(i + 1)
			if c.headSize == 0 {
				wantHead = 0
			}
			if head != wantHead || !reflect.DeepEqual(got, want) {
				t.Errorf("%s: block %d = %v head %d, want %v head %d", c.codec.Name(), i, got, head, want, wantHead)
			}
		}
		if _, _, err := r.Next(nil); err != io.EOF {
			t.Errorf("%s: at the end: %v", c.codec.Name(), err)
		}
	}
	// A bytes block of the wrong size is refused; malformed input names the stream and offset.
	w := NewWriter(io.Discard, mustCodec(t, codec.Bytes, 3), 0, "output 2 (fd 5)")
	if err := w.Write([]byte("ab"), 0); err == nil || err.Error() != "output 2 (fd 5): block of 2 bytes, the block size is 3" {
		t.Errorf("short block: %v", err)
	}
	r := NewReader(strings.NewReader("1\nnope\n"), mustCodec(t, codec.JSON, 0), 0, "input 1 (fd 3)")
	r.Next(nil)
	if _, _, err := r.Next(nil); err == nil || !strings.HasPrefix(err.Error(), "input 1 (fd 3): json frame at byte 2: invalid JSON") {
		t.Errorf("malformed: %v", err)
	}
	r = NewReader(strings.NewReader("\x01ab"), mustCodec(t, codec.Bytes, 3), 1, "input 1")
	if _, _, err := r.Next(nil); err == nil || !strings.Contains(err.Error(), "input 1: bytes frame at byte 1: unexpected EOF") {
		t.Errorf("truncated: %v", err)
	}
}

// Open in fd mode (descriptors of this process) and fifo mode (named pipes); a Job's reader
// flushes its writers before it waits for input.
func TestOpen(t *testing.T) {
	json := Format{Codec: "json"}
	t.Run("fd", func(t *testing.T) {
		inR, inW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer outR.Close()
		// The job gets its own descriptors, as a child inherits them.
		args := []string{"--gain", "3", "-i", dup(t, inR), "-o", dup(t, outW)}
		outW.Close()
		inR.Close()
		j, err := Open(args, Config{Format: json})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(j.Params, []string{"--gain", "3"}) || len(j.In) != 1 || len(j.Out) != 1 {
			t.Fatalf("job %+v", j)
		}
		inW.WriteString("1\n2\n")
		inW.Close()
		if err := j.Out[0].Encode("first", 0); err != nil {
			t.Fatal(err)
		}
		// Reading the input flushes the output: "first" is in the pipe now.
		if p, _, err := j.In[0].Next(nil); err != nil || string(p) != "1" {
			t.Fatalf("input: %q %v", p, err)
		}
		line := make([]byte, 8)
		if n, err := outR.Read(line); err != nil || string(line[:n]) != "\"first\"\n" {
			t.Errorf("output after the read: %q %v", line[:n], err)
		}
		j.Out[0].Encode(int64(2), 0)
		j.In[0].Next(nil)
		if _, _, err := j.In[0].Next(nil); err != io.EOF {
			t.Errorf("end of input: %v", err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		rest, _ := io.ReadAll(outR)
		if string(rest) != "2\n" {
			t.Errorf("rest of the output %q", rest)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in_1"), filepath.Join(dir, "out_2")
		for _, p := range []string{in, out} {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// The adapter's ends: a reader of the output and a writer of the input, opened without
		// blocking (a reader first, as the adapter does).
		outR, err := os.OpenFile(out, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer outR.Close()
		keep, err := os.OpenFile(in, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		inW, err := os.OpenFile(in, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		j, err := Open([]string{"-i", in, "-o", out},
			Config{Format: Format{Codec: "bytes", BlockSize: 2}, HeadSize: 1})
		keep.Close()
		if err != nil {
			t.Fatal(err)
		}
		inW.Write([]byte("\x07ab\x08cd"))
		inW.Close()
		for {
			p, h, err := j.In[0].Next(nil)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Out[0].Write(p, h+1); err != nil {
				t.Fatal(err)
			}
		}
		j.Close()
		got, err := io.ReadAll(outR)
		if err != nil || string(got) != "\x08ab\x09cd" {
			t.Errorf("output %q %v", got, err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := Open([]string{"-i", "99999"}, Config{}); err == nil || !strings.Contains(err.Error(), "input 1 (fd 99999): file descriptor 99999 is not open") {
			t.Errorf("closed fd: %v", err)
		}
		if _, err := Open([]string{"-o", "/nonexistent/out"}, Config{}); err == nil || !strings.HasPrefix(err.Error(), "output 1 (/nonexistent/out): ") {
			t.Errorf("missing path: %v", err)
		}
		if _, err := Open([]string{"-i", "0"}, Config{Format: Format{Codec: "bytes"}}); err == nil || !strings.Contains(err.Error(), "block_size") {
			t.Errorf("bytes without size: %v", err)
		}
		if _, err := Open(nil, Config{HeadSize: 5}); err == nil {
			t.Error("head size 5 accepted")
		}
	})
}

// dup returns a new descriptor for f's file, as a decimal string.
func dup(t *testing.T, f *os.File) string {
	t.Helper()
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(fd)
}

// TestSQNRoundTrip: WriteSQN writes [8-byte SQN][head][frame] and NextSQN reads it back.
func TestSQNRoundTrip(t *testing.T) {
	c, err := Format{Codec: codec.JSON}.NewCodec()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, c, 1, "output 1")
	if err := w.WriteSQN(0x0102030405060708, []byte("42"), 0x80); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "\x01\x02\x03\x04\x05\x06\x07\x08\x8042\n"; buf.String() != want {
		t.Fatalf("wrote %q, want %q", buf.String(), want)
	}
	r := NewReader(&buf, c, 1, "input 1")
	payload, head, sqn, err := r.NextSQN(nil)
	if err != nil || sqn != 0x0102030405060708 || head != 0x80 || string(payload) != "42" {
		t.Fatalf("read %q head %#x sqn %#x err %v", payload, head, sqn, err)
	}
	if _, _, _, err := r.NextSQN(nil); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}
