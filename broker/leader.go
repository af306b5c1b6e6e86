package broker

// Leader election among the brokers of a cluster (DESIGN.md §12). NATS does the election: the
// key "leader" of a replicated KV bucket. A broker leads while it holds the key: it wins it with
// a create (which succeeds only where the key is absent) or, when the key has not changed for
// leaseTTL, with an update naming the revision it saw (compare-and-set: of several standbys one
// wins); it keeps it with updates every leaseRenew naming the revision it last wrote. A leader
// stops acting leaseValid after the last renewal it sent that succeeded — before any standby,
// which waits leaseTTL from when it saw that renewal, can take the key: two control planes never
// act at once. The bucket's entries also expire after leaseTTL, so the brokers' announcements
// vanish with them.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/jserr"
	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

const (
	leaderBucket = "marvelo_leader"
	leaderKey    = "leader"
	memberPrefix = "member."
	leaseTTL     = 1600 * time.Millisecond // a key unchanged this long is a dead leader's
	leaseValid   = 1100 * time.Millisecond // a leader acts this long after a renewal it sent
	leaseRenew   = 200 * time.Millisecond
	campaignPoll = 150 * time.Millisecond
	// electionCall bounds each read and write of the election: a request lost with a dying
	// server (a KV read is answered by any replica, so it may have gone to the dead one) is
	// made again after this, not after the client's default 5 s.
	electionCall = 400 * time.Millisecond
)

// errNotLeader is what a fenced control plane's writes and orders fail with.
var errNotLeader = errors.New("broker: this broker no longer leads the control plane")

// ClusterMember is one broker of a cluster as it announces itself.
type ClusterMember struct {
	Server  string    `json:"server"`
	URL     string    `json:"url"`
	Started time.Time `json:"started"`
	Local   bool      `json:"local,omitempty"` // started with --local: runs the LOCAL worker whoever leads
}

// ClusterPeer is one NATS server holding a copy of the control plane's state.
type ClusterPeer struct {
	Server  string `json:"server"`
	Leader  bool   `json:"leader"` // leads the state stream's replication (Raft)
	Current bool   `json:"current"`
}

// ClusterView is what `marvelo cluster` shows.
type ClusterView struct {
	Leader      string          `json:"leader"` // the broker whose control plane acts
	LeaderSince time.Time       `json:"leader_since"`
	Brokers     []ClusterMember `json:"brokers"`
	Replicas    int             `json:"replicas"`
	Peers       []ClusterPeer   `json:"peers"`
}

type leaderRecord struct {
	Server string    `json:"server"`
	Since  time.Time `json:"since"`
}

// lease is one term of leadership: the revision last written and until when it may act.
type lease struct {
	mu    sync.Mutex
	rev   uint64
	until time.Time
}

func (l *lease) check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Now().After(l.until) {
		return errNotLeader
	}
	return nil
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

// fenced reports whether a control plane may still act: nil for a broker alone, or while its
// term of leadership lasts.
func (o *Options) fenced() error {
	if o.fence == nil {
		return nil
	}
	return o.fence()
}

