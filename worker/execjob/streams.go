package execjob

import (
	"bytes"
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
	"github.com/marvelo/marvelo/pipeline/backoff"
)

// Opening the streams never blocks the worker and never deadlocks, whatever order the program
// opens its files in, or if it never opens some:
//
//   - fd mode: the adapter makes an OS pipe per stream and passes the program's end as an
//     inherited descriptor (ExtraFiles: fds 3, 4, ... — inputs first, then outputs).
//   - fifo mode: the adapter makes the named pipes and opens, without blocking, both its own end
//     and a "keep" end of the other direction: a reader on each input, a writer on each output.
//     The program's opens then find the other side open and return at once, in any order, at
//     any time; data written before the program opens an input waits in the pipe; a program may
//     close and reopen its output (as shell scripts do with `>> out`) without that being taken
//     for the end. When the program exits the keep ends are closed: writes to its inputs fail
//     with EPIPE, and its outputs end once their data has been read.
//   - fifo mode, CloseInputs: the program must see EOF after the data, even if it opens the
//     input only later (a slow start after a quick upstream). A named pipe's open for reading
//     waits for a writer, so the adapter keeps its write end (and the keep reader) open until the
//     program has opened the pipe, or has exited, and closes both then. "Opened" is an open of
//     the pipe's path, which the adapter watches from before the program starts (inotify
//     IN_OPEN, inputOpens), not "the pipe has a reader": a child the worker forks (another job's
//     program starting) holds a copy of every descriptor of the worker, close-on-exec ones too,
//     until its exec, so the keep reader the adapter has just closed may still be open there.
//     The adapter used to wait for a reader (an open for writing, which returns once the pipe
//     has one): that copy let it return, the write ends were closed before the program had the
//     pipe open, and the program's open then waited for a writer for good.

// inStream is one input: the adapter writes the program's blocks to it.
type inStream struct {
	pipe       int
	c          codec.Codec
	blockCount int
	size       int      // block size of a bytes codec, 0 for the others
	path       string   // fifo mode: the named pipe
	f          *os.File // the adapter's write end
	keep       *os.File // fifo mode: a reader held until the input ends for the program
	buf        []byte
	// fifo mode: opened is closed once the program has opened the pipe (inputOpens), gone once
	// it has exited (programGone).
	opened, gone chan struct{}

	mu         sync.Mutex
	closed     bool          // CloseInputs, Stop or the program's exit ended the input
	closer     chan struct{} // fifo mode, after CloseInputs: closed when the closer is done
	closedByUs atomic.Bool   // CloseInputs or Stop ended it
}

func newInStream(pt Port, path string, f, keep *os.File) *inStream {
	s := &inStream{pipe: pt.Pipe, c: pt.Codec, blockCount: max(pt.BlockCount, 1), path: path, f: f, keep: keep}
	if pt.Codec.Name() == codec.Bytes {
		s.size = len(pt.Codec.Zero())
	}
	if keep != nil {
		s.opened, s.gone = make(chan struct{}), make(chan struct{})
	}
	return s
}

// close ends the input for the program: EOF after the data written so far.
func (s *inStream) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closedByUs.Store(true)
	if s.closed {
		return nil
	}
	s.closed = true
	if s.keep == nil {
		return s.f.Close()
	}
	if isClosed(s.opened) {
		s.keep.Close()
		return s.f.Close()
	}
	s.closer = make(chan struct{})
	go func() {
		defer close(s.closer)
		// Until the program has opened the pipe, f keeps the data and lets that open return.
		select {
		case <-s.opened:
		case <-s.gone:
		}
		s.keep.Close()
		s.f.Close()
	}()
	return nil
}

// programGone ends the input when the program has exited: nothing reads it any more.
func (s *inStream) programGone() {
	s.mu.Lock()
	if s.gone != nil && !isClosed(s.gone) {
		close(s.gone)
	}
	if !s.closed {
		s.closed = true
		if s.keep != nil {
			s.keep.Close()
		}
		s.f.Close()
		s.mu.Unlock()
		return
	}
	closer := s.closer
	s.mu.Unlock()
	if closer != nil {
		<-closer
	}
}

