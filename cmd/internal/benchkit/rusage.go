package benchkit

import (
	"runtime/debug"
	"time"
)

// Usage is the process's resource use so far.
type Usage struct {
	User, System time.Duration // CPU time in user and kernel mode, all threads
	// MaxRSS is the peak resident set size in bytes: since the process started, or since the
	// last ResetPeakRSS where the system can reset it.
	MaxRSS int64
}

// CPU is user plus system time.
func (u Usage) CPU() time.Duration { return u.User + u.System }

// Sample is what one measured piece of work cost the process.
type Sample struct {
	Wall time.Duration // elapsed time
	CPU  time.Duration // process CPU time (user + system, every thread: broker, worker, bench)
	// PeakRSS is the process's peak RSS in bytes during the work when the peak could be reset
	// before it (Linux), else the peak since the process started.
	PeakRSS int64
	// PeakReset reports whether PeakRSS covers the work only.
	PeakReset bool
	// ChildCPU is the CPU time of the children that ended during the work (a job's program),
	// which CPU leaves out; ChildPeakRSS the peak RSS of the largest child the process ever had.
	ChildCPU     time.Duration
	ChildPeakRSS int64
}

// Measure runs fn and returns its wall time, the process CPU time it took (getrusage before and
// after) and the peak RSS meanwhile. It collects garbage and returns free memory to the system
// first, so that neither the previous run's garbage nor its memory counts for this one.
func Measure(fn func() error) (Sample, error) {
	debug.FreeOSMemory()
	reset := ResetPeakRSS()
	before, childBefore := ReadUsage(), ReadChildUsage()
	start := Now()
	err := fn()
	wall := time.Duration(Now() - start)
	after, childAfter := ReadUsage(), ReadChildUsage()
	return Sample{Wall: wall, CPU: after.CPU() - before.CPU(), PeakRSS: after.MaxRSS, PeakReset: reset,
		ChildCPU: childAfter.CPU() - childBefore.CPU(), ChildPeakRSS: childAfter.MaxRSS}, err
}
