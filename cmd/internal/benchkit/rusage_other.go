//go:build !unix

package benchkit

// ReadUsage is not available on this system: it returns zero.
func ReadUsage() Usage { return Usage{} }

// ReadChildUsage is not available on this system.
func ReadChildUsage() Usage { return Usage{} }

// ResetPeakRSS is not available on this system.
func ResetPeakRSS() bool { return false }
