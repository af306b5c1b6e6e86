package execjob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/marvelo/marvelo/codec"
)

// Opening the streams never blocks and never deadlocks, whatever order the program opens its
// files in, or if it never opens some:
//
//   - fd mode: the adapter makes an OS pipe per stream and passes the program's end as an
//     inherited descriptor (ExtraFiles: fds 3, 4, ... — inputs first, then outputs).
//   - fifo mode: the adapter makes the named pipes and opens both its end and, without
//     blocking, a "keep" end of the opposite direction: a reader on each input, a writer on
//     each output. The program's opens then find the other side open and return at once, and
//     a program may close and reopen a named pipe (as shell scripts do with `read < in` or
//     `>> out`) without losing data. The keep ends are closed when the program exits: writes to
//     its inputs then fail with EPIPE, and its outputs end once their data has been read.

// inStream is one input: the adapter writes the program's blocks to it.
type inStream struct {
	pipe       int
	c          codec.Codec
	blockCount int
	size       int      // block size of a bytes codec, 0 for the others
	f          *os.File // the adapter's write end
	keep       *os.File // fifo mode: a reader held while the program runs
	buf        []byte

	closedByUs atomic.Bool // CloseInputs or Stop closed it
	closeOnce  sync.Once
	goneOnce   sync.Once
}

func newInStream(pt Port, f, keep *os.File) *inStream {
	s := &inStream{pipe: pt.Pipe, c: pt.Codec, blockCount: max(pt.BlockCount, 1), f: f, keep: keep}
	if pt.Codec.Name() == codec.Bytes {
		s.size = len(pt.Codec.Zero())
	}
	return s
}

func (s *inStream) close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closedByUs.Store(true)
		err = s.f.Close()
	})
	return err
}

// programGone closes the keep end and the write end: nothing reads the input any more.
func (s *inStream) programGone() {
	s.goneOnce.Do(func() {
		if s.keep != nil {
			s.keep.Close()
		}
		s.closeOnce.Do(func() { s.f.Close() })
	})
}

// outStream is one output: the adapter reads the program's blocks from it.
type outStream struct {
	pipe int
	f    *os.File // the adapter's read end
	keep *os.File // fifo mode: a writer held while the program runs
	fr   *codec.FrameReader
	err  error // sticky: the error ReadOutput returned

	closeOnce sync.Once
	goneOnce  sync.Once
}

func newOutStream(pt Port, f, keep *os.File) *outStream {
	return &outStream{pipe: pt.Pipe, f: f, keep: keep, fr: codec.NewFrameReader(pt.Codec, f)}
}

func (s *outStream) close() { s.closeOnce.Do(func() { s.f.Close() }) }

func (s *outStream) programGone() {
	s.goneOnce.Do(func() {
		if s.keep != nil {
			s.keep.Close()
		}
	})
}

// openPipes makes the OS pipes of fd mode. child holds the program's ends, in ExtraFiles order.
func (p *Process) openPipes(s Spec) (in, out []string, child []*os.File, err error) {
	for _, pt := range s.Inputs {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, child, fmt.Errorf("input pipe %d: %w", pt.Pipe, err)
		}
		p.ins = append(p.ins, newInStream(pt, w, nil))
		child = append(child, r)
		in = append(in, strconv.Itoa(2+len(child)))
	}
	for _, pt := range s.Outputs {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, child, fmt.Errorf("output pipe %d: %w", pt.Pipe, err)
		}
		p.outs = append(p.outs, newOutStream(pt, r, nil))
		child = append(child, w)
		out = append(out, strconv.Itoa(2+len(child)))
	}
	return in, out, child, nil
}