// inputOpens tells each fifo-mode input when the program has opened its named pipe: an open of
// the pipe's path (inotify IN_OPEN, watched from before the program starts, after the adapter's
// own opens), which a copy of a descriptor held elsewhere cannot stand in for. Its goroutine
// (run) ends once every input has been opened, or when the file is closed (the program exited),
// so the inotify instance lives through the program's start only, as a rule.
type inputOpens struct {
	f    *os.File
	byWD map[int]*inStream // the inputs not opened yet, by watch descriptor
	done chan struct{}     // run has returned
}

// watchInputOpens starts watching the named pipes of ins (fifo mode) for the program's opens.
func watchInputOpens(ins []*inStream) (*inputOpens, error) {
	paths := make([]string, len(ins))
	for k, in := range ins {
		paths[k] = in.path
	}
	f, wds, err := watchOpens(paths)
	if err != nil {
		return nil, fmt.Errorf("input pipes: watching for the program's opens: %w", err)
	}
	w := &inputOpens{f: f, byWD: make(map[int]*inStream, len(ins)), done: make(chan struct{})}
	for k, wd := range wds {
		w.byWD[wd] = ins[k]
	}
	return w, nil
}

// run marks the inputs opened as the program opens them. Where opens may have been missed (the
// kernel's queue overflowed, or a read failed otherwise than by stop), every input left counts
// as opened.
func (w *inputOpens) run() {
	defer close(w.done)
	defer w.f.Close()
	buf := make([]byte, 4096)
	for len(w.byWD) > 0 {
		err := readOpens(w.f, buf, func(wd int, overflow bool) {
			for k, in := range w.byWD {
				if overflow || k == wd {
					close(in.opened)
					delete(w.byWD, k)
				}
			}
		})
		if errors.Is(err, os.ErrClosed) {
			return // stop: the program has exited, and programGone ended its inputs
		}
		if err != nil {
			for k, in := range w.byWD {
				close(in.opened)
				delete(w.byWD, k)
			}
		}
	}
}

// stop ends run and waits for it.
func (w *inputOpens) stop() {
	w.f.Close()
	<-w.done
}

// outStream is one output: the adapter reads the program's blocks from it.
type outStream struct {
	pipe int
	f    *os.File // the adapter's read end
	keep *os.File // fifo mode: a writer held while the program runs
	fr   *codec.FrameReader
	err  error // sticky: the error ReadOutput returned
	// codec and defaultCodec: the pipe's codec, and whether the document left it to the default.
	// first holds the first bytes the program wrote (sniffed: looked at), for the errors that
	// say the bytes do not fit the codec. Used by the output's reader only.
	codec        string
	defaultCodec bool
	sniffed      bool
	first        []byte

	closeOnce sync.Once
	goneOnce  sync.Once
}

func newOutStream(pt Port, f, keep *os.File) *outStream {
	return &outStream{pipe: pt.Pipe, f: f, keep: keep, fr: codec.NewFrameReader(pt.Codec, f), codec: pt.Codec.Name()}
}

func (s *outStream) close() { s.closeOnce.Do(func() { s.f.Close() }) }

func (s *outStream) programGone() {
	s.goneOnce.Do(func() {
		if s.keep != nil {
			s.keep.Close()
		}
	})
}

// growInput enlarges an input's pipe (growPipe) for a program with outputs only. A sink
// program's round is consumed once written to its pipe (worker/exec.go), so a larger pipe would
// be more rounds acknowledged and lost with a killed worker; a program with outputs has its
// rounds acknowledged once answered, whatever its pipes hold.
func growInput(w *os.File, s Spec) {
	if len(s.Outputs) > 0 {
		growPipe(w)
	}
}

// openPipes makes the OS pipes of fd mode. child holds the program's ends, in ExtraFiles order.
func (p *Process) openPipes(s Spec) (inArgs, out []string, child []*os.File, err error) {
	for _, pt := range s.Inputs {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, child, fmt.Errorf("input pipe %d: %w", pt.Pipe, err)
		}
		growInput(w, s)
		p.ins = append(p.ins, newInStream(pt, "", w, nil))
		child = append(child, r)
		inArgs = append(inArgs, strconv.Itoa(2+len(child)))
	}
	for _, pt := range s.Outputs {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, nil, child, fmt.Errorf("output pipe %d: %w", pt.Pipe, err)
		}
		growPipe(r)
		p.outs = append(p.outs, newOutStream(pt, r, nil))
		child = append(child, w)
		out = append(out, strconv.Itoa(2+len(child)))
	}
	return inArgs, out, child, nil
}

