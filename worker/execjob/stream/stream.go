// Package stream is for authors of executable jobs written in Go: it parses the command line the
// marvelo adapter builds,
//
//	PROGRAM PARAMS... -i IN_1 -i IN_2 ... -o OUT_1 ...
//
// opens the streams (IN/OUT are paths of named pipes in fifo mode, numbers of inherited file
// descriptors in fd mode) and reads and writes framed blocks, with their heads, per codec. It
// imports only package codec: a job's executable does not pull in NATS or the worker.
//
// A copy job:
//
//	func main() {
//		j, err := stream.Open(os.Args[1:], stream.Config{Format: stream.Format{Codec: "json"}})
//		if err != nil { log.Fatal(err) }
//		defer j.Close()
//		for {
//			payload, head, err := j.In[0].Next(nil)
//			if err == io.EOF { break }
//			if err != nil { log.Fatal(err) }
//			if err := j.Out[0].Write(payload, head); err != nil { log.Fatal(err) }
//		}
//	}
//
// Writers are buffered; a Job's readers flush every writer of the job before they wait for
// input, so blocks leave as soon as the program has nothing else to do, without a write per
// block.
package stream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/marvelo/marvelo/codec"
)

// Default flags, as the adapter uses them unless a job sets exec.input_flag / exec.output_flag.
const (
	DefaultInputFlag  = "-i"
	DefaultOutputFlag = "-o"
)

// Args is a parsed command line.
type Args struct {
	// Params are the arguments that are neither a stream flag nor its value, in order: the
	// job's exec.params, to parse with package flag or by hand.
	Params []string
	// Inputs and Outputs are the values of the input and output flags, in order: a path in fifo
	// mode, a decimal file descriptor number in fd mode.
	Inputs, Outputs []string
}

// ParseArgs splits args (os.Args[1:]) into params and streams. inputFlag and outputFlag default
// to "-i" and "-o". A flag takes the next argument as its value ("-i 3"); "FLAG=VALUE" works too.
func ParseArgs(args []string, inputFlag, outputFlag string) (Args, error) {
	if inputFlag == "" {
		inputFlag = DefaultInputFlag
	}
	if outputFlag == "" {
		outputFlag = DefaultOutputFlag
	}
	if inputFlag == outputFlag {
		return Args{}, fmt.Errorf("input flag and output flag are both %q", inputFlag)
	}
	var a Args
	for i := 0; i < len(args); i++ {
		arg := args[i]
		var dst *[]string
		var flag string
		switch {
		case arg == inputFlag || strings.HasPrefix(arg, inputFlag+"="):
			dst, flag = &a.Inputs, inputFlag
		case arg == outputFlag || strings.HasPrefix(arg, outputFlag+"="):
			dst, flag = &a.Outputs, outputFlag
		default:
			a.Params = append(a.Params, arg)
			continue
		}
		if v, ok := strings.CutPrefix(arg, flag+"="); ok {
			*dst = append(*dst, v)
			continue
		}
		if i+1 >= len(args) {
			return Args{}, fmt.Errorf("flag %s needs a value (a path or a file descriptor number)", flag)
		}
		i++
		*dst = append(*dst, args[i])
	}
	return a, nil
}

