package benchkit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Topology is the shape of a baseline run: Sources publishers → Stages relays in a row → one
// subscriber. With more than one source the first relay is a join: it takes one message from
// each source and passes one on (the one with the newest timestamp), as a marvelo job with
// several synchronous inputs does.
type Topology struct {
	Sources int // publishers (default 1)
	Stages  int // relays between the publishers and the subscriber
}

// RelayConfig configures one baseline run.
type RelayConfig struct {
	// URL of the NATS server; Options are added to the connections (a token, TLS).
	URL     string
	Options []nats.Option
	Topology
	// Size is the bytes per message; at least StampSize when Rate > 0.
	Size int
	// Count is the number of messages each publisher sends.
	Count int
	// Rate is messages per second per publisher, each stamped with its send time (Now) in its
	// first 8 bytes; 0 publishes as fast as the flow-control window allows, without reading the
	// clock per message.
	Rate float64
	// Stall ends the run with an error when the subscriber receives nothing for this long
	// (default 10s): core NATS drops messages for a slow consumer instead of waiting.
	Stall time.Duration
	// SyncPublish makes JetStream publishers and relays wait for each message's store
	// acknowledgement before the next publish (one round trip per message per hop); by default
	// they publish asynchronously with up to MaxPending acknowledgements outstanding.
	SyncPublish bool
	// MaxPending bounds a JetStream publisher's outstanding acknowledgements (default 256).
	MaxPending int
}

// RelayResult is what the subscriber saw.
type RelayResult struct {
	Rounds  int64         // messages received (rounds, behind a join)
	Elapsed time.Duration // from the first message published to the last one received
	// Latency holds, when paced, receive time minus send time per message (behind a join: minus
	// the newest send time of the round).
	Latency *Histogram
	// Late counts paced messages published more than one interval after they were due.
	Late int64
	// CPU is the process CPU time from the first message published to the last one received.
	CPU time.Duration
}

// PerSecond is rounds per second.
func (r RelayResult) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rounds) / r.Elapsed.Seconds()
}

