//go:build linux

package execjob

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const supported = true

type sysSignal = syscall.Signal

const (
	sigTERM = syscall.SIGTERM
	sigKILL = syscall.SIGKILL
)

const oNonblock = syscall.O_NONBLOCK

// sysProcAttr puts the program in a process group of its own, so that it and everything it
// starts can be signalled at once, and kills it if the worker dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

func killGroup(pgid int, sig syscall.Signal) error { return syscall.Kill(-pgid, sig) }

func mkfifo(path string) error { return syscall.Mkfifo(path, 0o600) }

// waitExited blocks until the process pid has exited, without reaping it (waitid with WNOWAIT):
// its process group id stays reserved until it is reaped.
func waitExited(pid int) {
	const (
		pPID    = 1
		wEXITED = 4
		wNOWAIT = 0x1000000
	)
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wEXITED|wNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}

// signalName is the name of the signal that killed a process, "" if it exited.
func signalName(ps *os.ProcessState) string {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return ws.Signal().String()
	}
	return ""
}

// errTextBusy is the error of exec on a file still open for writing.
const errTextBusy = syscall.ETXTBSY

// setBlocking clears O_NONBLOCK of a file opened with it, before it is handed to a child.
func setBlocking(f *os.File) error { return syscall.SetNonblock(int(f.Fd()), false) }

// unread is the number of bytes written to a pipe and not yet read from it (FIONREAD works on
// either end of a Linux pipe).
func unread(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int32
	var ierr error
	err = rc.Control(func(fd uintptr) {
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); e != 0 {
			ierr = e
		}
	})
	if err == nil {
		err = ierr
	}
	return int(n), err
}

// pipeSize is the capacity asked of every pipe between the adapter and a program (Linux's
// default is 64 KiB, the most an unprivileged user may ask is /proc/sys/fs/pipe-max-size, 1 MiB
// by default): a program like cat then moves up to this much per read and per write, instead of
// waking up and blocking once every 64 KiB — fewer context switches per block.
const pipeSize = 1 << 20

// growPipe asks for pipeSize on the pipe behind f. It is an optimisation only: where the kernel
// refuses (a user above its pipe-user-pages-soft quota, a smaller pipe-max-size), the pipe keeps
// the size it has and works the same, so the refusal is not an error.
func growPipe(f *os.File) {
	const fSETPIPE_SZ = 1031
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _, _ = syscall.Syscall(syscall.SYS_FCNTL, fd, fSETPIPE_SZ, pipeSize)
	})
}

// watchOpens watches each of paths for opens (inotify IN_OPEN), in one inotify instance; wds
// are the watch descriptors, in the order of paths. The file reads as events (readOpens), and
// closing it ends a read under way.
func watchOpens(paths []string) (f *os.File, wds []int, err error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, nil, fmt.Errorf("inotify (fs.inotify.max_user_instances?): %w", err)
	}
	f = os.NewFile(uintptr(fd), "inotify")
	for _, path := range paths {
		wd, err := unix.InotifyAddWatch(fd, path, unix.IN_OPEN)
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("inotify watch of %s: %w", path, err)
		}
		wds = append(wds, wd)
	}
	return f, wds, nil
}

// readOpens waits for the next events of a watchOpens file and calls event with the watch
// descriptor of each; overflow is true when the kernel's queue overflowed (events were lost).
func readOpens(f *os.File, buf []byte, event func(wd int, overflow bool)) error {
	n, err := f.Read(buf)
	if err != nil {
		return err
	}
	// struct inotify_event: int wd, u32 mask, u32 cookie, u32 len, char name[len].
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		event(wd, mask&unix.IN_Q_OVERFLOW != 0)
		off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
	}
	return nil
}
