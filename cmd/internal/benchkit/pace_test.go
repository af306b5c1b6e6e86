package benchkit

import (
	"errors"
	"testing"
)

// fakeClock is a simulated clock: sleeping advances it by exactly the time asked, plus a fixed
// slack; the test advances it as the caller's work on each event would.
type fakeClock struct {
	t      int64
	slack  int64
	sleeps int
	slept  int64
}

func (c *fakeClock) now() int64 { return c.t }
func (c *fakeClock) sleep(ns int64) {
	if ns <= 0 {
		panic("sleep of a non-positive duration")
	}
	c.sleeps++
	c.slept += ns
	c.t += ns + c.slack
}

// fakeTicker is a periodic timer on a fakeClock: Wait moves the clock to the next expiration
// (plus the slack) when none is pending, and returns the expirations since the last call.
type fakeTicker struct {
	c        *fakeClock
	armed    int64
	interval int64
	taken    uint64
	closed   bool
}

func (c *fakeClock) newTicker(interval int64) (ticker, error) {
	return &fakeTicker{c: c, armed: c.t, interval: interval}, nil
}

func (t *fakeTicker) Wait() (uint64, error) {
	if t.closed {
		return 0, errors.New("closed")
	}
	expired := uint64((t.c.t - t.armed) / t.interval)
	if expired <= t.taken {
		t.c.sleeps++
		t.c.t = t.armed + int64(t.taken+1)*t.interval + t.c.slack
		expired = uint64((t.c.t - t.armed) / t.interval)
	}
	n := expired - t.taken
	t.taken = expired
	return n, nil
}

func (t *fakeTicker) Close() error { t.closed = true; return nil }

func TestPacerSchedule(t *testing.T) {
	for _, mode := range []string{"sleep", "ticker"} {
		for _, tc := range []struct {
			name        string
			rate        float64
			slack, work int64
		}{
			{"exact", 1000, 0, 0},
			{"slack and work", 10000, 30_000, 5_000},
			{"odd interval", 3, 0, 1},
			{"slack longer than the interval", 20000, 80_000, 0},
			{"work longer than the interval", 20000, 0, 70_000},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				c := &fakeClock{t: 1_000_000, slack: tc.slack}
				var newTicker func(int64) (ticker, error)
				if mode == "ticker" {
					newTicker = c.newTicker
				}
				p := newPacer(tc.rate, c.now, c.sleep, newTicker)
				defer p.Stop()
				const n = 10000
				prev := int64(-1)
				for i := int64(0); i < n; i++ {
					stamp := p.Next()
					if stamp != c.t {
						t.Fatalf("event %d: stamp %d is not the clock %d", i, stamp, c.t)
					}
					if stamp < p.Due(i) {
						t.Fatalf("event %d released at %d, before it was due at %d", i, stamp, p.Due(i))
					}
					if stamp < prev {
						t.Fatalf("event %d: stamp went back", i)
					}
					prev = stamp
					c.t += tc.work
				}
				if p.Count() != n {
					t.Errorf("count %d, want %d", p.Count(), n)
				}
				interval := int64(1e9 / tc.rate)
				if tc.work > interval {
					// The caller cannot keep the rate: the pacer never waits.
					if c.sleeps > 1 {
						t.Errorf("waited %d times behind the schedule", c.sleeps)
					}
					return
				}
				// The schedule is absolute: the last event is late by at most one event's work, one
				// wait's slack and an interval, whatever n.
				if lateness := prev - p.Due(n-1); lateness > tc.work+tc.slack+interval {
					t.Errorf("last event late by %d ns: the lateness accumulates", lateness)
				}
				// Behind the schedule, the pacer does not wait: never more waits than events.
				if c.sleeps > n-1 {
					t.Errorf("%d waits for %d events", c.sleeps, n)
				}
			})
		}
	}
}