// IsFD reports whether a stream value is a file descriptor number (fd mode) rather than a path.
func IsFD(value string) bool {
	if value == "" {
		return false
	}
	for _, c := range value {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// OpenInput opens an input stream value: an inherited descriptor or a named pipe (read-only).
func OpenInput(value string) (*os.File, error) { return open(value, os.O_RDONLY) }

// OpenOutput opens an output stream value: an inherited descriptor or a named pipe (write-only).
func OpenOutput(value string) (*os.File, error) { return open(value, os.O_WRONLY) }

func open(value string, flag int) (*os.File, error) {
	if !IsFD(value) {
		return os.OpenFile(value, flag, 0)
	}
	fd, err := strconv.Atoi(value)
	if err != nil || fd < 0 {
		return nil, fmt.Errorf("file descriptor %q: not a valid number", value)
	}
	f := os.NewFile(uintptr(fd), "fd "+value)
	if f == nil {
		return nil, fmt.Errorf("file descriptor %s is not valid", value)
	}
	if _, err := f.Stat(); err != nil {
		return nil, fmt.Errorf("file descriptor %s is not open: %w", value, err)
	}
	return f, nil
}

// Reader reads the blocks of one input stream.
type Reader struct {
	name     string
	c        codec.Codec
	headSize int
	fr       *codec.FrameReader
}

// NewReader reads blocks of codec c from r; headSize is 0 when blocks carry no head (the job's
// head is false), else its head_size (1 to 4). name labels errors ("input 1 (fd 3)").
func NewReader(r io.Reader, c codec.Codec, headSize int, name string) *Reader {
	return &Reader{name: name, c: c, headSize: headSize, fr: codec.NewFrameReader(c, r)}
}

// Next reads one block and appends its payload (without framing) to dst. It returns io.EOF at
// a clean end of the stream; a malformed or truncated block is an error naming the stream and
// the byte offset.
func (r *Reader) Next(dst []byte) (payload []byte, head uint32, err error) {
	if r.headSize > 0 {
		if head, err = r.fr.ReadHead(r.headSize); err != nil {
			return dst, 0, r.wrap(err)
		}
	}
	payload, err = r.fr.Next(dst)
	if err != nil {
		return dst, 0, r.wrap(err)
	}
	return payload, head, nil
}

// NextSQN reads one block of a stream with SQNs ("exec": {"sqn": true}): its 8-byte SQN, then
// as Next.
func (r *Reader) NextSQN(dst []byte) (payload []byte, head uint32, sqn uint64, err error) {
	if sqn, err = r.fr.ReadSQN(); err != nil {
		return dst, 0, 0, r.wrap(err)
	}
	payload, head, err = r.Next(dst)
	return payload, head, sqn, err
}

// Decode reads one block and decodes it into ptr with the stream's codec.
func (r *Reader) Decode(ptr any) (head uint32, err error) {
	payload, head, err := r.Next(nil)
	if err != nil {
		return 0, err
	}
	if err := r.c.Decode(payload, ptr); err != nil {
		return 0, fmt.Errorf("%s: block before byte %d: %w", r.name, r.fr.Offset(), err)
	}
	return head, nil
}

// Offset is the number of bytes read from the stream so far.
func (r *Reader) Offset() int64 { return r.fr.Offset() }

// Codec is the stream's codec.
func (r *Reader) Codec() codec.Codec { return r.c }

func (r *Reader) wrap(err error) error {
	if err == io.EOF {
		return io.EOF
	}
	return fmt.Errorf("%s: %w", r.name, err)
}

// Writer writes the blocks of one output stream, buffered: Flush (or Job's readers) sends them.
type Writer struct {
	name     string
	c        codec.Codec
	headSize int
	size     int // block size of a bytes codec
	w        *bufio.Writer
	buf      []byte
	sqn      []byte
}

// NewWriter writes blocks of codec c to w; headSize as for NewReader.
func NewWriter(w io.Writer, c codec.Codec, headSize int, name string) *Writer {
	wr := &Writer{name: name, c: c, headSize: headSize, w: bufio.NewWriterSize(w, 64<<10)}
	if c.Name() == codec.Bytes {
		wr.size = len(c.Zero())
	}
	return wr
}

// Write writes one block: its head (when the stream has heads) and the framed payload, which is
// the codec's bytes of one value (for bytes: exactly block_size bytes).
func (w *Writer) Write(payload []byte, head uint32) error {
	return w.write(nil, payload, head)
}

// WriteSQN writes one block of a stream with SQNs ("exec": {"sqn": true}): sqn (8 bytes,
// big-endian), then as Write. The SQN names the round the block answers.
func (w *Writer) WriteSQN(sqn uint64, payload []byte, head uint32) error {
	return w.write(codec.AppendSQN(w.sqn[:0], sqn), payload, head)
}

func (w *Writer) write(prefix, payload []byte, head uint32) error {
	if w.size > 0 && len(payload) != w.size {
		return fmt.Errorf("%s: block of %d bytes, the block size is %d", w.name, len(payload), w.size)
	}
	w.buf = append(w.buf[:0], prefix...)
	if w.headSize > 0 {
		w.buf = codec.AppendHead(w.buf, head, w.headSize)
	}
	w.buf = w.c.AppendFrame(w.buf, payload)
	if _, err := w.w.Write(w.buf); err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
	}
	return nil
}

// Encode encodes v with the stream's codec and writes it as one block.
func (w *Writer) Encode(v any, head uint32) error {
	payload, err := w.c.Append(nil, v)
	if err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
	}
	return w.Write(payload, head)
}