func (c *RelayConfig) check() error {
	if c.Sources < 1 {
		c.Sources = 1
	}
	switch {
	case c.Stages < 0:
		return fmt.Errorf("benchkit: %d stages", c.Stages)
	case c.Sources > 1 && c.Stages < 1:
		return fmt.Errorf("benchkit: %d sources need a join stage", c.Sources)
	case c.Count < 1:
		return fmt.Errorf("benchkit: count %d", c.Count)
	case c.Size < 1:
		return fmt.Errorf("benchkit: size %d", c.Size)
	case c.Rate > 0 && c.Size < StampSize:
		return fmt.Errorf("benchkit: a paced run stamps every message and needs %d bytes, size is %d", StampSize, c.Size)
	}
	if c.Stall <= 0 {
		c.Stall = 10 * time.Second
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	return nil
}

// window is how many messages a publisher may have in flight (sent, not yet received by the
// subscriber): enough to keep every relay busy, few enough that no connection's buffer in the
// server overflows (core NATS would cut it off as a slow consumer).
func window(size int) int64 {
	return min(max(int64(16<<20)/int64(size+64), 256), 65536)
}

// subjects names the hops of one run: sources publish to src(s), relay k publishes to hop(k),
// the subscriber reads the last hop (or the only source's subject without relays).
type subjects struct{ prefix string }

func (s subjects) src(i int) string { return s.prefix + ".src." + strconv.Itoa(i) }
func (s subjects) hop(k int) string { return s.prefix + ".hop." + strconv.Itoa(k) }

// input returns the subjects relay k reads (k == stages: the subscriber).
func (s subjects) input(k, sources int) []string {
	if k > 0 {
		return []string{s.hop(k - 1)}
	}
	in := make([]string, sources)
	for i := range in {
		in[i] = s.src(i)
	}
	return in
}

// run is the shared state of one baseline run: the subscriber's count, the publishers' flow
// control, the first error.
type run struct {
	cfg      RelayConfig
	window   int64
	step     int64
	received atomic.Int64
	space    []chan struct{} // one per publisher: the subscriber made room
	hist     *Histogram      // written by the subscriber's goroutine only
	done     chan struct{}   // closed when every round was received
	end      int64           // Now at the last round; read after done
	endCPU   time.Duration   // process CPU time then

	mu       sync.Mutex
	start    int64         // Now at the first publish, over all publishers
	startCPU time.Duration // process CPU time then
	late     int64
	err      error
	errc     chan struct{}
}

func newRun(cfg RelayConfig) *run {
	r := &run{cfg: cfg, window: window(cfg.Size), done: make(chan struct{}), errc: make(chan struct{})}
	r.step = max(r.window/8, 1)
	r.space = make([]chan struct{}, cfg.Sources)
	for i := range r.space {
		r.space[i] = make(chan struct{}, 1)
	}
	if cfg.Rate > 0 {
		r.hist = NewHistogram()
	}
	return r
}

// receive counts one round at the subscriber.
func (r *run) receive(data []byte) {
	if r.hist != nil {
		r.hist.Record(Now() - Stamp(data))
	}
	n := r.received.Add(1)
	if n%r.step == 0 {
		for _, ch := range r.space {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	if n == int64(r.cfg.Count) {
		r.end = Now()
		r.endCPU = ReadUsage().CPU()
		close(r.done)
	}
}

func (r *run) started(t int64) {
	cpu := ReadUsage().CPU()
	r.mu.Lock()
	if r.start == 0 || t < r.start {
		r.start, r.startCPU = t, cpu
	}
	r.mu.Unlock()
}

func (r *run) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
		close(r.errc)
	}
}

// publish sends Count messages through send, paced or as fast as the window allows.
func (r *run) publish(ctx context.Context, i int, send func([]byte) error) {
	buf := make([]byte, r.cfg.Size)
	var pacer *Pacer
	if r.cfg.Rate > 0 {
		pacer = NewPacer(r.cfg.Rate)
		defer pacer.Stop()
	} else {
		r.started(Now())
	}
	for j := int64(1); j <= int64(r.cfg.Count); j++ {
		if pacer != nil {
			PutStamp(buf, pacer.Next())
			if j == 1 {
				r.started(pacer.Start())
			}
		}
		if err := send(buf); err != nil {
			r.fail(fmt.Errorf("publisher %d: %w", i, err))
			return
		}
		if j%r.step == 0 {
			for j-r.received.Load() > r.window {
				select {
				case <-r.space[i]:
				case <-ctx.Done():
					return
				case <-r.errc:
					return
				}
			}
		}
	}
	if pacer != nil {
		r.mu.Lock()
		r.late += pacer.Late()
		r.mu.Unlock()
	}
}

// wait waits until every round was received, an error, or a stall.
func (r *run) wait(ctx context.Context, what string) (RelayResult, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := int64(-1), time.Now()
	for {
		select {
		case <-r.done:
			r.mu.Lock()
			defer r.mu.Unlock()
			return RelayResult{Rounds: int64(r.cfg.Count), Elapsed: time.Duration(r.end - r.start), Latency: r.hist, CPU: r.endCPU - r.startCPU}, nil
		case <-r.errc:
			r.mu.Lock()
			defer r.mu.Unlock()
			return RelayResult{}, fmt.Errorf("%s: %w", what, r.err)
		case <-ctx.Done():
			return RelayResult{}, ctx.Err()
		case <-tick.C:
			if n := r.received.Load(); n != last {
				last, lastAt = n, time.Now()
			} else if time.Since(lastAt) > r.cfg.Stall {
				return RelayResult{}, fmt.Errorf("%s: stalled at %d of %d messages for %s (messages lost?)", what, n, r.cfg.Count, r.cfg.Stall)
			}
		}
	}
}

// finish waits for the run's end, then stops every goroutine of the run and adds what the
// publishers counted.
func (r *run) finish(ctx context.Context, wg *sync.WaitGroup, cancel context.CancelFunc, what string) (RelayResult, error) {
	res, err := r.wait(ctx, what)
	cancel()
	wg.Wait()
	r.mu.Lock()
	res.Late = r.late
	r.mu.Unlock()
	return res, err
}

// newest returns the message with the newest timestamp (the first of equals).
func newest(msgs [][]byte) []byte {
	best := msgs[0]
	for _, m := range msgs[1:] {
		if Stamp(m) > Stamp(best) {
			best = m
		}
	}
	return best
}

// conns opens and closes the run's connections.
type conns struct {
	cfg RelayConfig
	all []*nats.Conn
}

func (c *conns) open(name string) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.Name("marvelo-bench " + name), nats.Timeout(5 * time.Second)}, c.cfg.Options...)
	nc, err := nats.Connect(c.cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s to %s: %w", name, c.cfg.URL, err)
	}
	c.all = append(c.all, nc)
	return nc, nil
}

