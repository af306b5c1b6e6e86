// Package leader elects one leader among the candidates sharing a NATS JetStream (DESIGN.md §8a):
// the brokers of a cluster, for their control plane. NATS does the election: the key "leader"
// of a replicated KV bucket. A candidate leads while it holds the key: it wins it with a create
// (which succeeds only where the key is absent) or, when the key has not changed for leaseTTL,
// with an update naming the revision it saw (compare-and-set: of several standbys one wins); it
// keeps it with updates every leaseRenew naming the revision it last wrote. A leader stops acting
// leaseValid after the last renewal it sent that succeeded — before any standby, which waits
// leaseTTL from when it saw that renewal, can take the key: two leaders never act at once. The
// bucket's entries also expire after leaseTTL, so the candidates' announcements (Members) vanish
// with them.
//
// The interface: Campaign runs until its context ends and calls Config.Lead for each term won,
// on its own goroutine; the Term says whether it still holds (Held, Context), and ends early with
// Resign. Observe reads an election without taking part. What a leader does with its terms is
// the caller's; this package imports nothing of the broker.
package leader

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/pipeline/backoff"
)

const (
	// Bucket is the KV bucket of the election: the leader key and the members' announcements.
	Bucket = "marvelo_leader"
	// MemberPrefix starts the key of each member's announcement: MemberPrefix + Config.Name.
	MemberPrefix = "member."

	leaderKey    = "leader"
	leaseTTL     = 1600 * time.Millisecond // a key unchanged this long is a dead leader's
	leaseValid   = 1100 * time.Millisecond // a leader acts this long after a renewal it sent
	leaseRenew   = 200 * time.Millisecond
	campaignPoll = 150 * time.Millisecond
	// electionCall bounds each read and write of the election: a request lost with a dying
	// server (a KV read is answered by any replica, so it may have gone to the dead one) is
	// made again after this, not after the client's default 5 s.
	electionCall = 400 * time.Millisecond
	// openAttempt and openRetryEvery space the attempts to create the bucket while the
	// cluster's JetStream is not ready yet (as the broker's jsRetry spaces its requests).
	openAttempt    = 2 * time.Second
	openRetryEvery = 250 * time.Millisecond
)

// Record is the value of the leader key: who leads, and since when.
type Record struct {
	Server string    `json:"server"`
	Since  time.Time `json:"since"`
}

// Config is a candidate.
type Config struct {
	// Name is the candidate, unique among them (a broker's server name): its Record's Server
	// and the key of its announcement.
	Name string
	// Replicas is the number of copies of the election's bucket.
	Replicas int
	// Member, when not nil, is announced under MemberPrefix+Name while Campaign runs and deleted
	// when it returns (Members lists the announcements).
	Member []byte
	// Deferral, asked at every look at the leader key, is how much longer than leaseTTL this
	// candidate waits before it takes a dead leader's key, and how long it waits before it
	// creates an absent one. Nil waits nothing more.
	Deferral func() time.Duration
	// Lead runs each term this candidate wins, on Campaign's goroutine: Campaign campaigns again
	// only after it returns. It must return soon once the term's Context ends. Returning while
	// the term lasts gives the lead up (Resign).
	Lead func(*Term)
	// Log gets the election's messages (default slog.Default()).
	Log *slog.Logger
}

func (cfg *Config) deferral() time.Duration {
	if cfg.Deferral == nil {
		return 0
	}
	return cfg.Deferral()
}

// Term is one term of leadership: from the key won until Lead returns.
type Term struct {
	ctx      context.Context
	kv       jetstream.KeyValue
	lease    *lease
	resign   context.CancelFunc
	resigned atomic.Bool
}

// Context ends with the term: the lead was lost (another candidate holds the key, or a renewal
// did not succeed before the lease ran out), given up (Resign), or Campaign's context ended.
func (t *Term) Context() context.Context { return t.ctx }

// Held reports whether the leader may still act: its term has not ended and the lease its last
// successful renewal gave still runs. It turns false leaseValid after that renewal at the
// latest, before any other candidate can take the key.
func (t *Term) Held() bool {
	return t.ctx.Err() == nil && t.lease.held()
}

// Resign ends the term: its Context ends now, and once Lead returns the key (still held) is
// deleted so another candidate takes over at once. This candidate campaigns again after leaseTTL.
func (t *Term) Resign() {
	t.resigned.Store(true)
	t.resign()
}

// Members reads the announcements of the live members, by name (the leader's own included),
// within one election call. A key that expired between the listing and its read is a member
// gone; any other read that failed is left out and its error returned with the rest.
func (t *Term) Members(ctx context.Context) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, electionCall)
	defer cancel()
	return members(ctx, t.kv)
}

