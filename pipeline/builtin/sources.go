package builtin

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/marvelo/marvelo/pipeline/job"
)

const defaultClockInterval = 40 * time.Millisecond

// Counter emits start, start+step, … — count values (endless when 0), one per interval. With a
// count, the last block carries the finished bit.
type Counter struct {
	Start    float64      `json:"start" help:"the first value"`
	Step     float64      `json:"step" help:"added to each value to give the next"`
	Count    int64        `json:"count" marvelo:"min=0" help:"how many values; 0 is endless"`
	Interval job.Duration `json:"interval" help:"pause between values"`

	next int64 // index of the next value: the checkpoint
}

// Validate checks the args.
func (c *Counter) Validate() error {
	if c.Count < 0 {
		return fmt.Errorf("count %d is negative (0 means endless)", c.Count)
	}
	return nil
}

// Generate emits the values; integers stay integers when start and step are whole numbers.
func (c *Counter) Generate(ctx *job.Context, emit func(any) error) error {
	whole := isWhole(c.Start) && isWhole(c.Step)
	tick := newPacer(time.Duration(c.Interval))
	defer tick.stop()
	for ; c.Count == 0 || c.next < c.Count; c.next++ {
		i := c.next
		if err := tick.wait(ctx); err != nil {
			return err
		}
		v := c.Start + float64(i)*c.Step
		if c.Count > 0 && i == c.Count-1 {
			ctx.Finish()
		}
		var out any = v
		if whole {
			out = int64(v)
		}
		if err := emit(out); err != nil {
			return err
		}
	}
	return nil
}

// Checkpoint saves the index of the next value: a moved counter continues instead of starting
// over.
func (c *Counter) Checkpoint() ([]byte, error) {
	return binary.AppendVarint(nil, c.next+1), nil
}

// Restore continues after the checkpointed value.
func (c *Counter) Restore(state []byte) error {
	v, n := binary.Varint(state)
	if n <= 0 || v < 0 {
		return fmt.Errorf("counter: bad checkpoint %x", state)
	}
	c.next = v
	return nil
}

func isWhole(f float64) bool { return f == math.Trunc(f) && math.Abs(f) < 1<<53 }

// Clock emits 1 every interval (ClockJob), count times (endless when 0).
type Clock struct {
	Interval job.Duration `json:"interval" help:"time between ticks; must be positive"`
	Count    int64        `json:"count" marvelo:"min=0" help:"how many ticks; 0 is endless"`
}

// Validate checks the args.
func (c *Clock) Validate() error {
	if c.Interval <= 0 {
		return fmt.Errorf("interval must be positive, got %s", time.Duration(c.Interval))
	}
	if c.Count < 0 {
		return fmt.Errorf("count %d is negative (0 means endless)", c.Count)
	}
	return nil
}

// Generate emits the ticks.
func (c *Clock) Generate(ctx *job.Context, emit func(any) error) error {
	tick := newPacer(time.Duration(c.Interval))
	defer tick.stop()
	for i := int64(0); c.Count == 0 || i < c.Count; i++ {
		if err := tick.wait(ctx); err != nil {
			return err
		}
		if c.Count > 0 && i == c.Count-1 {
			ctx.Finish()
		}
		if err := emit(int64(1)); err != nil {
			return err
		}
	}
	return nil
}

// pacer spaces a source's values by an interval with a ticker, so the rate holds even when
// emitting takes time; an interval of 0 does not wait at all.
type pacer struct {
	t     *time.Ticker
	first bool
}

func newPacer(d time.Duration) *pacer {
	p := &pacer{first: true}
	if d > 0 {
		p.t = time.NewTicker(d)
	}
	return p
}

func (p *pacer) wait(ctx *job.Context) error {
	if p.first || p.t == nil {
		p.first = false
		return ctx.Context().Err()
	}
	select {
	case <-p.t.C:
		return nil
	case <-ctx.Context().Done():
		return ctx.Context().Err()
	}
}

func (p *pacer) stop() {
	if p.t != nil {
		p.t.Stop()
	}
}
