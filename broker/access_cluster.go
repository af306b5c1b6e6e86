package broker

// Identities in a cluster of brokers (DESIGN.md §8a, §10). Each broker's embedded server
// authenticates the clients connected to it, with the identities and grants its own access
// tables hold; a worker may connect to any broker. So in a cluster every broker loads the
// identity bucket (replicated like the rest of the state) and watches it: each identity, grant
// and revocation written by the broker that handled it (enrolment) or by the leading control
// plane (grants) reaches every broker's tables, and each applies it to its server with the same
// configuration reload a broker alone uses. A write returns once every live broker has applied
// it (syncCluster), so a job is prepared only when its worker may use its subjects whichever
// server it is connected to, and a moved job's old worker has lost them everywhere first.
//
// Locks as in access.go: access.mu is never held across a network call or a reload, nor while
// waiting on the revision applied (acl.Applied, which has a lock of its own); the follower applies
// the bucket's changes with access.commit.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	acl "github.com/marvelo/marvelo/broker/access"
	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// subjAccessApplied asks every broker of a cluster to answer once it has applied the identity
// bucket up to a revision (broker to broker only).
const subjAccessApplied = "marvelo.access.applied"

// accessSyncTimeout bounds how long a write waits for the other brokers to apply it.
const accessSyncTimeout = 3 * time.Second

type accessCluster struct {
	server  string
	nc      *nats.Conn
	js      jetstream.JetStream
	loaded  atomic.Bool // the bucket is open and its entries applied
	applied acl.Applied // the bucket's revision applied to the server
}

type appliedReply struct {
	Server string `json:"server"`
	Rev    uint64 `json:"rev"`
}

// startCluster is start for a broker of a cluster: the enrolment API is served by one broker
// of the cluster at a time (a queue group), and a goroutine owned by ctx opens the replicated
// identity bucket once the cluster's JetStream is ready and applies every change of it.
// done is closed when that goroutine ends.
func (a *access) startCluster(ctx context.Context, ns *server.Server, base *server.Options, nc *nats.Conn, storage jetstream.StorageType,
	replicas int, serverName string) ([]*nats.Subscription, <-chan struct{}, error) {
	a.ns, a.base = ns, base
	if err := exportGlobal(ns); err != nil {
		return nil, nil, err
	}
	if err := a.isolateSharedWorker(); err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("broker: %w", err)
	}
	cl := &accessCluster{server: serverName, nc: nc, js: js}
	a.cl = cl
	var subs []*nats.Subscription
	for subj, h := range map[string]func(*nats.Msg) error{
		protocol.SubjIdentityAdd:    a.handleAdd,
		protocol.SubjIdentityRemove: a.handleRemove,
	} {
		sub, err := nc.QueueSubscribe(subj, "marvelo-access", func(m *nats.Msg) {
			r := protocol.Reply{OK: true}
			err := errors.New("the identities are not loaded yet: the cluster's JetStream is starting; try again")
			if cl.loaded.Load() {
				if err = h(m); err == nil {
					err = a.syncCluster()
				}
			}
			if err != nil {
				r = protocol.Reply{Error: err.Error()}
			}
			data, _ := json.Marshal(r)
			if err := m.Respond(data); err != nil {
				a.log.Warn("reply failed", "subject", m.Subject, "error", err)
			}
		})
		if err != nil {
			return nil, nil, fmt.Errorf("broker: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	sub, err := nc.Subscribe(subjAccessApplied, cl.answerApplied)
	if err != nil {
		return nil, nil, fmt.Errorf("broker: subscribe %s: %w", subjAccessApplied, err)
	}
	subs = append(subs, sub)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.follow(ctx, js, jetstream.KeyValueConfig{Bucket: kvIdentities, Storage: storage, History: 1, Replicas: replicas})
	}()
	return subs, done, nil
}

// follow opens the identity bucket (retrying while the cluster's JetStream is not ready, an
// attempt of jsAttempt every jsRetryEvery, whatever the error) and applies its entries, then
// every change, until ctx ends.
func (a *access) follow(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) {
	wait := backoff.Backoff{First: jsRetryEvery, Max: jsRetryEvery}
	var kv jetstream.KeyValue
	for kv == nil {
		cctx, cancel := context.WithTimeout(ctx, jsAttempt)
		var err error
		kv, err = openKeyValue(cctx, js, cfg)
		cancel()
		if err != nil {
			kv = nil
			a.log.Debug("identity bucket not ready", "error", err)
			if !wait.Wait(ctx) {
				return
			}
		}
	}
	a.mu.Lock()
	a.kv = kv
	a.mu.Unlock()
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			a.log.Warn("identity bucket: watch", "error", err)
			if !wait.Wait(ctx) {
				return
			}
			continue
		}
		a.applyUpdates(ctx, w)
		_ = w.Stop()
	}
}

