package benchkit

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sleepNS sleeps ns nanoseconds with nanosleep(2), where Go's timers round up to about a
// millisecond on some machines. The thread blocks in the kernel holding its P: the pacer uses
// it only when timerfd is not available.
func sleepNS(ns int64) {
	ts := syscall.NsecToTimespec(ns)
	for {
		var rem syscall.Timespec
		err := syscall.Nanosleep(&ts, &rem)
		if err != syscall.EINTR {
			return
		}
		ts = rem
	}
}

// timerTicker is a periodic timerfd on CLOCK_MONOTONIC, read through Go's netpoller: a waiting
// goroutine is parked, not blocked in a system call, and the kernel counts the expirations.
type timerTicker struct {
	f   *os.File
	buf [8]byte
}

func newTimerTicker(interval int64) (ticker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	ts := unix.NsecToTimespec(interval)
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// A non-blocking descriptor: os.NewFile hands it to the netpoller.
	return &timerTicker{f: os.NewFile(uintptr(fd), "timerfd")}, nil
}

func (t *timerTicker) Wait() (uint64, error) {
	n, err := t.f.Read(t.buf[:])
	if err != nil {
		return 0, err
	}
	if n != len(t.buf) {
		return 0, errors.New("timerfd: short read")
	}
	return binary.NativeEndian.Uint64(t.buf[:]), nil
}

func (t *timerTicker) Close() error { return t.f.Close() }