// campaign runs until ctx ends: it announces this broker, tries to win the leader key, and runs
// the control plane during each term it wins.
func (b *Broker) campaign(ctx context.Context) {
	js, err := jetstream.New(b.nc)
	if err != nil {
		b.log.Error("leader election", "error", err)
		return
	}
	kv := b.openLeaderBucket(ctx, js)
	if kv == nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.announce(ctx, kv)
	}()
	defer wg.Wait()
	t := time.NewTicker(campaignPoll)
	defer t.Stop()
	w := watch{}
	for {
		if try := w.look(ctx, kv, b.deferral(), b.log); try != nil {
			sent := time.Now()
			rec, _ := json.Marshal(leaderRecord{Server: b.serverName(), Since: sent})
			rev, err := try(rec)
			switch {
			case err == nil:
				b.log.Info("won the leader election", "server", b.serverName(), "jetstream_meta_leader", b.ns != nil && b.ns.JetStreamIsLeader())
				b.lead(ctx, js, kv, &lease{rev: rev, until: sent.Add(leaseValid)}, rec)
				if ctx.Err() != nil {
					return
				}
				// Leave the next term to another broker: campaign again only after a lease.
				w = watch{}
				select {
				case <-ctx.Done():
					return
				case <-time.After(leaseTTL):
				}
			case errors.Is(err, jetstream.ErrKeyExists) || jserr.IsWrongLastSequence(err) || ctx.Err() != nil:
			default:
				b.log.Debug("leader election: campaign", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watch is a standby's view of the leader key: the revision it saw last and since when.
type watch struct {
	rev    uint64
	seen   time.Time // when rev was first seen, on this broker's clock
	vacant time.Time // since when the key has been absent
}

// look reads the leader key and returns how to take it, or nil while the leader is alive. A
// leader is dead when its key has not changed for leaseTTL on this broker's clock, longer than
// the leaseValid it acts after its last renewal: the key is taken over by compare-and-set on
// the revision seen, so of several standbys one wins. An absent key is created. A broker that
// defers waits that much longer (deferral).
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

// deferral is how long this broker waits, once it sees no leader, before it campaigns: the
// broker that runs the LOCAL worker whoever leads (--local) waits longest, so that the leader's
// death does not also take the LOCAL jobs; the broker whose server is the JetStream meta leader
// waits too, so that the leader's death does not also stall JetStream for a meta election.
// Others campaign at once.
func (b *Broker) deferral() time.Duration {
	switch {
	case b.opts.PinnedLocal:
		return 3 * time.Second
	case b.ns != nil && b.ns.JetStreamIsLeader():
		return 300 * time.Millisecond
	}
	return 0
}

// openLeaderBucket creates (or opens) the election bucket, retrying while the cluster's
// JetStream is not ready yet (no meta leader, too few servers for the replicas): an attempt of
// jsAttempt every jsRetryEvery, whatever the error.
func (b *Broker) openLeaderBucket(ctx context.Context, js jetstream.JetStream) jetstream.KeyValue {
	cfg := jetstream.KeyValueConfig{Bucket: leaderBucket, TTL: leaseTTL, History: 1,
		Storage: jetstream.MemoryStorage, Replicas: b.opts.Replicas}
	wait := backoff.Backoff{First: jsRetryEvery, Max: jsRetryEvery}
	logged := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, jsAttempt)
		kv, err := js.CreateOrUpdateKeyValue(cctx, cfg)
		cancel()
		if err == nil {
			return kv
		}
		if time.Since(logged) > 5*time.Second {
			b.log.Warn("waiting for the cluster's JetStream", "replicas", b.opts.Replicas, "error", err)
			logged = time.Now()
		}
		if !wait.Wait(ctx) {
			return nil
		}
	}
}

// announce keeps this broker's member key fresh, so `marvelo cluster` lists the live brokers.
func (b *Broker) announce(ctx context.Context, kv jetstream.KeyValue) {
	rec, _ := json.Marshal(ClusterMember{Server: b.serverName(), URL: b.ClientURL(), Started: time.Now(), Local: b.opts.PinnedLocal})
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, leaseTTL)
		_, err := kv.Put(pctx, memberPrefix+b.serverName(), rec)
		cancel()
		if err != nil && ctx.Err() == nil {
			b.log.Debug("leader election: announce", "error", err)
		}
		select {
		case <-ctx.Done():
			_ = kv.Delete(context.Background(), memberPrefix+b.serverName())
			return
		case <-t.C:
		}
	}
}

