package access

import (
	"sync"
	"time"
)

// Applied is the revision of the bucket a broker of a cluster has applied to its server, for the
// broker that wrote a change to wait until every broker has it. The zero value is at revision 0.
type Applied struct {
	mu      sync.Mutex
	rev     uint64
	advance chan struct{} // closed (and dropped) whenever rev grows; nil: nobody waits
}

// Mark records that the bucket is applied up to rev (a lower revision changes nothing).
func (p *Applied) Mark(rev uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if rev > p.rev {
		p.rev = rev
		if p.advance != nil {
			close(p.advance)
			p.advance = nil
		}
	}
}

// Rev is the revision applied.
func (p *Applied) Rev() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rev
}

// Wait returns once the revision applied is want or later, or when timeout has passed; it
// returns the revision applied then.
func (p *Applied) Wait(want uint64, timeout time.Duration) uint64 {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		rev := p.rev
		if p.advance == nil {
			p.advance = make(chan struct{})
		}
		advance := p.advance
		p.mu.Unlock()
		if rev >= want {
			break
		}
		select {
		case <-advance:
			continue
		case <-deadline.C:
		}
		break
	}
	return p.Rev()
}
