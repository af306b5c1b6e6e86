//go:build linux

package execjob

import (
	"os"
	"syscall"
	"unsafe"
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