// lease is one term of leadership: the revision last written and until when it may act.
type lease struct {
	mu    sync.Mutex
	rev   uint64
	until time.Time
}

func (l *lease) held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !time.Now().After(l.until)
}

func (l *lease) get() (uint64, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev, l.until
}

func (l *lease) extend(rev uint64, until time.Time) {
	l.mu.Lock()
	l.rev, l.until = rev, until
	l.mu.Unlock()
}

// Campaign runs until ctx ends: it opens the election's bucket (waiting for the cluster's
// JetStream), announces the candidate, tries to win the leader key, and runs cfg.Lead during
// each term it wins. Every goroutine it starts has ended when it returns; a key it still holds
// then has been deleted.
func Campaign(ctx context.Context, js jetstream.JetStream, cfg Config) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	kv := open(ctx, js, cfg)
	if kv == nil {
		return
	}
	var wg sync.WaitGroup
	if cfg.Member != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			announce(ctx, kv, cfg)
		}()
	}
	defer wg.Wait()
	t := time.NewTicker(campaignPoll)
	defer t.Stop()
	w := watch{}
	for {
		if try := w.look(ctx, kv, cfg.deferral(), cfg.Log); try != nil {
			sent := time.Now()
			rec, _ := json.Marshal(Record{Server: cfg.Name, Since: sent})
			rev, err := try(rec)
			switch {
			case err == nil:
				serve(ctx, kv, cfg, &lease{rev: rev, until: sent.Add(leaseValid)}, rec)
				if ctx.Err() != nil {
					return
				}
				// Leave the next term to another candidate: campaign again only after a lease.
				w = watch{}
				select {
				case <-ctx.Done():
					return
				case <-time.After(leaseTTL):
				}
			case errors.Is(err, jetstream.ErrKeyExists) || jserr.IsWrongLastSequence(err) || ctx.Err() != nil:
			default:
				cfg.Log.Debug("leader election: campaign", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serve is one term: it renews the lease while cfg.Lead runs, and deletes the key once Lead has
// returned if the term was given up (Resign, Lead returning while it lasted, ctx ended).
func serve(ctx context.Context, kv jetstream.KeyValue, cfg Config, l *lease, rec []byte) {
	term, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		renew(term, kv, l, rec, cfg)
	}()
	t := &Term{ctx: term, kv: kv, lease: l, resign: cancel}
	cfg.Lead(t)
	giveUp := t.resigned.Load() || term.Err() == nil || ctx.Err() != nil
	cancel()
	wg.Wait()
	if giveUp {
		release(kv, l, cfg.Log)
	}
}

// watch is a standby's view of the leader key: the revision it saw last and since when.
type watch struct {
	rev    uint64
	seen   time.Time // when rev was first seen, on this candidate's clock
	vacant time.Time // since when the key has been absent
}

// look reads the leader key and returns how to take it, or nil while the leader is alive. A
// leader is dead when its key has not changed for leaseTTL on this candidate's clock, longer
// than the leaseValid it acts after its last renewal: the key is taken over by compare-and-set
// on the revision seen, so of several standbys one wins. An absent key is created. A candidate
// that defers waits that much longer (Config.Deferral).
func (w *watch) look(ctx context.Context, kv jetstream.KeyValue, deferral time.Duration, log *slog.Logger) func([]byte) (uint64, error) {
	gctx, cancel := context.WithTimeout(ctx, electionCall)
	e, err := kv.Get(gctx, leaderKey)
	cancel()
	now := time.Now()
	switch {
	case err == nil:
		w.vacant = time.Time{}
		if e.Revision() != w.rev {
			w.rev, w.seen = e.Revision(), now
			return nil
		}
		if now.Sub(w.seen) < leaseTTL+deferral {
			return nil
		}
		rev := w.rev
		return func(rec []byte) (uint64, error) {
			uctx, cancel := context.WithTimeout(ctx, electionCall)
			defer cancel()
			return kv.Update(uctx, leaderKey, rec, rev)
		}
	case errors.Is(err, jetstream.ErrKeyNotFound):
		w.rev = 0
		if w.vacant.IsZero() {
			w.vacant = now
		}
		if now.Sub(w.vacant) < deferral {
			return nil
		}
		return func(rec []byte) (uint64, error) {
			cctx, cancel := context.WithTimeout(ctx, electionCall)
			defer cancel()
			return kv.Create(cctx, leaderKey, rec)
		}
	}
	log.Debug("leader election: leader key unreadable", "error", err)
	return nil // JetStream unavailable for now (an election in the cluster): look again
}

// open creates (or opens) the election's bucket, retrying while the cluster's JetStream is not
// ready yet (no meta leader, too few servers for the replicas): an attempt of openAttempt every
// openRetryEvery, whatever the error. It returns nil once ctx ends.
func open(ctx context.Context, js jetstream.JetStream, cfg Config) jetstream.KeyValue {
	kcfg := jetstream.KeyValueConfig{Bucket: Bucket, TTL: leaseTTL, History: 1,
		Storage: jetstream.MemoryStorage, Replicas: cfg.Replicas}
	wait := backoff.Backoff{First: openRetryEvery, Max: openRetryEvery}
	logged := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, openAttempt)
		kv, err := js.CreateOrUpdateKeyValue(cctx, kcfg)
		cancel()
		if err == nil {
			return kv
		}
		if time.Since(logged) > 5*time.Second {
			cfg.Log.Warn("waiting for the cluster's JetStream", "replicas", cfg.Replicas, "error", err)
			logged = time.Now()
		}
		if !wait.Wait(ctx) {
			return nil
		}
	}
}

// announce keeps this candidate's member key fresh until ctx ends, then deletes it.
func announce(ctx context.Context, kv jetstream.KeyValue, cfg Config) {
	key := MemberPrefix + cfg.Name
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, leaseTTL)
		_, err := kv.Put(pctx, key, cfg.Member)
		cancel()
		if err != nil && ctx.Err() == nil {
			cfg.Log.Debug("leader election: announce", "error", err)
		}
		select {
		case <-ctx.Done():
			_ = kv.Delete(context.Background(), key)
			return
		case <-t.C:
		}
	}
}