// openFIFOs makes the named pipes of fifo mode in a private folder under the working directory
// and opens the adapter's ends.
func (p *Process) openFIFOs(wd string, s Spec) (inArgs, out []string, err error) {
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
		growInput(w, s)
		p.ins = append(p.ins, newInStream(pt, path, w, keep))
		inArgs = append(inArgs, path)
	}
	if len(p.ins) > 0 {
		if p.opens, err = watchInputOpens(p.ins); err != nil {
			return nil, nil, err
		}
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
		growPipe(r)
		p.outs = append(p.outs, newOutStream(pt, r, keep))
		out = append(out, path)
	}
	return inArgs, out, nil
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
// It is BufferRound followed by Flush.
//
// WriteRound blocks while the program does not read (backpressure) and returns when ctx is
// cancelled (ctx's error), when the program exits or closes an input (an error wrapping
// ErrInputClosed), or when the job is stopped (ErrStopped). It must not be called concurrently
// with itself, BufferRound, Flush or CloseInputs.
func (p *Process) WriteRound(ctx context.Context, payloads [][][]byte, heads [][]uint32) error {
	if err := p.BufferRound(payloads, heads); err != nil {
		return err
	}
	return p.Flush(ctx)
}

// BufferRound appends one compute block to the inputs' buffers without writing it: a caller
// that has more rounds ready writes many with one Flush (one system call per input instead of
// one per round, and the program reads them in one go too).
func (p *Process) BufferRound(payloads [][][]byte, heads [][]uint32) error {
	return p.BufferRoundSQN(0, payloads, heads)
}

// BufferRoundSQN is BufferRound for the round numbered sqn: on a job with "exec": {"sqn": true}
// (or Spec.InputSQN) each block is preceded by sqn (8 bytes, big-endian), before its head;
// otherwise sqn is unused.
func (p *Process) BufferRoundSQN(sqn uint64, payloads [][][]byte, heads [][]uint32) error {
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
		mark := len(in.buf)
		for i, pl := range payloads[k] {
			if in.size > 0 && len(pl) != in.size {
				in.buf = in.buf[:mark]
				return fmt.Errorf("%s: input pipe %d: block of %d bytes, the block size is %d",
					p.label, in.pipe, len(pl), in.size)
			}
			if p.sqnIn {
				in.buf = codec.AppendSQN(in.buf, sqn)
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
	return nil
}

// Buffered is the number of bytes buffered for the inputs and not yet written.
func (p *Process) Buffered() int {
	n := 0
	for _, in := range p.ins {
		n += len(in.buf)
	}
	return n
}

// Flush writes what BufferRound buffered, with the errors and blocking of WriteRound.
func (p *Process) Flush(ctx context.Context) error {
	if p.Buffered() == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", p.label, err)
	}
	p.watchMu.Lock()
	p.watch(ctx)
	p.watchMu.Unlock()
	var err error
	switch len(p.ins) {
	case 1:
		err = p.write(ctx, p.ins[0])
	default:
		errs := make([]error, len(p.ins))
		var wg sync.WaitGroup
		for k := 1; k < len(p.ins); k++ {
			wg.Go(func() { errs[k] = p.write(ctx, p.ins[k]) })
		}
		errs[0] = p.write(ctx, p.ins[0])
		wg.Wait()
		err = errors.Join(errs...)
	}
	for _, in := range p.ins {
		in.buf = in.buf[:0]
	}
	return err
}

// aLongTimeAgo is a deadline in the past, which interrupts pending writes.
var aLongTimeAgo = time.Unix(1, 0)

// ctxWatch interrupts the input writes when the context of WriteRound ends. One watch serves
// every round written with the same context (the worker's job context), so a round costs no
// registration.
type ctxWatch struct {
	ctx   context.Context
	stop  func() bool
	fired chan struct{}
}

// watch makes the end of ctx interrupt the writes. Callers hold p.watchMu.
func (p *Process) watch(ctx context.Context) {
	if p.cw.ctx == ctx {
		return
	}
	p.unwatch()
	if ctx.Done() == nil {
		return // never cancelled
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		for _, in := range p.ins {
			in.f.SetWriteDeadline(aLongTimeAgo)
		}
		close(fired)
	})
	p.cw = ctxWatch{ctx: ctx, stop: stop, fired: fired}
}