// applyUpdates applies the watched entries: a nil entry ends the initial values. Consecutive
// entries already waiting are applied with one reload.
func (a *access) applyUpdates(ctx context.Context, w jetstream.KeyWatcher) {
	changed := false
	var rev uint64
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return
		case e, ok = <-w.Updates():
		}
		if !ok {
			return
		}
		if e != nil {
			changed = a.applyEntry(e) || changed
			rev = max(rev, e.Revision())
			if len(w.Updates()) > 0 {
				continue
			}
		}
		if changed {
			a.mu.RLock()
			gen := a.tab.Gen()
			a.mu.RUnlock()
			if err := a.commit(gen); err != nil {
				a.log.Error("identities not applied", "error", err)
				continue // applied not advanced: the writer is told this broker did not follow
			}
			changed = false
		}
		if e == nil && !a.cl.loaded.Swap(true) {
			a.mu.RLock()
			n := a.tab.Count()
			a.mu.RUnlock()
			a.log.Info("identities loaded", "count", n)
		}
		a.cl.applied.Mark(rev)
	}
}

// applyEntry puts one entry of the identity bucket in the tables; it reports whether they
// changed (the broker that wrote it has them already).
func (a *access) applyEntry(e jetstream.KeyValueEntry) bool {
	del := e.Operation() != jetstream.KeyValuePut
	a.mu.Lock()
	changed, err := a.tab.Apply(e.Key(), e.Value(), del)
	a.mu.Unlock()
	if ee := (*acl.EntryError)(nil); errors.As(err, &ee) {
		if ee.Err == nil {
			a.log.Warn("identity bucket: malformed grant key", "key", e.Key())
		} else {
			a.log.Warn("identity bucket: "+ee.Kind.String(), "key", e.Key(), "error", ee.Err)
		}
	}
	return changed
}

// answerApplied answers a request naming a revision once this broker has applied it, or when
// accessSyncTimeout has passed (the asker then sees the revision this broker is at).
func (cl *accessCluster) answerApplied(m *nats.Msg) {
	want, err := strconv.ParseUint(string(m.Data), 10, 64)
	if err != nil {
		return
	}
	rev := cl.applied.Wait(want, accessSyncTimeout)
	data, _ := json.Marshal(appliedReply{Server: cl.server, Rev: rev})
	_ = m.Respond(data)
}

// syncCluster returns once every live broker of the cluster has applied the identity bucket as
// it is now (nil for a broker alone). A broker that does not answer in time is named in the
// error.
func (a *access) syncCluster() error {
	if a == nil || a.cl == nil {
		return nil
	}
	cl := a.cl
	ctx, cancel := context.WithTimeout(context.Background(), accessSyncTimeout+time.Second)
	defer cancel()
	st, err := cl.js.Stream(ctx, protocol.KVStream(kvIdentities))
	if err != nil {
		return fmt.Errorf("broker: identities: %w", err)
	}
	want := st.CachedInfo().State.LastSeq
	members, err := liveBrokers(ctx, cl.js)
	if err != nil {
		return fmt.Errorf("broker: identities: the brokers of the cluster: %w", err)
	}
	inbox := cl.nc.NewRespInbox()
	sub, err := cl.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("broker: identities: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := cl.nc.PublishRequest(subjAccessApplied, inbox, []byte(strconv.FormatUint(want, 10))); err != nil {
		return fmt.Errorf("broker: identities: %w", err)
	}
	waiting := map[string]bool{}
	for _, m := range members {
		waiting[m] = true
	}
	for len(waiting) > 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break
		}
		var r appliedReply
		if json.Unmarshal(m.Data, &r) == nil && r.Rev >= want {
			delete(waiting, r.Server)
		}
	}
	if len(waiting) > 0 {
		var names []string
		for n := range waiting {
			names = append(names, n)
		}
		return fmt.Errorf("broker: identities: brokers %s did not apply revision %d within %v", strings.Join(names, ", "), want, accessSyncTimeout)
	}
	return nil
}

// liveBrokers names the brokers announced in the election bucket (leader.go): those alive now,
// and for up to a lease those that just stopped.
func liveBrokers(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	keys, err := bucketKeys(ctx, js, leaderBucket)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if name, ok := strings.CutPrefix(k, memberPrefix); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

// syncWarn is syncCluster for callers that can only log: the change is applied where it could
// be, and the broker that did not follow is named.
func (a *access) syncWarn(what string) {
	if err := a.syncCluster(); err != nil {
		a.log.Warn("permissions not applied on every broker", "change", what, "error", err)
	}
}
