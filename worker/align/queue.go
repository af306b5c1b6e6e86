package align

// RoundQueue is a FIFO of rounds bounded by MAX_QUEUE (SPEC §4.7): when it is full, the oldest
// whole round is dropped to make room, so a consumer falls behind by at most its capacity and
// then skips ahead. Dropping a round is one operation on the queue's own buffer, never on queues
// someone else is consuming (SPEC §4.4, Go fix 6). Push rounds from Checker.Next as Clones. A
// RoundQueue is used by one goroutine.
type RoundQueue struct {
	capacity int // ≤ 0: unbounded
	rounds   []Round
	dropped  uint64
}

// NewRoundQueue returns a queue holding at most capacity rounds; capacity ≤ 0 means unbounded.
func NewRoundQueue(capacity int) *RoundQueue { return &RoundQueue{capacity: capacity} }

// Push appends r, dropping the oldest round first if the queue is full; dropped reports that.
func (q *RoundQueue) Push(r Round) (dropped bool) {
	if q.capacity > 0 && len(q.rounds) >= q.capacity {
		q.rounds[0] = Round{}
		q.rounds = q.rounds[1:]
		q.dropped++
		dropped = true
	}
	q.rounds = append(q.rounds, r)
	return dropped
}

// Pop removes and returns the oldest round; ok is false when the queue is empty.
func (q *RoundQueue) Pop() (r Round, ok bool) {
	if len(q.rounds) == 0 {
		return Round{}, false
	}
	r = q.rounds[0]
	q.rounds[0] = Round{}
	q.rounds = q.rounds[1:]
	return r, true
}

// Len is the number of rounds queued.
func (q *RoundQueue) Len() int { return len(q.rounds) }

// Dropped is the number of rounds dropped because the queue was full.
func (q *RoundQueue) Dropped() uint64 { return q.dropped }
