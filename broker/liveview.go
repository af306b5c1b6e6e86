package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// What the live view (package broker/liveview, marvelo-broker --ui) reads of the broker, and how
// it admits its clients. It reads over a NATS connection of its own, as the marvelo command
// does: the status (with each pipe's statistics, DESIGN.md §11) and the workers the API serves,
// each pipeline's document from the state bucket, and the log tail from the log stream. So it
// works on every broker of a cluster, whichever leads, and never takes the control plane's lock.

// LiveSource is the live view's reading of a broker (liveview.Source). Close it after use.
type LiveSource struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	mu    sync.Mutex
	kv    jetstream.KeyValue  // the state bucket, once opened
	tails map[string]*logTail // pipeline → its log tail
}

// LiveSource opens the live view's connection to the broker.
func (b *Broker) LiveSource() (*LiveSource, error) {
	nc, err := b.Connect(nats.Name("marvelo-liveview"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("live view: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("live view: %w", err)
	}
	return &LiveSource{nc: nc, js: js, log: b.log, tails: map[string]*logTail{}}, nil
}

// Close closes the live view's connection.
func (s *LiveSource) Close() { s.nc.Close() }

func (s *LiveSource) request(ctx context.Context, subject string, req, out any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	m, err := s.nc.RequestWithContext(ctx, subject, data)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	return nil
}

// Pipelines returns the status of every pipeline with its events and pipe statistics.
func (s *LiveSource) Pipelines(ctx context.Context) ([]protocol.PipelineStatus, error) {
	var r protocol.StatusReply
	if err := s.request(ctx, protocol.SubjStatus, protocol.NameRequest{Pipes: true}, &r); err != nil {
		return nil, err
	}
	return r.Pipelines, r.Err()
}

// Workers returns the workers the broker knows.
func (s *LiveSource) Workers(ctx context.Context) ([]protocol.WorkerStatus, error) {
	var r protocol.WorkersReply
	if err := s.request(ctx, protocol.SubjWorkers, struct{}{}, &r); err != nil {
		return nil, err
	}
	return r.Workers, r.Err()
}

// Document returns the document of a pipeline's current run, as the state bucket keeps it.
func (s *LiveSource) Document(ctx context.Context, name string) (*pipeline.Pipeline, error) {
	s.mu.Lock()
	kv := s.kv
	s.mu.Unlock()
	if kv == nil {
		var err error
		if kv, err = s.js.KeyValue(ctx, kvPipelines); err != nil {
			return nil, fmt.Errorf("state bucket %s: %w", kvPipelines, err)
		}
		s.mu.Lock()
		s.kv = kv
		s.mu.Unlock()
	}
	e, err := kv.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", name, err)
	}
	var sp savedPipeline
	if err := json.Unmarshal(e.Value(), &sp); err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", name, err)
	}
	doc, err := pipeline.Parse(sp.Document)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", name, err)
	}
	return doc, nil
}

// The log tail of a pipeline's run is read from the log stream incrementally: the first time
// the lines of the last seconds (further back only while they are fewer than kept), then at
// each call the lines since the last one read. An ephemeral consumer does each read.
const (
	liveTailKeep  = 1000  // lines kept per pipeline
	liveTailScan  = 20000 // more lines than this since the last read: start again from the end
	liveTailsKept = 64    // pipelines whose tails are kept
)

type logTail struct {
	mu    sync.Mutex
	since time.Time // the run's submission: no line before it
	last  uint64    // the stream sequence read up to
	lines []protocol.LogLine
	used  time.Time
}

// Logs returns at most tail of the last log lines of a pipeline since a time, oldest first.
func (s *LiveSource) Logs(ctx context.Context, name string, since time.Time, tail int) ([]protocol.LogLine, error) {
	t := s.tail(name, since)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := s.catchUp(ctx, name, t); err != nil {
		return nil, err
	}
	n := min(max(tail, 0), len(t.lines))
	return slices.Clone(t.lines[len(t.lines)-n:]), nil
}

// tail returns the tail of a pipeline's run, new when the run is; it forgets the least used
// tails beyond liveTailsKept.
func (s *LiveSource) tail(name string, since time.Time) *logTail {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tails[name]
	if t == nil || !t.since.Equal(since) {
		t = &logTail{since: since}
		s.tails[name] = t
	}
	t.used = time.Now()
	for len(s.tails) > liveTailsKept {
		oldest := ""
		for k, v := range s.tails {
			if oldest == "" || v.used.Before(s.tails[oldest].used) {
				oldest = k
			}
		}
		delete(s.tails, oldest)
	}
	return t
}

// catchUp brings a tail up to the end of the log stream. Callers hold t.mu.
func (s *LiveSource) catchUp(ctx context.Context, name string, t *logTail) error {
	if t.last > 0 {
		_, err := s.readLogs(ctx, name, t, jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: t.last + 1}, liveTailScan)
		if !errors.Is(err, errTooMany) {
			return err
		}
		// Too far behind: only the end matters, read as the first time.
	}
	now := time.Now()
	for _, back := range []time.Duration{10 * time.Second, 5 * time.Minute, 0} {
		start := t.since
		if back > 0 && now.Add(-back).After(start) {
			start = now.Add(-back)
		}
		t.lines, t.last = nil, 0
		if _, err := s.readLogs(ctx, name, t, jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start}, 0); err != nil {
			return err
		}
		if len(t.lines) >= liveTailKeep || start.Equal(t.since) {
			break
		}
	}
	return nil
}

