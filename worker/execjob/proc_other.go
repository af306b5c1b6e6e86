//go:build !linux

package execjob

import (
	"errors"
	"os"
	"syscall"
)

// Executable jobs rely on Linux: process groups with a parent-death signal, waitid without
// reaping, named pipes. Elsewhere Start reports that they are not supported.
const supported = false

type sysSignal = syscall.Signal

const (
	sigTERM = syscall.SIGTERM
	sigKILL = syscall.SIGKILL
)

const oNonblock = 0

var errUnsupported = errors.New("executable jobs need Linux")

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(int, syscall.Signal) error { return errUnsupported }

func mkfifo(string) error { return errUnsupported }

func waitExited(int) {}

func signalName(*os.ProcessState) string { return "" }

const errTextBusy = syscall.ETXTBSY

func setBlocking(*os.File) error { return errUnsupported }

func unread(*os.File) (int, error) { return 0, errUnsupported }

func growPipe(*os.File) {}

func watchOpens([]string) (*os.File, []int, error) { return nil, nil, errUnsupported }

func readOpens(*os.File, []byte, func(int, bool)) error { return errUnsupported }
