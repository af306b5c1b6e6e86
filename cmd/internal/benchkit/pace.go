package benchkit

import "math"

// Pacer releases events at a fixed rate, for sources that must produce blocks at, say, 10,000
// per second. Go's timers cannot wait less than about a millisecond on some machines, and a
// goroutine sleeping in nanosleep keeps its P (with GOMAXPROCS 2, half the machine) until the
// scheduler's monitor takes it back, so on Linux the pacer waits on a periodic timerfd through
// Go's netpoller: the goroutine parks without holding a P and wakes within tens of
// microseconds. Elsewhere, or when timerfd fails, it sleeps.
//
// The schedule is absolute — event i is due at start + i/rate — so an event released late (a
// busy machine, a GC pause, backpressure) is followed by overdue events at once and the average
// rate holds. Events are never released early.
//
// Next reads the clock once per event and returns that reading, the event's timestamp: the
// pacer costs one clock read per event, however long it waits.
type Pacer struct {
	interval int64 // nanoseconds between events
	start    int64 // the clock when the first event was released
	n        int64 // events released
	last     int64 // the clock when the last event was released
	late     int64 // events released more than one interval after they were due
	pending  uint64

	now       func() int64
	sleep     func(ns int64)
	newTicker func(interval int64) (ticker, error) // nil: sleep
	tick      ticker
}

// ticker is a periodic kernel timer.
type ticker interface {
	// Wait blocks until the timer has expired at least once since the last call and returns the
	// number of expirations.
	Wait() (uint64, error)
	Close() error
}

// NewPacer returns a pacer of rate events per second (rate > 0) on the process clock (Now).
// Stop releases its timer.
func NewPacer(rate float64) *Pacer { return newPacer(rate, Now, sleepNS, newTimerTicker) }

// newPacer is NewPacer with its clock, sleep and timer given (tests simulate them); newTicker
// nil paces by sleeping.
func newPacer(rate float64, now func() int64, sleep func(int64), newTicker func(int64) (ticker, error)) *Pacer {
	if rate <= 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
		panic("benchkit: NewPacer needs a positive rate")
	}
	return &Pacer{interval: max(int64(math.Round(1e9/rate)), 1), now: now, sleep: sleep, newTicker: newTicker}
}

// Next waits until the next event is due and returns the clock reading taken when it is
// released. The first event is released at once and starts the schedule.
func (p *Pacer) Next() int64 {
	if p.n == 0 {
		p.n = 1
		p.start = p.now()
		p.last = p.start
		if p.newTicker != nil {
			// Armed after the start was read: its expirations are never before the events' due
			// times.
			if t, err := p.newTicker(p.interval); err == nil {
				p.tick = t
			}
		}
		return p.start
	}
	due := p.Due(p.n)
	p.n++
	if p.tick != nil && p.pending == 0 {
		n, err := p.tick.Wait()
		if err != nil || n == 0 {
			p.tick.Close()
			p.tick = nil // sleep from now on
		} else {
			p.pending = n
		}
	}
	if p.tick != nil {
		p.pending--
	} else if wait := due - p.last; wait > 0 {
		// The clock has moved on since p.last, so this waits at least until due: never early,
		// and late by the caller's work on the previous event plus the sleep's own slack at
		// most — a lateness the absolute schedule does not accumulate.
		p.sleep(wait)
	}
	p.last = p.now()
	if p.last-due > p.interval {
		p.late++
	}
	return p.last
}

// Stop releases the pacer's timer; Next may not be called after it.
func (p *Pacer) Stop() {
	if p.tick != nil {
		p.tick.Close()
		p.tick = nil
	}
}

// Due returns when event i (counted from 0) is due, on the pacer's clock; valid once the first
// event has been released.
func (p *Pacer) Due(i int64) int64 { return p.start + i*p.interval }

// Start returns the clock reading of the first event (0 before it).
func (p *Pacer) Start() int64 { return p.start }

// Count returns the number of events released.
func (p *Pacer) Count() int64 { return p.n }

// Late returns how many events were released more than one interval after they were due: a
// sign that the consumer could not keep up with the rate.
func (p *Pacer) Late() int64 { return p.late }