// unwatch ends the current watch; if it fired, the writes are made possible again. Callers hold
// p.watchMu.
func (p *Process) unwatch() {
	if p.cw.ctx == nil {
		return
	}
	if !p.cw.stop() {
		<-p.cw.fired
		for _, in := range p.ins {
			in.f.SetWriteDeadline(time.Time{})
		}
	}
	p.cw = ctxWatch{}
}

// write writes in.buf; the watch of the round's context interrupts it.
func (p *Process) write(ctx context.Context, in *inStream) error {
	if len(in.buf) == 0 {
		return nil
	}
	if in.closedByUs.Load() {
		return p.inputErr(ctx, in, os.ErrClosed)
	}
	if _, err := in.f.Write(in.buf); err != nil {
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
	payload, head, _, err = p.ReadOutputSQN(k, dst)
	return payload, head, err
}

// ReadOutputSQN is ReadOutput that also returns the block's SQN, read before its head on a job
// with "exec": {"sqn": true} (0 otherwise).
func (p *Process) ReadOutputSQN(k int, dst []byte) (payload []byte, head uint32, sqn uint64, err error) {
	o := p.outs[k]
	if o.err != nil {
		return dst, 0, 0, o.err
	}
	if p.sqnOut {
		sqn, err = o.fr.ReadSQN()
	}
	if err == nil && p.head {
		head, err = o.fr.ReadHead(p.headSize)
	}
	if err == nil && !o.sniffed {
		// The first frame: text on a cbor pipe (a program writing JSON lines where no codec is
		// declared) would be read as small integers; it fails before any block is taken.
		o.sniffed = true
		if b := o.fr.Peek(); len(b) > 0 {
			o.first = bytes.Clone(b[:min(len(b), 64)])
		}
		if o.codec == codec.CBOR && codec.TextOnCBOR(o.first) {
			o.err = fmt.Errorf("%s: output %s", p.label, codec.Mismatch(o.codec, o.defaultCodec, o.pipe, o.first))
			o.close()
			return dst, 0, 0, o.err
		}
	}
	if err == nil {
		payload, err = o.fr.Next(dst)
	}
	if err != nil {
		o.err = p.outputErr(o, err)
		o.close()
		return dst, 0, 0, o.err
	}
	return payload, head, sqn, nil
}

// OutputMismatch says how the first bytes the program wrote on output k do not fit the
// pipe's codec ("pipe 4 is cbor (the default), but the program wrote JSON lines
// ("-18\n…"): declare ..."), or "" when they fit or nothing is known. Call it from the
// goroutine that reads output k, or once reading has ended.
func (p *Process) OutputMismatch(k int) string {
	o := p.outs[k]
	return codec.Mismatch(o.codec, o.defaultCodec, o.pipe, o.first)
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
	if hint := codec.Mismatch(o.codec, o.defaultCodec, o.pipe, o.first); hint != "" {
		return fmt.Errorf("%s: output pipe %d: %w; %s", p.label, o.pipe, err, hint)
	}
	return fmt.Errorf("%s: output pipe %d: %w", p.label, o.pipe, err)
}

// InputsRead reports whether the program has read everything written to its inputs (false
// when that cannot be told). It may be called from any goroutine.
func (p *Process) InputsRead() bool {
	for _, in := range p.ins {
		if n, err := unread(in.f); err != nil || n > 0 {
			return false
		}
	}
	return len(p.ins) > 0
}

// OutputOffset is the number of bytes read so far from output k.
func (p *Process) OutputOffset(k int) int64 { return p.outs[k].fr.Offset() }

// WaitInputsRead waits until the program has read everything written to its inputs, so that the
// next round written is the newest there is rather than one queued in a pipe: a job with
// max_queue keeps its queue in the stream, where the oldest blocks are dropped. It returns early
// when the program exits or ctx ends. The pipes give no event for "read empty", so it polls, from
// every 100 µs up to every 5 ms while the program is busy.
func (p *Process) WaitInputsRead(ctx context.Context) error {
	wait := backoff.Backoff{First: 100 * time.Microsecond, Max: 5 * time.Millisecond}
	var timer *time.Timer
	for {
		busy := false
		for _, in := range p.ins {
			n, err := unread(in.f)
			if err != nil {
				return nil // closed, or the program is gone: the write reports it
			}
			busy = busy || n > 0
		}
		if !busy {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(wait.Next())
			defer timer.Stop()
		} else {
			timer.Reset(wait.Next())
		}
		select {
		case <-timer.C:
		case <-p.exited:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", p.label, ctx.Err())
		}
	}
}