func (c *conns) close() {
	for _, nc := range c.all {
		nc.Close()
	}
}

// CoreRelays runs the topology over core NATS: each publisher, relay and the subscriber has its
// own connection; a relay republishes each message it receives, a join republishes one message
// per round. Nothing is stored; flow control is a window of messages in flight per publisher.
func CoreRelays(ctx context.Context, cfg RelayConfig) (RelayResult, error) {
	if err := cfg.check(); err != nil {
		return RelayResult{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := newRun(cfg)
	sub := subjects{prefix: "benchkit." + nuid.Next()}
	cs := &conns{cfg: cfg}
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		cs.close()
	}()

	// Subscribers first, from the end of the line, so nothing is published to nobody.
	snc, err := cs.open("subscriber")
	if err != nil {
		return RelayResult{}, err
	}
	s, err := snc.Subscribe(sub.input(cfg.Stages, cfg.Sources)[0], func(m *nats.Msg) { r.receive(m.Data) })
	if err != nil {
		return RelayResult{}, err
	}
	_ = s.SetPendingLimits(-1, -1)
	for k := cfg.Stages - 1; k >= 0; k-- {
		nc, err := cs.open("relay " + strconv.Itoa(k+1))
		if err != nil {
			return RelayResult{}, err
		}
		out := sub.hop(k)
		in := sub.input(k, cfg.Sources)
		if len(in) == 1 {
			s, err := nc.Subscribe(in[0], func(m *nats.Msg) {
				if err := nc.Publish(out, m.Data); err != nil {
					r.fail(fmt.Errorf("relay %d: %w", k+1, err))
				}
			})
			if err != nil {
				return RelayResult{}, err
			}
			_ = s.SetPendingLimits(-1, -1)
			continue
		}
		if err := coreJoin(ctx, &wg, r, nc, in, out); err != nil {
			return RelayResult{}, err
		}
	}
	for _, nc := range cs.all {
		if err := nc.Flush(); err != nil { // every subscription is known to the server
			return RelayResult{}, err
		}
	}
	for i := range cfg.Sources {
		nc, err := cs.open("publisher " + strconv.Itoa(i))
		if err != nil {
			return RelayResult{}, err
		}
		subject := sub.src(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publish(ctx, i, func(b []byte) error { return nc.Publish(subject, b) })
		}()
	}
	return r.finish(ctx, &wg, cancel, "core NATS relays")
}

// coreJoin subscribes to every input and publishes one message per round of one message from
// each.
func coreJoin(ctx context.Context, wg *sync.WaitGroup, r *run, nc *nats.Conn, in []string, out string) error {
	chans := make([]chan []byte, len(in))
	for i, subject := range in {
		ch := make(chan []byte, 1024)
		chans[i] = ch
		s, err := nc.Subscribe(subject, func(m *nats.Msg) {
			select { // a full channel holds up this subscription only; its pending grows
			case ch <- m.Data:
			case <-ctx.Done():
			}
		})
		if err != nil {
			return err
		}
		_ = s.SetPendingLimits(-1, -1)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		round := make([][]byte, len(chans))
		for {
			for i, ch := range chans {
				select {
				case round[i] = <-ch:
				case <-ctx.Done():
					return
				}
			}
			if err := nc.Publish(out, newest(round)); err != nil {
				r.fail(fmt.Errorf("join: %w", err))
				return
			}
		}
	}()
	return nil
}

// JetStreamRelays runs the topology over JetStream, one message per block: every hop is a
// memory stream (work-queue retention, as marvelo's pipes) with a durable pull consumer at the
// JetStream defaults. Publishers and relays publish asynchronously, in order on their own
// connection, with up to MaxPending store acknowledgements outstanding (or synchronously, with
// SyncPublish), and a relay acknowledges a message it consumed once what it made of it is
// stored — marvelo's guarantee, without its batching.
func JetStreamRelays(ctx context.Context, cfg RelayConfig) (RelayResult, error) {
	if err := cfg.check(); err != nil {
		return RelayResult{}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := newRun(cfg)
	id := nuid.Next()
	sub := subjects{prefix: "benchkit." + id}
	cs := &conns{cfg: cfg}
	var wg sync.WaitGroup
	var cjs jetstream.JetStream
	streams := map[string]string{} // subject → stream
	defer func() {
		cancel()
		wg.Wait()
		if cjs != nil {
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer dcancel()
			for _, name := range streams {
				_ = cjs.DeleteStream(dctx, name)
			}
		}
		cs.close()
	}()

	cnc, err := cs.open("control")
	if err != nil {
		return RelayResult{}, err
	}
	if cjs, err = jetstream.New(cnc); err != nil {
		return RelayResult{}, err
	}
	var all []string
	for i := range cfg.Sources {
		all = append(all, sub.src(i))
	}
	for k := range cfg.Stages {
		all = append(all, sub.hop(k))
	}
	for k, subject := range all {
		name := "BENCHKIT_" + id + "_" + strconv.Itoa(k)
		st, err := cjs.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{subject}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.MemoryStorage,
		})
		if err != nil {
			return RelayResult{}, fmt.Errorf("jetstream baseline: stream: %w", err)
		}
		streams[subject] = name
		_, err = st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			return RelayResult{}, fmt.Errorf("jetstream baseline: consumer: %w", err)
		}
	}
	// consume reads the consumer of subject over js (the participant's own connection).
	consume := func(js jetstream.JetStream, name string, subject string, handle func(jetstream.Msg) error) error {
		cons, err := js.Consumer(ctx, streams[subject], "bench")
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		it, err := cons.Messages()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		stop := context.AfterFunc(ctx, it.Stop)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer stop()
			defer it.Stop()
			for {
				m, err := it.Next()
				if err != nil {
					if ctx.Err() == nil && !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
						r.fail(fmt.Errorf("%s: %w", name, err))
					}
					return
				}
				if err := handle(m); err != nil {
					if ctx.Err() == nil {
						r.fail(fmt.Errorf("%s: %w", name, err))
					}
					return
				}
			}
		}()
		return nil
	}

	snc, err := cs.open("subscriber")
	if err != nil {
		return RelayResult{}, err
	}
	sjs, err := jetstream.New(snc)
	if err != nil {
		return RelayResult{}, err
	}
	err = consume(sjs, "subscriber", sub.input(cfg.Stages, cfg.Sources)[0], func(m jetstream.Msg) error {
		r.receive(m.Data())
		return m.Ack()
	})
	if err != nil {
		return RelayResult{}, err
	}
	for k := cfg.Stages - 1; k >= 0; k-- {
		name := "relay " + strconv.Itoa(k+1)
		nc, err := cs.open(name)
		if err != nil {
			return RelayResult{}, err
		}
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending))
		if err != nil {
			return RelayResult{}, err
		}
		pub := newJSPublisher(ctx, &wg, r, name, js, cfg)
		out := sub.hop(k)
		in := sub.input(k, cfg.Sources)
		if len(in) == 1 {
			err = consume(js, name, in[0], func(m jetstream.Msg) error {
				return pub.publish(out, m.Data(), m)
			})
			if err != nil {
				return RelayResult{}, err
			}
			continue
		}
		chans := make([]chan jetstream.Msg, len(in))
		for i, subject := range in {
			ch := make(chan jetstream.Msg, 64)
			chans[i] = ch
			err = consume(js, name, subject, func(m jetstream.Msg) error {
				select {
				case ch <- m:
				case <-ctx.Done():
				}
				return nil
			})
			if err != nil {
				return RelayResult{}, err
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			round := make([]jetstream.Msg, len(chans))
			data := make([][]byte, len(chans))
			for {
				for i, ch := range chans {
					select {
					case round[i] = <-ch:
						data[i] = round[i].Data()
					case <-ctx.Done():
						return
					}
				}
				if err := pub.publish(out, newest(data), round...); err != nil {
					if ctx.Err() == nil {
						r.fail(fmt.Errorf("join: %w", err))
					}
					return
				}
			}
		}()
	}
	for i := range cfg.Sources {
		nc, err := cs.open("publisher " + strconv.Itoa(i))
		if err != nil {
			return RelayResult{}, err
		}
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending))
		if err != nil {
			return RelayResult{}, err
		}
		pub := newJSPublisher(ctx, &wg, r, "publisher "+strconv.Itoa(i), js, cfg)
		subject := sub.src(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.publish(ctx, i, func(b []byte) error {
				if !cfg.SyncPublish {
					b = append([]byte(nil), b...) // a retried async publish sends it again
				}
				return pub.publish(subject, b)
			})
		}()
	}
	return r.finish(ctx, &wg, cancel, "JetStream relays")
}

