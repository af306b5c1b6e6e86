package align

import (
	"fmt"
	"sync"

	"github.com/marvelo/marvelo/pipeline"
)

// Drop modes of an optional pipe whose buffer is full.
const (
	DropOldest = "oldest" // drop the oldest buffered value and keep the new one (the default)
	DropNewest = "newest" // discard the new value
)

// Optional is the receiving end of an optional pipe (OptionalMixIn, SPEC §1.3): values arrive
// with Push, from the pipe's reader goroutine, and the job reads them with Read, which never
// blocks. It is safe for concurrent use.
type Optional struct {
	mu         sync.Mutex
	def        any
	store      bool
	buffer     int // 0 = unbounded
	dropNewest bool

	queue   []optionalItem
	last    optionalItem // the value of the last fresh read, with store
	hasLast bool
	dropped uint64
	// notify, if set, is signalled (without blocking) on every Push: a job whose inputs are all
	// optional waits on it for its next round instead of polling the buffers.
	notify chan<- struct{}
}

type optionalItem struct {
	v    any
	head uint32
}

// NewOptional returns the buffer of optional pipe pipe (its id, for messages) configured by cfg:
// Default is read while nothing arrived, Store (default true) makes the last value read replace
// it, Buffer bounds the values waiting (0 = unbounded), Drop chooses what a full buffer drops.
func NewOptional(pipe int, cfg pipeline.Optional) (*Optional, error) {
	o := &Optional{def: cfg.Default, store: cfg.Store == nil || *cfg.Store, buffer: cfg.Buffer}
	switch cfg.Drop {
	case "", DropOldest:
	case DropNewest:
		o.dropNewest = true
	default:
		return nil, fmt.Errorf("pipe %d: optional drop mode %q must be 'newest' or 'oldest'", pipe, cfg.Drop)
	}
	if cfg.Buffer < 0 {
		return nil, fmt.Errorf("pipe %d: optional buffer %d must not be negative", pipe, cfg.Buffer)
	}
	return o, nil
}

// NotifyOn makes every later Push signal ch without blocking (ch should have a buffer of 1, so a
// signal is never lost and never piles up). Several buffers may share one channel.
func (o *Optional) NotifyOn(ch chan<- struct{}) {
	o.mu.Lock()
	o.notify = ch
	o.mu.Unlock()
}

// Push buffers a value that arrived with its head. On a full buffer, drop mode oldest discards
// the oldest buffered value, newest discards v; dropped reports that a value was discarded.
func (o *Optional) Push(v any, head uint32) (dropped bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.notify != nil {
		select {
		case o.notify <- struct{}{}:
		default: // a signal is already waiting
		}
	}
	if o.buffer > 0 && len(o.queue) >= o.buffer {
		o.dropped++
		if o.dropNewest {
			return true
		}
		o.queue[0] = optionalItem{} // let the value be collected
		o.queue = o.queue[1:]
		dropped = true
	}
	o.queue = append(o.queue, optionalItem{v, head})
	return dropped
}

// Read returns the oldest buffered value and its head with fresh true. With nothing buffered it
// returns, with fresh false, the last value read and its head if Store is on and a value was
// read, otherwise the default with head 0. It never blocks.
func (o *Optional) Read() (v any, head uint32, fresh bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		if o.store && o.hasLast {
			return o.last.v, o.last.head, false
		}
		return o.def, 0, false
	}
	it := o.queue[0]
	o.queue[0] = optionalItem{}
	o.queue = o.queue[1:]
	if len(o.queue) == 0 {
		o.queue = o.queue[:0:0] // drop the consumed backing array rather than grow it forever
	}
	if o.store {
		o.last, o.hasLast = it, true
	}
	return it.v, it.head, true
}

// Len is the number of values waiting.
func (o *Optional) Len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue)
}

// Dropped is the number of values a full buffer discarded.
func (o *Optional) Dropped() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.dropped
}
