//go:build !linux

package execjob

// startPoll reports false: a reader a stream reads the program's output (see logSink).
func (l *logSink) startPoll() bool { return false }