// openFIFOs makes the named pipes of fifo mode in a private folder under the working directory
// and opens the adapter's ends.
func (p *Process) openFIFOs(wd string, s Spec) (in, out []string, err error) {
	dir, err := makeFIFODir(wd, s)
	if err != nil {
		return nil, nil, err
	}
	p.fifoDir = dir
	for _, pt := range s.Inputs {
		path := filepath.Join(dir, "in_"+strconv.Itoa(pt.Pipe))
		if err := mkfifo(path); err != nil {
			return nil, nil, fmt.Errorf("input pipe %d: %w", pt.Pipe, err)
		}
		keep, err := os.OpenFile(path, os.O_RDONLY|oNonblock, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("input pipe %d: %w", pt.Pipe, err)
		}
		w, err := os.OpenFile(path, os.O_WRONLY|oNonblock, 0)
		if err != nil {
			keep.Close()
			return nil, nil, fmt.Errorf("input pipe %d: %w", pt.Pipe, err)
		}
		p.ins = append(p.ins, newInStream(pt, w, keep))
		in = append(in, path)
	}
	for _, pt := range s.Outputs {
		path := filepath.Join(dir, "out_"+strconv.Itoa(pt.Pipe))
		if err := mkfifo(path); err != nil {
			return nil, nil, fmt.Errorf("output pipe %d: %w", pt.Pipe, err)
		}
		r, err := os.OpenFile(path, os.O_RDONLY|oNonblock, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("output pipe %d: %w", pt.Pipe, err)
		}
		keep, err := os.OpenFile(path, os.O_WRONLY|oNonblock, 0)
		if err != nil {
			r.Close()
			return nil, nil, fmt.Errorf("output pipe %d: %w", pt.Pipe, err)
		}
		p.outs = append(p.outs, newOutStream(pt, r, keep))
		out = append(out, path)
	}
	return in, out, nil
}

// makeFIFODir makes WorkDir/.marvelo-fifo/<pipeline>-<job>-<random>, private to the worker's user.
// Several jobs may share a working directory, and each removes .marvelo-fifo when it is empty:
// a removal racing with this creation is retried.
func makeFIFODir(wd string, s Spec) (string, error) {
	root := filepath.Join(wd, fifoRoot)
	prefix := fmt.Sprintf("%s-%d-", sanitize(s.Pipeline), s.JobID)
	var err error
	for range 5 {
		if err = os.MkdirAll(root, 0o700); err != nil {
			break
		}
		var dir string
		if dir, err = os.MkdirTemp(root, prefix); err == nil {
			return dir, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	return "", fmt.Errorf("folder for named pipes: %w", err)
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// WriteRound writes one compute block to the program: for each input k, its block_count blocks
// payloads[k][0..], each as [head bytes, if the job has heads] [codec frame]. heads[k][i] is the
// head of payloads[k][i]; heads may be nil (zero heads) and is ignored for jobs without heads.
// Each input's blocks are buffered and written with one write; several inputs are written
// concurrently, so a program that reads its inputs in any order does not deadlock the adapter.
//
// WriteRound blocks while the program does not read (backpressure) and returns when ctx is
// cancelled (ctx's error), when the program exits or closes an input (an error wrapping
// ErrInputClosed), or when the job is stopped (ErrStopped). It must not be called concurrently
// with itself or CloseInputs.
func (p *Process) WriteRound(ctx context.Context, payloads [][][]byte, heads [][]uint32) error {
	if len(payloads) != len(p.ins) {
		return fmt.Errorf("%s: WriteRound got %d inputs, the job has %d", p.label, len(payloads), len(p.ins))
	}
	if heads != nil && len(heads) != len(p.ins) {
		return fmt.Errorf("%s: WriteRound got heads for %d inputs, the job has %d", p.label, len(heads), len(p.ins))
	}
	for k, in := range p.ins {
		if len(payloads[k]) != in.blockCount {
			return fmt.Errorf("%s: input pipe %d: WriteRound got %d blocks, block_count is %d",
				p.label, in.pipe, len(payloads[k]), in.blockCount)
		}
		in.buf = in.buf[:0]
		for i, pl := range payloads[k] {
			if in.size > 0 && len(pl) != in.size {
				return fmt.Errorf("%s: input pipe %d: block of %d bytes, the block size is %d",
					p.label, in.pipe, len(pl), in.size)
			}
			if p.head {
				var h uint32
				if heads != nil && i < len(heads[k]) {
					h = heads[k][i]
				}
				in.buf = codec.AppendHead(in.buf, h, p.headSize)
			}
			in.buf = in.c.AppendFrame(in.buf, pl)
		}
	}
	switch len(p.ins) {
	case 0:
		return nil
	case 1:
		return p.write(ctx, p.ins[0])
	}
	errs := make([]error, len(p.ins))
	var wg sync.WaitGroup
	for k := 1; k < len(p.ins); k++ {
		wg.Go(func() { errs[k] = p.write(ctx, p.ins[k]) })
	}
	errs[0] = p.write(ctx, p.ins[0])
	wg.Wait()
	return errors.Join(errs...)
}

// aLongTimeAgo is a deadline in the past, which interrupts a pending write.
var aLongTimeAgo = time.Unix(1, 0)

// write writes in.buf, interrupted by ctx.
func (p *Process) write(ctx context.Context, in *inStream) error {
	if in.closedByUs.Load() {
		return p.inputErr(ctx, in, os.ErrClosed)
	}
	var stop func() bool
	var fired chan struct{}
	if ctx.Done() != nil {
		fired = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			in.f.SetWriteDeadline(aLongTimeAgo)
			close(fired)
		})
	}
	_, err := in.f.Write(in.buf)
	if stop != nil && !stop() {
		<-fired
		in.f.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		return p.inputErr(ctx, in, err)
	}
	return nil
}

func (p *Process) inputErr(ctx context.Context, in *inStream, err error) error {
	switch {
	case p.stopping.Load():
		return fmt.Errorf("%s: input pipe %d: %w", p.label, in.pipe, ErrStopped)
	case errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil:
		return fmt.Errorf("%s: input pipe %d: %w", p.label, in.pipe, ctx.Err())
	case errors.Is(err, os.ErrClosed) && in.closedByUs.Load() && !isClosed(p.exited):
		return fmt.Errorf("%s: input pipe %d: written after CloseInputs", p.label, in.pipe)
	case errors.Is(err, syscall.EPIPE), errors.Is(err, os.ErrClosed):
		return fmt.Errorf("%s: input pipe %d: %w", p.label, in.pipe, ErrInputClosed)
	}
	return fmt.Errorf("%s: input pipe %d: %w", p.label, in.pipe, err)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// CloseInputs closes every input stream: the program reads EOF after the data already written
// (upstream has finished). Safe to call more than once.
func (p *Process) CloseInputs() error {
	var errs []error
	for _, in := range p.ins {
		if err := in.close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("%s: input pipe %d: %w", p.label, in.pipe, err))
		}
	}
	return errors.Join(errs...)
}

