//go:build !linux

package benchkit

import (
	"errors"
	"time"
)

// sleepNS sleeps ns nanoseconds (Go's timer: about a millisecond of slack on some systems).
func sleepNS(ns int64) { time.Sleep(time.Duration(ns)) }

// newTimerTicker is not available here: the pacer sleeps.
func newTimerTicker(int64) (ticker, error) { return nil, errors.New("no timerfd on this system") }
