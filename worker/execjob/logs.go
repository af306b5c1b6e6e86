package execjob

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// maxLogLine bounds one log line; a longer line is passed on in pieces of this size.
const maxLogLine = 64 << 10

// drainTimeout bounds the wait for stdout and stderr to end once the program has been reaped: a
// process that left the program's group (setsid) may still hold them.
const drainTimeout = 2 * time.Second

// logSink reads the program's stdout and stderr continuously, line by line, into the log
// callback, and keeps the last lines of stderr for the exit error.
//
// On Linux one goroutine reads both streams (logs_linux.go: poll(2) on the two pipes), so the
// lines reach the callback in the order their bytes reached the pipes: two readers, one a
// stream, handed lines to the callback in whichever order the scheduler woke them, and a line
// written to stderr a fraction of a millisecond after one written to stdout could come first.
// Lines written to the two pipes between two wake-ups of the reader cannot be told apart in
// time; the stdout pipe is read first then.
type logSink struct {
	fn func(stream, line string)
	mu sync.Mutex // serialises fn

	stdoutR, stdoutW *os.File
	stderrR, stderrW *os.File
	wg               sync.WaitGroup
	// wakeR and wakeW end the poll loop once the drain timeout has passed (nil with two readers).
	wakeR, wakeW *os.File

	tailMu sync.Mutex
	ring   [StderrTail]string
	n      int // lines written to ring
}

func newLogSink(fn func(stream, line string)) (*logSink, error) {
	l := &logSink{fn: fn}
	var err error
	if l.stdoutR, l.stdoutW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if l.stderrR, l.stderrW, err = os.Pipe(); err != nil {
		l.stdoutR.Close()
		l.stdoutW.Close()
		return nil, err
	}
	return l, nil
}

// start closes the write ends (the program has its copies) and reads until both streams end:
// in one loop where the system allows it, else with a reader a stream.
func (l *logSink) start() {
	l.stdoutW.Close()
	l.stderrW.Close()
	if l.startPoll() {
		return
	}
	l.wg.Add(2)
	go l.read(Stdout, l.stdoutR)
	go l.read(Stderr, l.stderrR)
}

// abort closes everything when the program could not be started.
func (l *logSink) abort() {
	for _, f := range []*os.File{l.stdoutR, l.stdoutW, l.stderrR, l.stderrW} {
		f.Close()
	}
}

// wait waits for both readers; after drainTimeout it closes their pipes to end them.
func (l *logSink) wait() {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		if l.wakeW == nil {
			l.stdoutR.Close()
			l.stderrR.Close()
		}
		l.closeWake() // the poll loop ends
		<-done
	}
	l.closeWake()
}

// closeWake closes the write end of the poll loop's wake pipe: the loop sees it hang up.
func (l *logSink) closeWake() {
	if l.wakeW != nil {
		l.wakeW.Close()
	}
}

// lineSplitter cuts the bytes of one stream into lines, and lines longer than maxLogLine into
// pieces of that size.
type lineSplitter struct {
	stream string
	buf    []byte
}

// feed adds the bytes b and emits every complete line.
func (s *lineSplitter) feed(b []byte, emit func(stream, line string)) {
	s.buf = append(s.buf, b...)
	start := 0
	for {
		i := bytes.IndexByte(s.buf[start:], '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(s.buf[start:start+i], []byte("\r"))
		emit(s.stream, string(line))
		start += i + 1
	}
	for len(s.buf)-start >= maxLogLine {
		emit(s.stream, string(s.buf[start:start+maxLogLine]))
		start += maxLogLine
	}
	s.buf = s.buf[:copy(s.buf, s.buf[start:])]
}

// flush emits what is left without a newline, at the end of the stream.
func (s *lineSplitter) flush(emit func(stream, line string)) {
	if len(s.buf) > 0 {
		emit(s.stream, string(bytes.TrimSuffix(s.buf, []byte("\r"))))
		s.buf = s.buf[:0]
	}
}

func (l *logSink) read(stream string, f *os.File) {
	defer l.wg.Done()
	defer f.Close()
	r := bufio.NewReaderSize(f, maxLogLine)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			line = bytes.TrimSuffix(line, []byte("\r"))
			l.emit(stream, string(line))
		}
		if err != nil && err != bufio.ErrBufferFull {
			if err != io.EOF && !errors.Is(err, os.ErrClosed) {
				l.emit(stream, "(reading "+stream+": "+err.Error()+")")
			}
			return
		}
	}
}

func (l *logSink) emit(stream, line string) {
	if stream == Stderr {
		l.tailMu.Lock()
		l.ring[l.n%StderrTail] = line
		l.n++
		l.tailMu.Unlock()
	}
	if l.fn != nil {
		l.mu.Lock()
		l.fn(stream, line)
		l.mu.Unlock()
	}
}

// tail returns the last lines of stderr, oldest first.
func (l *logSink) tail() []string {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	n := min(l.n, StderrTail)
	out := make([]string, 0, n)
	for i := l.n - n; i < l.n; i++ {
		out = append(out, l.ring[i%StderrTail])
	}
	return out
}