// lead is one term: it runs the control plane until the lease is lost or ctx ends, and on a
// shutdown gives the key up so a standby takes over at once.
func (b *Broker) lead(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, l *lease, rec []byte) {
	term, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer cancel()
		b.renew(term, kv, l, rec)
	}()
	defer wg.Wait()
	opts := b.opts
	opts.fence = func() error {
		if term.Err() != nil {
			return errNotLeader
		}
		return l.check()
	}
	ctl, err := newControl(term, b.nc, opts, b.log)
	if err != nil {
		b.log.Error("control plane did not start; giving up the lead", "error", err)
		cancel()
		wg.Wait()
		b.release(kv, l)
		return
	}
	b.log.Info("leading the control plane", "server", b.serverName())
	ctl.takeover(b.serverName())
	if b.ns != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.keepRaftLeadersAway(term, kv)
		}()
	}
	select {
	case <-b.terms: // a term nobody took up has ended
	default:
	}
	b.terms <- term
	ctl.run(term)
	if ctx.Err() != nil {
		b.log.Info("control plane stopped; giving up the lead", "server", b.serverName())
		wg.Wait()
		b.release(kv, l)
		return
	}
	b.log.Warn("leadership lost: control plane stopped", "server", b.serverName())
}

// keepRaftLeadersAway gathers the Raft leaders of every stream and consumer (the pipes, the
// state buckets) on one server other than this broker's, the data server (dataServer), every
// second of the term. The leader's death then costs the data path no Raft election (4–9 s in
// nats-server): its copies were followers; and so does the death of any server but the data
// server, instead of every server that happened to lead a group. Only a group whose copies are
// all online and current is moved: a stepdown while a server is away (one just died) would
// only stall the group's pipes once more. The server is in this process: its details are read
// directly; the stepdowns naming the preferred server go through the JetStream API.
func (b *Broker) keepRaftLeadersAway(term context.Context, kv jetstream.KeyValue) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	data := ""
	for {
		select {
		case <-term.Done():
			return
		case <-t.C:
		}
		if d, err := b.dataServer(term, kv); err == nil {
			data = d
		} else if term.Err() == nil {
			b.log.Debug("raft leaders: brokers not read; keeping the data server", "data_server", data, "error", err)
		}
		b.moveRaftLeaders(term, data)
	}
}

// dataServer is the server that leads the Raft groups while this broker leads the control
// plane: the broker started with --local if another is (its death costs the LOCAL jobs' move
// anyway), else the first by name of the other live brokers; "" when there is none.
func (b *Broker) dataServer(ctx context.Context, kv jetstream.KeyValue) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, electionCall)
	defer cancel()
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return "", err
	}
	var members []ClusterMember
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, memberPrefix) || k == memberPrefix+b.serverName() {
			continue
		}
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // expired between the listing and now: gone
		}
		if err != nil {
			return "", err
		}
		var m ClusterMember
		if json.Unmarshal(e.Value(), &m) == nil {
			members = append(members, m)
		}
	}
	return pickDataServer(members), nil
}

// pickDataServer chooses the data server among the other brokers (see dataServer).
func pickDataServer(others []ClusterMember) string {
	best := ""
	bestLocal := false
	for _, m := range others {
		if best == "" || (m.Local && !bestLocal) || (m.Local == bestLocal && m.Server < best) {
			best, bestLocal = m.Server, m.Local
		}
	}
	return best
}