func TestPacerCatchesUp(t *testing.T) {
	for _, mode := range []string{"sleep", "ticker"} {
		t.Run(mode, func(t *testing.T) {
			c := &fakeClock{}
			var newTicker func(int64) (ticker, error)
			if mode == "ticker" {
				newTicker = c.newTicker
			}
			p := newPacer(1000, c.now, c.sleep, newTicker) // 1 ms per event
			p.Next()
			c.t += 50_000_000 // the consumer held the source up for 50 ms: 50 events are due
			// The first event after the hold-up may wait one interval more in sleep mode (its
			// wait is reckoned from the last clock reading); the others are overdue and go at
			// once.
			for range 50 {
				p.Next()
			}
			if c.sleeps > 1 || c.slept > 1_000_000 {
				t.Errorf("waited %d times (%d ns) while 50 events were overdue", c.sleeps, c.slept)
			}
			if p.Late() == 0 {
				t.Error("no late events counted")
			}
			for p.Due(p.Count()) <= c.t {
				p.Next() // the rest of the backlog
			}
			sleeps := c.sleeps
			p.Next() // the first event due in the future waits
			if c.sleeps != sleeps+1 {
				t.Errorf("the first event due in the future did not wait")
			}
			if c.t < p.Due(p.Count()-1) {
				t.Errorf("released at %d, before it was due at %d", c.t, p.Due(p.Count()-1))
			}
		})
	}
}

func TestPacerFallsBackToSleep(t *testing.T) {
	c := &fakeClock{}
	p := newPacer(1000, c.now, c.sleep, func(int64) (ticker, error) { return nil, errors.New("no timer") })
	for range 100 {
		p.Next()
	}
	if p.Count() != 100 || c.sleeps != 99 {
		t.Errorf("count %d, sleeps %d", p.Count(), c.sleeps)
	}
	// A timer that fails while waiting: the pacer goes on sleeping.
	c = &fakeClock{}
	var ft *fakeTicker
	p = newPacer(1000, c.now, c.sleep, func(iv int64) (ticker, error) {
		tk, _ := c.newTicker(iv)
		ft = tk.(*fakeTicker)
		return tk, nil
	})
	p.Next()
	p.Next()
	ft.Close()
	for range 10 {
		p.Next()
	}
	if p.Count() != 12 || c.slept == 0 {
		t.Errorf("count %d, slept %d ns", p.Count(), c.slept)
	}
}

// TestPacerOnTheSystemClock runs the real pacer (timerfd on Linux) briefly: every event is
// released, in order, never before it is due. No assertion on how late.
func TestPacerOnTheSystemClock(t *testing.T) {
	p := NewPacer(100_000)
	defer p.Stop()
	prev := int64(-1)
	for i := int64(0); i < 500; i++ {
		stamp := p.Next()
		if stamp < p.Due(i) || stamp < prev {
			t.Fatalf("event %d at %d: due %d, previous %d", i, stamp, p.Due(i), prev)
		}
		prev = stamp
	}
	if p.Count() != 500 {
		t.Errorf("count %d", p.Count())
	}
}

func TestPacerRejectsZeroRate(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewPacer(0) did not panic")
		}
	}()
	NewPacer(0)
}

func TestStamp(t *testing.T) {
	b := make([]byte, 16)
	PutStamp(b, 123456789)
	if Stamp(b) != 123456789 || Stamp(b[:7]) != 0 {
		t.Error("stamp round trip")
	}
	if a, b := Now(), Now(); b < a {
		t.Error("Now went back")
	}
}

func TestMeasure(t *testing.T) {
	s, err := Measure(func() error {
		x := 0
		for i := range 1_000_000 {
			x += i
		}
		_ = x
		return nil
	})
	if err != nil || s.Wall <= 0 || s.CPU < 0 {
		t.Errorf("sample %+v, err %v", s, err)
	}
	if ReadUsage().MaxRSS <= 0 {
		t.Error("no peak RSS")
	}
}
