package worker

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// realtimeQueue is how many messages a realtime input holds before it drops the oldest.
const realtimeQueue = 256

// realtimeSub is the subscription of a realtime input (qos realtime: core NATS, nothing stored).
// It is made when the job is prepared, before any job of the pipeline starts, so the first
// blocks are not sent to nobody. When the job falls behind, the oldest message is dropped and
// counted: for audio a late block is worthless.
//
// It subscribes twice: to the pipe's subject, and to where a worker with an identity of its own
// hears another worker identity's blocks (protocol.RealtimeRelaySubject: each identity is a NATS
// account of its own, DESIGN.md §10). A block comes by one of them only.
type realtimeSub struct {
	subs  []*nats.Subscription
	mu    sync.Mutex // the two subscriptions deliver on goroutines of their own
	ch    chan inMsg
	drops atomic.Uint64
}

func subscribeRealtime(nc *nats.Conn, in *input) (*realtimeSub, error) {
	capacity := realtimeQueue
	if in.pipe.MaxQueue > 0 {
		capacity = in.pipe.MaxQueue
	}
	rs := &realtimeSub{ch: make(chan inMsg, capacity)}
	for _, subject := range []string{in.pipe.Subject, protocol.RealtimeRelaySubject(in.pipe.Subject)} {
		sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
			rs.offer(in.parse(m.Header, m.Data))
		})
		if err != nil {
			rs.close()
			return nil, fmt.Errorf("input pipe %d: subscribe %s: %w", in.pipe.ID, subject, err)
		}
		rs.subs = append(rs.subs, sub)
	}
	// The subscriptions must be known to the server before the sources start.
	if err := nc.Flush(); err != nil {
		rs.close()
		return nil, fmt.Errorf("input pipe %d: %w", in.pipe.ID, err)
	}
	return rs, nil
}

// offer queues a message, dropping the oldest when the queue is full. The subscriptions send
// one at a time, so after one drop there is room.
func (rs *realtimeSub) offer(m inMsg) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	select {
	case rs.ch <- m:
		return
	default:
	}
	select {
	case old := <-rs.ch:
		rs.drops.Add(uint64(len(old.blocks)))
	default:
	}
	select {
	case rs.ch <- m:
	default:
		rs.drops.Add(uint64(len(m.blocks)))
	}
}

func (rs *realtimeSub) close() {
	if rs == nil {
		return
	}
	for _, sub := range rs.subs {
		_ = sub.Unsubscribe()
	}
}

// realtimeInputs subscribes the realtime inputs of an assignment.
func realtimeInputs(nc *nats.Conn, a *protocol.Assignment) (map[int]*realtimeSub, error) {
	subs := map[int]*realtimeSub{}
	for k, p := range a.Inputs {
		if !p.Realtime {
			continue
		}
		rs, err := subscribeRealtime(nc, newInput(k, p))
		if err != nil {
			for _, s := range subs {
				s.close()
			}
			return nil, err
		}
		subs[p.ID] = rs
	}
	return subs, nil
}