// release deletes the leader key this candidate still holds.
func release(kv jetstream.KeyValue, l *lease, log *slog.Logger) {
	rev, until := l.get()
	if time.Now().After(until) {
		return
	}
	dctx, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	if err := kv.Delete(dctx, leaderKey, jetstream.LastRevision(rev)); err != nil {
		log.Warn("leader key not released; a standby takes over when it expires", "error", err)
	}
}

// renew keeps the lease while term lasts; it returns when the key is lost (another candidate
// holds it) or a renewal did not succeed before the lease ran out.
func renew(term context.Context, kv jetstream.KeyValue, l *lease, rec []byte, cfg Config) {
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		rev, until := l.get()
		select {
		case <-term.Done():
			return
		case <-time.After(time.Until(until)):
			cfg.Log.Warn("leadership lease ran out before it was renewed", "server", cfg.Name)
			return
		case <-t.C:
		}
		sent := time.Now()
		rctx, cancel := context.WithDeadline(term, until)
		next, err := kv.Update(rctx, leaderKey, rec, rev)
		cancel()
		switch {
		case err == nil:
			l.extend(next, sent.Add(leaseValid))
		case term.Err() != nil:
			return
		case jserr.IsWrongLastSequence(err):
			cfg.Log.Warn("another broker holds the lead", "server", cfg.Name)
			return
		default:
			cfg.Log.Debug("leadership renewal failed; retrying", "error", err)
		}
	}
}

// Observer reads an election it takes no part in (`marvelo cluster`).
type Observer struct{ kv jetstream.KeyValue }

// Observe opens the election's bucket without creating it: an error wrapping
// jetstream.ErrBucketNotFound says no candidate ever campaigned there.
func Observe(ctx context.Context, js jetstream.JetStream) (*Observer, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, err
	}
	return &Observer{kv: kv}, nil
}

// Leader reads who leads: the zero Record while none does.
func (o *Observer) Leader(ctx context.Context) (Record, error) {
	var rec Record
	e, err := o.kv.Get(ctx, leaderKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return rec, nil
	case err != nil:
		return rec, err
	}
	if json.Unmarshal(e.Value(), &rec) != nil {
		return Record{}, nil
	}
	return rec, nil
}

// Members reads the announcements of the live members, by name, as Term.Members does: an
// error with a nil map means the members could not be listed; with a map, the error is that of
// the reads that failed, whose members are left out.
func (o *Observer) Members(ctx context.Context) (map[string][]byte, error) {
	return members(ctx, o.kv)
}

func members(ctx context.Context, kv jetstream.KeyValue) (map[string][]byte, error) {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	found := map[string][]byte{}
	var errs []error
	for k := range keys.Keys() {
		name, ok := strings.CutPrefix(k, MemberPrefix)
		if !ok {
			continue
		}
		e, err := kv.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			// expired between the listing and now: gone
		case err != nil:
			errs = append(errs, err)
		default:
			found[name] = e.Value()
		}
	}
	return found, errors.Join(errs...)
}