// ReadOutput reads the next block the program wrote to output k and appends its payload (the
// codec's bytes, without framing) to dst; head is the block's head (0 for jobs without heads).
// It returns io.EOF once the program has closed the output (fd mode) or exited (fifo mode: a
// program may close and reopen a named pipe) and every block has been read. Any other error is
// final for that output: a malformed frame or a stream that ends inside a block names job, pipe
// and byte offset ("job 6 (reduce.py): output pipe 106: json frame at byte 120: invalid JSON
// ..."), and unwraps to a *codec.FrameError; after Stop, errors wrap ErrStopped. The stream is
// unusable after an error: the caller fails the job and stops the program.
//
// Each output must be read (by one goroutine at a time) while inputs are written: a program
// blocked on a full output stops reading its inputs. The output is closed at its first error.
func (p *Process) ReadOutput(k int, dst []byte) (payload []byte, head uint32, err error) {
	o := p.outs[k]
	if o.err != nil {
		return dst, 0, o.err
	}
	if p.head {
		head, err = o.fr.ReadHead(p.headSize)
	}
	if err == nil {
		payload, err = o.fr.Next(dst)
	}
	if err != nil {
		o.err = p.outputErr(o, err)
		o.close()
		return dst, 0, o.err
	}
	return payload, head, nil
}

func (p *Process) outputErr(o *outStream, err error) error {
	switch {
	case err == io.EOF && !p.stopping.Load():
		return io.EOF
	case p.stopping.Load() && (err == io.EOF || errors.Is(err, os.ErrClosed)):
		return fmt.Errorf("%s: output pipe %d: %w", p.label, o.pipe, ErrStopped)
	case p.stopping.Load():
		return fmt.Errorf("%s: output pipe %d: %w: %w", p.label, o.pipe, ErrStopped, err)
	}
	return fmt.Errorf("%s: output pipe %d: %w", p.label, o.pipe, err)
}

// OutputOffset is the number of bytes read so far from output k.
func (p *Process) OutputOffset(k int) int64 { return p.outs[k].fr.Offset() }