// jsPublisher publishes one participant's messages to JetStream and acknowledges the messages
// they were made from once they are stored.
type jsPublisher struct {
	ctx  context.Context
	r    *run
	name string
	js   jetstream.JetStream
	sync bool
	wait time.Duration
	acks chan jsPending
}

type jsPending struct {
	f    jetstream.PubAckFuture
	from []jetstream.Msg
}

func newJSPublisher(ctx context.Context, wg *sync.WaitGroup, r *run, name string, js jetstream.JetStream, cfg RelayConfig) *jsPublisher {
	p := &jsPublisher{ctx: ctx, r: r, name: name, js: js, sync: cfg.SyncPublish, wait: cfg.Stall}
	if !p.sync {
		p.acks = make(chan jsPending, cfg.MaxPending)
		wg.Add(1)
		go func() { defer wg.Done(); p.acker() }()
	}
	return p
}

// publish stores data on subject and then acknowledges from.
func (p *jsPublisher) publish(subject string, data []byte, from ...jetstream.Msg) error {
	if p.sync {
		if _, err := p.js.Publish(p.ctx, subject, data); err != nil {
			return err
		}
		return ack(from)
	}
	f, err := p.js.PublishAsync(subject, data, jetstream.WithStallWait(p.wait))
	if err != nil {
		return err
	}
	select {
	case p.acks <- jsPending{f: f, from: append([]jetstream.Msg(nil), from...)}:
		return nil
	case <-p.ctx.Done():
		return p.ctx.Err()
	}
}

// acker waits for each store acknowledgement in turn and acknowledges what it was made from.
func (p *jsPublisher) acker() {
	for {
		select {
		case pa := <-p.acks:
			select {
			case <-pa.f.Ok():
				if err := ack(pa.from); err != nil && p.ctx.Err() == nil {
					p.r.fail(fmt.Errorf("%s: ack: %w", p.name, err))
					return
				}
			case err := <-pa.f.Err():
				if p.ctx.Err() == nil {
					p.r.fail(fmt.Errorf("%s: publish: %w", p.name, err))
				}
				return
			case <-p.ctx.Done():
				return
			}
		case <-p.ctx.Done():
			return
		}
	}
}

func ack(msgs []jetstream.Msg) error {
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			return err
		}
	}
	return nil
}