// moveRaftLeaders has every group led elsewhere than on the data server hand its lead to it;
// with no data server, only the groups this server leads step down, to any other copy. This
// server's details name every group's leader, but only a group's leader knows whether its
// copies are current: a group to move is asked for its info (answered by its leader) first.
func (b *Broker) moveRaftLeaders(term context.Context, data string) {
	// Consumer: true, or the details list no consumers and their Raft leaders stay here.
	jsz, err := b.ns.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		b.log.Debug("jetstream details", "error", err)
		return
	}
	away := func(ci *server.ClusterInfo) bool {
		return ci != nil && ci.Leader != "" && ci.Leader != data && len(ci.Replicas) > 0 &&
			(data != "" || ci.Leader == b.serverName())
	}
	n := 0
	for _, acc := range jsz.AccountDetails {
		for _, st := range acc.Streams {
			if term.Err() != nil {
				return
			}
			if away(st.Cluster) && b.movable(term, protocol.JSStreamInfo(st.Name), &server.JSApiStreamInfoResponse{}, data) {
				n++
				b.stepDown(term, protocol.JSStreamLeaderStepDown(st.Name), data, "stream", st.Name)
			}
			for _, ci := range st.Consumer {
				if ci != nil && away(ci.Cluster) && b.movable(term, protocol.JSConsumerInfo(st.Name, ci.Name), &server.JSApiConsumerInfoResponse{}, data) {
					n++
					b.stepDown(term, protocol.JSConsumerLeaderStepDown(st.Name, ci.Name), data, "stream", st.Name, "consumer", ci.Name)
				}
			}
		}
	}
	if n > 0 {
		b.log.Debug("moved raft leaders", "n", n, "to", data)
	}
}

// movable asks a group's leader for its info (subject) and reports whether every copy is online
// and current and, with a data server, whether it holds a copy.
func (b *Broker) movable(ctx context.Context, subject string, resp any, data string) bool {
	rctx, cancel := context.WithTimeout(ctx, electionCall)
	defer cancel()
	m, err := b.nc.RequestWithContext(rctx, subject, nil)
	if err != nil || json.Unmarshal(m.Data, resp) != nil {
		return false
	}
	var ci *server.ClusterInfo
	switch r := resp.(type) {
	case *server.JSApiStreamInfoResponse:
		if r.StreamInfo != nil {
			ci = r.StreamInfo.Cluster
		}
	case *server.JSApiConsumerInfoResponse:
		if r.ConsumerInfo != nil {
			ci = r.ConsumerInfo.Cluster
		}
	}
	if ci == nil || ci.Leader == "" || ci.Leader == data || len(ci.Replicas) == 0 {
		return false
	}
	holds := data == ""
	for _, r := range ci.Replicas {
		if r.Offline || !r.Current {
			return false
		}
		holds = holds || r.Name == data
	}
	return holds
}

// stepDown asks a stream's or consumer's Raft leader to hand its lead to the server preferred
// ("": any other copy).
func (b *Broker) stepDown(ctx context.Context, subject, preferred string, what ...any) {
	req := []byte("{}")
	if preferred != "" {
		req, _ = json.Marshal(server.JSApiLeaderStepdownRequest{Placement: &server.Placement{Preferred: preferred}})
	}
	rctx, cancel := context.WithTimeout(ctx, electionCall)
	defer cancel()
	m, err := b.nc.RequestWithContext(rctx, subject, req)
	if err == nil {
		var resp server.ApiResponse
		if err = json.Unmarshal(m.Data, &resp); err == nil && resp.Error != nil {
			err = resp.Error
		}
	}
	if err != nil && ctx.Err() == nil {
		b.log.Debug("raft leader stepdown", append(what, "to", preferred, "error", err)...)
	}
}

// release deletes the leader key this broker still holds.
func (b *Broker) release(kv jetstream.KeyValue, l *lease) {
	rev, until := l.get()
	if time.Now().After(until) {
		return
	}
	dctx, cancel := context.WithDeadline(context.Background(), until)
	defer cancel()
	if err := kv.Delete(dctx, leaderKey, jetstream.LastRevision(rev)); err != nil {
		b.log.Warn("leader key not released; a standby takes over when it expires", "error", err)
	}
}

// renew keeps the lease while term lasts; it returns when the key is lost (another broker holds
// it) or a renewal did not succeed before the lease ran out.
func (b *Broker) renew(term context.Context, kv jetstream.KeyValue, l *lease, rec []byte) {
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		rev, until := l.get()
		select {
		case <-term.Done():
			return
		case <-time.After(time.Until(until)):
			b.log.Warn("leadership lease ran out before it was renewed", "server", b.serverName())
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
			b.log.Warn("another broker holds the lead", "server", b.serverName())
			return
		default:
			b.log.Debug("leadership renewal failed; retrying", "error", err)
		}
	}
}