var errTooMany = errors.New("too many lines")

// readLogs reads the lines of a pipeline from where cfg starts up to the end of the log stream
// into t (keeping the last liveTailKeep), and returns how many it read. With most > 0 it reads
// nothing and returns errTooMany when more than most are waiting.
func (s *LiveSource) readLogs(ctx context.Context, name string, t *logTail, cfg jetstream.ConsumerConfig, most int) (int, error) {
	stream, err := s.js.Stream(ctx, protocol.LogStream)
	if err != nil {
		return 0, fmt.Errorf("log stream: %w", err)
	}
	// Every line up to here is read by the consumer, or was before t.last: the next read starts after.
	end := stream.CachedInfo().State.LastSeq
	cfg.FilterSubjects = []string{protocol.LogFilter(name)}
	cfg.AckPolicy = jetstream.AckNonePolicy
	cfg.MemoryStorage = true
	cfg.Replicas = 1
	cfg.InactiveThreshold = 30 * time.Second // gone by itself should the delete below fail
	cons, err := stream.CreateConsumer(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("log stream: consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := stream.DeleteConsumer(dctx, cons.CachedInfo().Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			s.log.Debug("live view: log consumer not deleted", "error", err)
		}
	}()
	pending := int(cons.CachedInfo().NumPending)
	if most > 0 && pending > most {
		return 0, errTooMany
	}
	read := 0
	for read < pending {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		batch, err := cons.Fetch(min(pending-read, 500), jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			return read, fmt.Errorf("log stream: fetch: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if md, err := m.Metadata(); err == nil {
				t.last = max(t.last, md.Sequence.Stream)
			}
			var l protocol.LogLine
			if err := json.Unmarshal(m.Data(), &l); err == nil {
				t.lines = append(t.lines, l)
			}
		}
		err = batch.Error()
		cancel()
		if err != nil && ctx.Err() == nil && (errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)) {
			err = nil // fewer lines than pending: removed meanwhile by the stream's limits
		}
		if err != nil {
			return read, fmt.Errorf("log stream: fetch: %w", err)
		}
		if len(t.lines) > 2*liveTailKeep {
			t.lines = slices.Clone(t.lines[len(t.lines)-liveTailKeep:])
		}
		read += got
		if got == 0 {
			break // the rest was removed meanwhile (the stream's limits)
		}
	}
	if len(t.lines) > liveTailKeep {
		t.lines = slices.Clone(t.lines[len(t.lines)-liveTailKeep:])
	}
	t.last = max(t.last, end)
	return read, nil
}

// LiveAuthorizer returns the live view's check of a client's token, or nil when the broker has
// no --auth-token (the view then serves loopback only). A token is admitted exactly as the NATS
// server admits a client presenting it — the same code, tokenAuth.Check — and must then be
// allowed the API's status and workers: the operator token, an operator identity's or a
// read-only identity's (protocol.IdentityToken). The worker token and worker identities are
// refused, as they are by the API.
func (b *Broker) LiveAuthorizer() func(token string) bool {
	if b.opts.AuthToken == "" {
		return nil
	}
	auth := tokenAuth{operator: b.opts.AuthToken, worker: b.opts.WorkerToken, ids: b.access}
	return func(token string) bool {
		if token == "" {
			return false
		}
		c := &tokenClient{token: token}
		if !auth.Check(c) || c.user == nil {
			return false
		}
		if c.user.Permissions == nil {
			return true // the operator token or an operator identity: everything
		}
		name, _, ok := protocol.ParseIdentityToken(token)
		return ok && b.access.role(name) == RoleReader
	}
}

// role returns the role of an enrolled identity, "" for none.
func (a *access) role(name string) string {
	if a == nil {
		return ""
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	id, _ := a.tab.Identity(name)
	return id.Role
}

// tokenClient is an HTTP client of the live view presented to tokenAuth.Check as a NATS client
// presenting the token, to learn the permissions it would have. It has id 0, which no NATS
// client has (the server counts them from 1).
type tokenClient struct {
	token string
	user  *server.User
}

func (c *tokenClient) GetOpts() *server.ClientOpts                 { return &server.ClientOpts{Token: c.token} }
func (c *tokenClient) GetTLSConnectionState() *tls.ConnectionState { return nil }
func (c *tokenClient) RegisterUser(u *server.User)                 { c.user = u }
func (c *tokenClient) RemoteAddress() net.Addr                     { return nil }
func (c *tokenClient) GetNonce() []byte                            { return nil }
func (c *tokenClient) Kind() int                                   { return server.CLIENT }
func (c *tokenClient) GetID() uint64                               { return 0 }