// Flush sends the buffered blocks.
func (w *Writer) Flush() error {
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", w.name, err)
	}
	return nil
}

// Format is the codec of a stream, as its pipe declares it.
type Format struct {
	Codec     string // "cbor" (the default when empty), "json" or "bytes"
	BlockSize int    // bytes per block, for "bytes"
}

// NewCodec returns the stream's codec.
func (f Format) NewCodec() (codec.Codec, error) {
	name := f.Codec
	if name == "" {
		name = codec.CBOR
	}
	return codec.New(name, f.BlockSize)
}

// Config describes the streams of a job for Open.
type Config struct {
	// InputFlag and OutputFlag default to "-i" and "-o" (exec.input_flag / exec.output_flag).
	InputFlag, OutputFlag string
	// Format is every stream's codec.
	Format Format
	// Inputs and Outputs override Format per stream, where an entry has a Codec.
	Inputs, Outputs []Format
	// HeadSize is 0 for a job without heads, else its head_size (1 to 4).
	HeadSize int
}

// Job is a job's parsed command line and open streams.
type Job struct {
	Params []string
	In     []*Reader
	Out    []*Writer
	Args   Args

	files []*os.File
}

// Open parses args (os.Args[1:]), opens every stream and wraps it. Params holds the other
// arguments, in order.
func Open(args []string, cfg Config) (*Job, error) {
	a, err := ParseArgs(args, cfg.InputFlag, cfg.OutputFlag)
	if err != nil {
		return nil, err
	}
	if cfg.HeadSize < 0 || cfg.HeadSize > codec.MaxHeadSize {
		return nil, fmt.Errorf("head size %d out of range 0..%d", cfg.HeadSize, codec.MaxHeadSize)
	}
	j := &Job{Params: a.Params, Args: a}
	pick := func(list []Format, k int) (codec.Codec, error) {
		f := cfg.Format
		if k < len(list) && list[k].Codec != "" {
			f = list[k]
		}
		return f.NewCodec()
	}
	for k, v := range a.Inputs {
		name := streamName("input", k, v)
		c, err := pick(cfg.Inputs, k)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f, err := OpenInput(v)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		j.files = append(j.files, f)
		j.In = append(j.In, NewReader(flushReader{f, j}, c, cfg.HeadSize, name))
	}
	for k, v := range a.Outputs {
		name := streamName("output", k, v)
		c, err := pick(cfg.Outputs, k)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		f, err := OpenOutput(v)
		if err != nil {
			j.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		j.files = append(j.files, f)
		j.Out = append(j.Out, NewWriter(f, c, cfg.HeadSize, name))
	}
	return j, nil
}

func streamName(dir string, k int, v string) string {
	if IsFD(v) {
		return fmt.Sprintf("%s %d (fd %s)", dir, k+1, v)
	}
	return fmt.Sprintf("%s %d (%s)", dir, k+1, v)
}

// flushReader flushes the job's writers before each read of its input, which may block.
type flushReader struct {
	r io.Reader
	j *Job
}

func (f flushReader) Read(p []byte) (int, error) {
	if err := f.j.Flush(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}

// Flush sends what every output has buffered.
func (j *Job) Flush() error {
	var errs []error
	for _, w := range j.Out {
		if err := w.Flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close flushes the outputs and closes every stream: downstream reads EOF.
func (j *Job) Close() error {
	err := j.Flush()
	for _, f := range j.files {
		f.Close()
	}
	j.files = nil
	return err
}