// takeoverGrace is how long after a takeover the workers of the saved state keep their jobs
// without a heartbeat: a worker that lost its server reconnects and registers again first, with
// retries that back off to 5 s while no control plane answers, before it heartbeats again.
const takeoverGrace = 5 * time.Second

// takeover records, in every pipeline still going, that this broker's control plane now acts,
// and gives the workers of the saved state the grace to speak again.
func (c *control) takeover(server string) {
	c.mu.Lock()
	for _, w := range c.workers {
		if !w.confirmed {
			w.lastSeen = time.Now().Add(takeoverGrace)
		}
	}
	var names []string
	for name, p := range c.pipelines {
		if !p.state.terminal() {
			names = append(names, name)
		}
	}
	c.mu.Unlock()
	sort.Strings(names)
	for _, name := range names {
		c.event(name, 0, "takeover", fmt.Sprintf("broker %s took over the control plane", server))
	}
	// Deliveries in flight through the dead leader's server are lost; their workers' inputs
	// hold the later blocks until they come again. Hurry them now for every recovered job, not
	// when each worker registers again (seconds later, its retries backing off meanwhile).
	c.resumeRecovered("")
}

// WhileLeader runs fn during each term in which this broker leads the control plane, with a
// context that ends with the term, until ctx ends. A broker alone leads as long as it runs.
func (b *Broker) WhileLeader(ctx context.Context, fn func(context.Context) error) error {
	if !b.elects() {
		return fn(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case term := <-b.terms:
			tctx, cancel := context.WithCancel(term)
			stop := context.AfterFunc(ctx, cancel)
			err := fn(tctx)
			stop()
			cancel()
			if err != nil && tctx.Err() == nil {
				return err
			}
		}
	}
}

// ReadCluster returns the brokers of the cluster behind nc, the one leading, and the NATS
// servers holding the replicated state.
func ReadCluster(ctx context.Context, nc *nats.Conn) (ClusterView, error) {
	var v ClusterView
	js, err := jetstream.New(nc)
	if err != nil {
		return v, err
	}
	kv, err := js.KeyValue(ctx, leaderBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return v, errors.New("this broker runs alone: no cluster")
	}
	if err != nil {
		return v, fmt.Errorf("cluster: %w", err)
	}
	if e, err := kv.Get(ctx, leaderKey); err == nil {
		var rec leaderRecord
		if err := json.Unmarshal(e.Value(), &rec); err == nil {
			v.Leader, v.LeaderSince = rec.Server, rec.Since
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return v, fmt.Errorf("cluster: leader: %w", err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return v, fmt.Errorf("cluster: brokers: %w", err)
	}
	for k := range keys.Keys() {
		if !strings.HasPrefix(k, memberPrefix) {
			continue
		}
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired between the listing and now: gone
		}
		var m ClusterMember
		if json.Unmarshal(e.Value(), &m) == nil {
			v.Brokers = append(v.Brokers, m)
		}
	}
	sort.Slice(v.Brokers, func(i, k int) bool { return v.Brokers[i].Server < v.Brokers[k].Server })
	st, err := js.Stream(ctx, protocol.KVStream(kvPipelines))
	if err != nil {
		return v, fmt.Errorf("cluster: state stream: %w", err)
	}
	info := st.CachedInfo()
	v.Replicas = info.Config.Replicas
	if ci := info.Cluster; ci != nil {
		if ci.Leader != "" {
			v.Peers = append(v.Peers, ClusterPeer{Server: ci.Leader, Leader: true, Current: true})
		}
		for _, r := range ci.Replicas {
			v.Peers = append(v.Peers, ClusterPeer{Server: r.Name, Current: r.Current && !r.Offline})
		}
	}
	sort.Slice(v.Peers, func(i, k int) bool { return v.Peers[i].Server < v.Peers[k].Server })
	return v, nil
}
