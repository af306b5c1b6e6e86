//go:build linux

package execjob

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// startPoll starts the one reader of both streams (see logSink). It reports false when the
// wake pipe cannot be made; the caller then starts a reader a stream.
func (l *logSink) startPoll() bool {
	wr, ww, err := os.Pipe()
	if err != nil {
		return false
	}
	l.wakeR, l.wakeW = wr, ww
	fds := []unix.PollFd{
		{Fd: int32(l.stdoutR.Fd()), Events: unix.POLLIN},
		{Fd: int32(l.stderrR.Fd()), Events: unix.POLLIN},
		{Fd: int32(wr.Fd()), Events: unix.POLLIN},
	}
	l.wg.Add(1)
	go l.pollLoop(fds)
	return true
}

// pollLoop reads stdout (fds[0]) and stderr (fds[1]) as their bytes come, until both end or the
// wake pipe (fds[2]) hangs up (wait, after the drain timeout). The descriptors are in blocking
// mode (File.Fd): a read after poll reported them readable does not block.
func (l *logSink) pollLoop(fds []unix.PollFd) {
	defer l.wg.Done()
	defer func() {
		l.stdoutR.Close()
		l.stderrR.Close()
		l.wakeR.Close()
	}()
	split := [2]lineSplitter{{stream: Stdout}, {stream: Stderr}}
	defer func() {
		for k := range split {
			split[k].flush(l.emit)
		}
	}()
	buf := make([]byte, 64<<10)
	for open := 2; open > 0; {
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			l.emit(Stderr, "(reading the program's output: poll: "+err.Error()+")")
			return
		}
		if fds[2].Revents != 0 {
			return // the drain timeout passed: a process outside the group holds the streams
		}
		for k := range 2 {
			if fds[k].Fd < 0 || fds[k].Revents == 0 {
				continue
			}
			n, err := unix.Read(int(fds[k].Fd), buf)
			if n > 0 {
				split[k].feed(buf[:n], l.emit)
				continue
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			if err != nil {
				l.emit(split[k].stream, "(reading "+split[k].stream+": "+err.Error()+")")
			}
			split[k].flush(l.emit)
			fds[k].Fd = -1 // ended: poll ignores it from now on
			open--
		}
	}
}
