//go:build unix

package benchkit

import (
	"os"
	"runtime"
	"syscall"
	"time"
)

// ReadUsage reads getrusage(RUSAGE_SELF).
func ReadUsage() Usage { return readUsage(syscall.RUSAGE_SELF) }

// ReadChildUsage is the resource use of the process's children that have ended and were waited
// for (an executable or Python job's program, once its job ends): their CPU time, and MaxRSS the
// peak of the largest of them.
func ReadChildUsage() Usage { return readUsage(syscall.RUSAGE_CHILDREN) }

func readUsage(who int) Usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return Usage{}
	}
	rss := int64(ru.Maxrss)
	if runtime.GOOS != "darwin" && runtime.GOOS != "ios" {
		rss *= 1024 // kilobytes everywhere else
	}
	return Usage{
		User:   time.Duration(ru.Utime.Nano()),
		System: time.Duration(ru.Stime.Nano()),
		MaxRSS: rss,
	}
}

// ResetPeakRSS resets the peak RSS that getrusage reports to the current RSS, where the system
// allows it (Linux: /proc/self/clear_refs), and reports whether it did.
func ResetPeakRSS() bool {
	if runtime.GOOS != "linux" {
		return false
	}
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}
