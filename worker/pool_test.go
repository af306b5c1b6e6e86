package worker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// poolRig is a worker w1 on an embedded JetStream server, with a stand-in for the broker's
// control plane that answers every request of the worker and records its job states, and
// forward jobs the test starts, each from a pipe of its own to a pipe of its own.
type poolRig struct {
	t      *testing.T
	ns     *server.Server
	ctl    *nats.Conn // the control plane's and the test's connection
	js     jetstream.JetStream
	w      *Worker
	main   *nats.Conn // the worker's main connection
	stop   context.CancelFunc
	ran    chan error // Run's return
	sqn    map[int]uint64
	mu     sync.Mutex
	states map[int]protocol.JobState // the last state each job reported
	change chan struct{}             // a job state came
}

func newPoolRig(t *testing.T, dataConns int) *poolRig {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(ns.Shutdown)
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	r := &poolRig{t: t, ns: ns, sqn: map[int]uint64{}, states: map[int]protocol.JobState{}, change: make(chan struct{}, 1)}
	if r.ctl, err = nats.Connect(ns.ClientURL(), nats.Name("control plane")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.ctl.Close)
	if r.js, err = jetstream.New(r.ctl); err != nil {
		t.Fatal(err)
	}
	// The control plane: every request answered OK; the job states recorded.
	if _, err := r.ctl.Subscribe("marvelo.ctl.>", func(m *nats.Msg) {
		if strings.HasPrefix(m.Subject, protocol.SubjJobState+".") {
			var st protocol.JobState
			if err := json.Unmarshal(m.Data, &st); err == nil {
				r.mu.Lock()
				r.states[st.Job] = st
				r.mu.Unlock()
				select {
				case r.change <- struct{}{}:
				default:
				}
			}
		}
		if m.Reply != "" {
			_ = m.Respond(protocol.Answer(nil, nil))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := r.ctl.Flush(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if r.main, err = Connect(ns.ClientURL(), "", "", log, nats.Name(protocol.WorkerConnName("w1"))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.main.Close)
	if r.w, err = New(r.main, Options{Name: "w1", Slots: 64, WorkDir: t.TempDir(), Registry: builtin.Registry(), Logger: log}); err != nil {
		t.Fatal(err)
	}
	r.w.SetDataConnections(dataConns)
	ctx, stop := context.WithCancel(context.Background())
	r.stop, r.ran = stop, make(chan error, 1)
	go func() { r.ran <- r.w.Run(ctx) }()
	t.Cleanup(func() { r.stopWorker() })
	select {
	case <-r.w.Ready():
	case err := <-r.ran:
		t.Fatalf("worker: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not register")
	}
	return r
}

// stopWorker ends Run and waits for it (once; later calls return at once).
func (r *poolRig) stopWorker() {
	r.stop()
	if err, ok := <-r.ran; ok {
		close(r.ran)
		if err != nil {
			r.t.Errorf("worker: %v", err)
		}
	}
}

// pipe makes the stream and consumer of pipe id.
func (r *poolRig) pipe(id int) protocol.PipeBinding {
	r.t.Helper()
	p := protocol.PipeBinding{ID: id, Subject: fmt.Sprintf("marvelo.p.pipe.%d", id), Stream: fmt.Sprintf("MARVELO_p_%d", id),
		Consumer: fmt.Sprintf("c%d-e1", id), Codec: "cbor", BlockCount: 1, HeadSize: 1}
	st, err := r.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: p.Stream, Subjects: []string{p.Subject},
		Storage: jetstream.MemoryStorage, Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, MaxMsgs: 4096})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := st.CreateOrUpdateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: p.Consumer,
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 64}); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// startForward prepares and starts job id: forward from pipe 100+id to pipe 200+id.
func (r *poolRig) startForward(id int) {
	r.t.Helper()
	in, out := r.pipe(100+id), r.pipe(200+id)
	a := protocol.Assignment{Pipeline: "p", Epoch: 1, Inputs: []protocol.PipeBinding{in}, Outputs: []protocol.PipeBinding{out},
		Job: pipeline.Job{ID: id, Type: "forward", Inputs: []int{in.ID}, Outputs: []int{out.ID}}}
	r.call(protocol.VerbPrepare, a)
	r.call(protocol.VerbStart, protocol.JobRef{Pipeline: "p", Job: id, Epoch: 1})
}

func (r *poolRig) call(verb string, req any) {
	r.t.Helper()
	send := func(ctx context.Context, subject string, data []byte) ([]byte, error) {
		m, err := r.ctl.RequestWithContext(ctx, subject, data)
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := protocol.Call[protocol.Reply](ctx, send, protocol.WorkerSubject("w1", verb), req); err != nil {
		r.t.Fatalf("%s: %v", verb, err)
	}
}

// through writes the next block into job id's input and waits for it on its output.
func (r *poolRig) through(id int) {
	r.t.Helper()
	r.sqn[id]++
	data := binary.BigEndian.AppendUint64(nil, r.sqn[id])
	data = append(data, 0, 0x01) // head, payload (CBOR 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := r.js.Publish(ctx, fmt.Sprintf("marvelo.p.pipe.%d", 100+id), data); err != nil {
		r.t.Fatal(err)
	}
	cons, err := r.js.Consumer(ctx, fmt.Sprintf("MARVELO_p_%d", 200+id), fmt.Sprintf("c%d-e1", 200+id))
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
	if err != nil {
		r.t.Fatalf("job %d: block %d not forwarded: %v", id, r.sqn[id], err)
	}
	if got := binary.BigEndian.Uint64(m.Data()); got != r.sqn[id] {
		r.t.Fatalf("job %d forwarded block %d, want %d", id, got, r.sqn[id])
	}
	_ = m.Ack()
}

// workerConns is the server's count of open connections named as w1's.
func (r *poolRig) workerConns() int {
	r.t.Helper()
	cz, err := r.ns.Connz(&server.ConnzOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	n := 0
	for _, c := range cz.Conns {
		if c.Name == protocol.WorkerConnName("w1") {
			n++
		}
	}
	return n
}

// onConn is, for each data connection in use, the ids of the jobs running on it.
func (r *poolRig) onConn() map[*dataConn][]int {
	p := r.w.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[*dataConn][]int{}
	for _, s := range p.slots {
		s.mu.Lock()
		c := s.conn
		s.mu.Unlock()
		if c == nil {
			continue
		}
		for t := range c.jobs {
			out[c] = append(out[c], t.assign.Job.ID)
		}
	}
	return out
}

// waitState waits for job id to report state.
func (r *poolRig) waitState(id int, state string) protocol.JobState {
	r.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		st, ok := r.states[id]
		r.mu.Unlock()
		if ok && st.State == state {
			return st
		}
		select {
		case <-r.change:
		case <-deadline:
			r.t.Fatalf("job %d: state %q, want %q", id, st.State, state)
		}
	}
}

// TestTenJobsOpenAtMostThePoolsBoundOfDataConnections: a worker with a pool of 4 runs 10
// forward jobs, each moving a block; the server then counts 5 connections under the worker's
// name (its main one and 4 data connections, made as the jobs came), the jobs spread 3, 3, 2, 2
// over them; the worker's stop closes them.
func TestTenJobsOpenAtMostThePoolsBoundOfDataConnections(t *testing.T) {
	const bound, jobs = 4, 10
	r := newPoolRig(t, bound)
	if got := r.workerConns(); got != 1 {
		t.Fatalf("%d connections under the worker's name before any job, want 1 (data connections are made as jobs need them)", got)
	}
	for id := 1; id <= jobs; id++ {
		r.startForward(id)
	}
	for id := 1; id <= jobs; id++ {
		r.through(id)
	}
	if got := r.workerConns(); got != 1+bound {
		t.Errorf("%d connections under the worker's name with %d jobs running, want %d (its own and the pool's bound of %d)", got, jobs, 1+bound, bound)
	}
	var counts []int
	for _, ids := range r.onConn() {
		counts = append(counts, len(ids))
	}
	if len(counts) != bound {
		t.Errorf("jobs on %d data connections (%v), want %d", len(counts), counts, bound)
	}
	for _, n := range counts {
		if n < jobs/bound || n > jobs/bound+1 {
			t.Errorf("jobs per data connection %v, want them spread in turn (2 or 3 each)", counts)
			break
		}
	}
	conns := r.onConn()
	r.stopWorker()
	for c := range conns {
		if !c.nc.IsClosed() {
			t.Errorf("data connection %d open after the worker stopped", c.index)
		}
	}
	if r.main.IsClosed() {
		t.Error("the worker's stop closed its main connection, which is its caller's")
	}
}

// TestADataConnectionThatClosesFailsOnlyTheJobsOnIt: 4 jobs on a pool of 2. The server kicks a
// data connection: it reconnects as the worker's main one would, and its jobs go on. Then that
// connection closes for good: its two jobs fail, naming it; the other two go on, the worker
// stays registered on its main connection, and the next job on that slot gets a new connection.
func TestADataConnectionThatClosesFailsOnlyTheJobsOnIt(t *testing.T) {
	r := newPoolRig(t, 2)
	for id := 1; id <= 4; id++ {
		r.startForward(id)
	}
	for id := 1; id <= 4; id++ {
		r.through(id)
	}
	on := r.onConn()
	if len(on) != 2 {
		t.Fatalf("jobs on %d data connections, want 2: %v", len(on), on)
	}
	var victim, other *dataConn
	for c := range on {
		if c.index == 0 {
			victim = c
		} else {
			other = c
		}
	}
	cid, err := victim.nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	mainReconnects := r.main.Stats().Reconnects

	// A kick: the connection comes back, no job ends.
	back := victim.nc.StatusChanged(nats.CONNECTED)
	if err := r.ns.DisconnectClientByID(cid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-back:
	case <-time.After(10 * time.Second):
		t.Fatal("the kicked data connection did not reconnect")
	}
	victim.nc.RemoveStatusListener(back)
	for id := 1; id <= 4; id++ {
		r.through(id)
	}
	r.mu.Lock()
	for id, st := range r.states {
		if st.State != protocol.StateRunning {
			t.Errorf("job %d %s after a kick of a data connection: %s", id, st.State, st.Error)
		}
	}
	r.mu.Unlock()

	// A close for good: only its jobs fail.
	victim.nc.Close()
	for _, id := range on[victim] {
		st := r.waitState(id, protocol.StateFailed)
		if !strings.Contains(st.Error, "data connection 0") || !strings.Contains(st.Error, "closed") {
			t.Errorf("job %d failed with %q, want its data connection's close named", id, st.Error)
		}
	}
	for _, id := range on[other] {
		r.through(id)
		r.mu.Lock()
		st := r.states[id]
		r.mu.Unlock()
		if st.State != protocol.StateRunning {
			t.Errorf("job %d on the other data connection: %s (%s)", id, st.State, st.Error)
		}
	}
	if !r.main.IsConnected() || r.main.Stats().Reconnects != mainReconnects {
		t.Error("the worker's main connection was touched")
	}
	select {
	case err := <-r.ran:
		r.ran <- err
		t.Fatalf("the worker stopped: %v", err)
	default:
	}
	// The next two jobs take the two slots in turn: the closed one's gets a new connection.
	r.startForward(5)
	r.startForward(6)
	r.through(5)
	r.through(6)
	for c, ids := range r.onConn() {
		if c == victim {
			t.Errorf("jobs %v on the closed data connection", ids)
		}
		if c.nc.IsClosed() {
			t.Errorf("data connection %d closed with jobs %v", c.index, ids)
		}
	}
	if got := len(r.onConn()); got != 2 {
		t.Errorf("jobs on %d data connections, want 2", got)
	}
}
