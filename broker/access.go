package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	acl "github.com/marvelo/marvelo/broker/access"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Identities and the permissions that follow placement (DESIGN.md §12): what the broker does with
// package broker/access (acl here: the package's name is this type's). That package holds the
// identities, the permission sets, the registration claims check and the table of grants with its
// generation counter; here the broker serves the enrolment API, applies the table to its server
// (authentication, reloads, the accounts of isolation.go) and to the identity bucket, and, in a
// cluster, shares it with the other brokers (access_cluster.go).
//
// Every enrolled identity is a user of the embedded server with permissions of its own. It proves
// who it is with a secret of its own (its credentials file); the broker keeps only the secret's
// SHA-256. The secret travels as the connection's token, because the server keeps the token
// clients of a custom authenticator across a configuration reload and authenticates them again,
// while it closes nkey and user/password clients it cannot find in its own tables
// (clientHasMovedToDifferentAccount); see DESIGN.md §12. A worker identity may publish only to the
// subjects of the jobs placed on it; the control plane grants an assignment's subjects before it
// asks the worker to prepare the job and revokes them when the worker is lost or the job ends.
// A change is applied with the server's own configuration reload, which authenticates every
// client again and gives it its new permissions: checks on the data path stay the server's
// cached per-subject ones.
//
// Changes reach the server and the identity bucket in rounds (commit): a change edits the tables
// and queues its bucket writes under access.mu, then commits; one round at a time writes what is
// queued and reloads the server once, with no lock held, and every caller whose change it carries
// returns when it is done. So the jobs placed together cost one reload (grantAll), and changes
// made at once share one.
//
// Locks: access.mu alone guards the table (an acl.Table is not safe for concurrent use: its
// changes, generation and queued bucket writes move together) and the round under way; it is
// never held across a reload, a network call or a call into the server (the reload calls back into
// Check, which takes access.mu, and the server logs violations, which take it too, holding locks
// of its own). The revision a cluster's broker has applied (acl.Applied, access_cluster.go) has a
// lock of its own, never taken with access.mu held, nor the reverse.

// Roles of an identity.
const (
	RoleWorker   = acl.RoleWorker
	RoleOperator = acl.RoleOperator
	RoleReader   = acl.RoleReader
)

const kvIdentities = acl.Bucket

// Identity is one enrolled user of the broker.
type Identity = acl.Identity

type access struct {
	log *slog.Logger

	ns   *server.Server
	base *server.Options // the options the server started with; reloads differ in Users only

	mu        sync.RWMutex
	tab       *acl.Table // under mu: identities, grants, groups, violations, gen, queued bucket writes
	kv        jetstream.KeyValue
	reloading atomic.Bool    // a reload is under way (auth.go)
	reloads   atomic.Uint64  // reloads made (tests)
	cl        *accessCluster // set in a cluster of brokers (access_cluster.go), else nil
	iso       *isolation     // the accounts of the isolated identities (isolation.go)
	// sharedWorker: the broker has a shared worker token, whose clients share an account of
	// their own (isolation.go). Set before start.
	sharedWorker bool

	// Under mu: the round under way (nil: none); the gen the server has applied (the last
	// round that reloaded).
	round   *commitRound
	applied uint64
}

// commitRound is one write of the queued bucket changes and one reload, carrying every change
// up to gen.
type commitRound struct {
	gen  uint64
	done chan struct{} // closed when the round is over; err is set then
	err  error
}

func newAccess(log *slog.Logger) *access {
	return &access{log: log, tab: acl.NewTable(), iso: newIsolation()}
}

// checkIdentity authenticates a client presenting an identity's token (protocol.IdentityToken)
// and registers it with that identity's permissions now.
func (a *access) checkIdentity(c server.ClientAuthentication, name, secret string) bool {
	if !acl.ConnNameFits(name, c.GetOpts().Name) {
		return false
	}
	hash := acl.HashSecret(secret)
	for {
		a.mu.Lock()
		id, ok := a.tab.Identity(name)
		if !ok || !id.Proves(hash) {
			a.mu.Unlock()
			return false
		}
		perms, gen := a.tab.Permissions(id), a.tab.Gen()
		// Not held into the server's client lock: the server logs violations (serverLogger)
		// holding locks of its own.
		a.mu.Unlock()
		// A worker or read-only identity is in an account of its own (isolation.go), made before
		// the identity is in the tables the server reads; an operator is in the global account.
		var acc *server.Account
		if name := accountName(id); name != "" {
			if acc = a.iso.account(name); acc == nil {
				a.log.Debug("identity refused: its account is not made yet", "identity", id.Name)
				return false
			}
		}
		a.mu.Lock()
		a.tab.Connected(c.GetID(), id.Name)
		a.mu.Unlock()
		// No Username: the server would then look the client up in its own user table on the
		// next reload, find it absent (this authenticator decides) and close it.
		c.RegisterUser(&server.User{Permissions: perms, Account: acc})
		a.mu.RLock()
		current := a.tab.Gen() == gen
		a.mu.RUnlock()
		if current { // else a grant or revoke came in between: register its permissions
			return true
		}
	}
}

// WorkerPermissions are what a worker identity may do while the given assignments are placed on
// it (acl.WorkerPermissions).
func WorkerPermissions(name string, groups []string, grants []protocol.Assignment) *server.Permissions {
	return acl.WorkerPermissions(name, groups, grants)
}

// readerPermissions are what a read-only identity may do (acl.ReaderPermissions).
func readerPermissions(name string) *server.Permissions { return acl.ReaderPermissions(name) }

// start loads the enrolled identities and serves the enrolment API. Called once the server runs.
func (a *access) start(ctx context.Context, ns *server.Server, base *server.Options, nc *nats.Conn, memory bool) ([]*nats.Subscription, error) {
	a.ns, a.base = ns, base
	if err := exportGlobal(ns); err != nil {
		return nil, err
	}
	if err := a.isolateSharedWorker(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	storage := jetstream.FileStorage
	if memory {
		storage = jetstream.MemoryStorage
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: kvIdentities, Storage: storage, History: 1})
	if err != nil {
		return nil, fmt.Errorf("broker: identity bucket %s: %w", kvIdentities, err)
	}
	a.kv = kv
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("broker: list identities: %w", err)
	}
	n := 0
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			return nil, fmt.Errorf("broker: identity %s: %w", k, err)
		}
		a.mu.Lock()
		kind, err := a.tab.Load(k, e.Value())
		a.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("broker: %s %s: %w", kind, k, errors.Unwrap(err))
		}
		if kind == acl.EntryIdentity {
			n++
		}
	}
	if n > 0 {
		a.log.Info("identities loaded", "count", n)
		// Make their accounts (isolation.go): the identities log in once they exist.
		a.mu.Lock()
		gen := a.tab.Touch()
		a.mu.Unlock()
		if err := a.commit(gen); err != nil {
			return nil, fmt.Errorf("broker: identities: %w", err)
		}
	}
	var subs []*nats.Subscription
	for subj, h := range map[string]func(*nats.Msg) error{
		protocol.SubjIdentityAdd:    a.handleAdd,
		protocol.SubjIdentityRemove: a.handleRemove,
	} {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			r := protocol.Reply{OK: true}
			if err := h(m); err != nil {
				r = protocol.Reply{Error: err.Error()}
			}
			data, _ := json.Marshal(r)
			if err := m.Respond(data); err != nil {
				a.log.Warn("reply failed", "subject", m.Subject, "error", err)
			}
		})
		if err != nil {
			return nil, fmt.Errorf("broker: subscribe %s: %w", subj, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

func (a *access) handleAdd(m *nats.Msg) error {
	var id Identity
	if err := json.Unmarshal(m.Data, &id); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	if err := id.Validate(); err != nil {
		return err
	}
	a.mu.RLock()
	_, exists := a.tab.Identity(id.Name)
	kv := a.kv
	a.mu.RUnlock()
	if exists {
		return fmt.Errorf("identity %s exists already; remove it first", id.Name)
	}
	data, _ := json.Marshal(id)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Create, not Put: of two enrolments of one name at once (here or on another broker of a
	// cluster), the second is refused by the bucket.
	if _, err := kv.Create(ctx, id.Name, data); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("identity %s exists already; remove it first", id.Name)
		}
		return fmt.Errorf("identity %s: save: %w", id.Name, err)
	}
	a.mu.Lock()
	a.tab.Add(id)
	gen := a.tab.Gen()
	a.mu.Unlock()
	// Its account, and the imports the other accounts gain from it (isolation.go).
	if err := a.commit(gen); err != nil {
		return fmt.Errorf("identity %s: %w", id.Name, err)
	}
	a.log.Info("identity enrolled", "name", id.Name, "role", id.Role)
	return nil
}

func (a *access) handleRemove(m *nats.Msg) error {
	var req Identity
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	a.mu.RLock()
	kv := a.kv
	a.mu.RUnlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := kv.Delete(ctx, req.Name); err != nil {
		return fmt.Errorf("identity %s: remove: %w", req.Name, err)
	}
	a.mu.Lock()
	a.tab.Remove(req.Name)
	gen := a.tab.Gen()
	a.mu.Unlock()
	a.log.Info("identity removed", "name", req.Name)
	if err := a.commit(gen); err != nil { // disconnects its clients
		return fmt.Errorf("identity %s: remove: %w", req.Name, err)
	}
	return nil
}

// enrolled reports whether name is an enrolled worker identity: its permissions follow placement.
func (a *access) enrolled(name string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.tab.Enrolled(name)
}

// checkClaims refuses a registration that claims what its identity may not: a worker identity
// never registers as the head node's worker (local) or as a worker of every group (any) — those
// are the broker's own workers' and marvelo run's —, and only with groups its enrolment names,
// when it names any. A worker on a shared token is trusted, as that token is (DESIGN.md §10).
func (a *access) checkClaims(info protocol.WorkerInfo) error {
	if a == nil {
		return nil
	}
	a.mu.RLock()
	id, _ := a.tab.Identity(info.Name)
	a.mu.RUnlock()
	return acl.CheckClaims(id, info)
}

// Grant gives worker the subjects of an assignment; it returns once the server applies them.
// The control plane calls it before it asks the worker to prepare the job.
func (a *access) Grant(worker string, as protocol.Assignment) error {
	_, err := a.grantAll([]placedAssignment{{worker: worker, a: as}})
	return err
}

// grantAll gives each worker the subjects of the assignments placed on it, with one reload of
// the server and the bucket writes made together; it returns once the server applies them, and
// reports whether anything changed (an assignment granted already is not granted again).
// Placement calls it for all the jobs it places together, before it asks for the prepares.
func (a *access) grantAll(assigns []placedAssignment) (changed bool, err error) {
	if a == nil {
		return false, nil
	}
	a.mu.RLock()
	assigns = slices.DeleteFunc(slices.Clone(assigns), func(pa placedAssignment) bool {
		return !a.tab.Enrolled(pa.worker) // the shared worker token: nothing to grant
	})
	a.mu.RUnlock()
	if len(assigns) == 0 {
		return false, nil
	}
	placed := make([]acl.Placed, 0, len(assigns))
	for _, pa := range assigns {
		b, err := json.Marshal(pa.a)
		if err != nil {
			return false, fmt.Errorf("broker: grant %s to %s: %w", pa.a.Job.Label(), pa.worker, err)
		}
		placed = append(placed, acl.Placed{Worker: pa.worker, Assignment: pa.a, Entry: b})
	}
	a.mu.Lock()
	changed = a.tab.Grant(placed) // a worker removed meanwhile is granted nothing
	// Unchanged, the grants may still be on their way to the server in another caller's round.
	gen := a.tab.Gen()
	a.mu.Unlock()
	if err := a.commit(gen); err != nil {
		return changed, fmt.Errorf("broker: grant: %w", err)
	}
	return changed, nil
}

// GrantGroups lets worker subscribe to the subjects of its groups (and to those only); it
// returns once the server applies them. The control plane calls it when the worker registers,
// before it answers: the worker subscribes once registered.
func (a *access) GrantGroups(worker string, subjects []string) error {
	if a == nil || !a.enrolled(worker) {
		return nil
	}
	changed, err := a.grantGroups(worker, subjects)
	if err == nil && changed {
		a.syncWarn("groups of " + worker) // a cluster: the worker may subscribe on any broker
	}
	return err
}

func (a *access) grantGroups(worker string, subjects []string) (changed bool, err error) {
	subjects = slices.Clone(subjects)
	sort.Strings(subjects)
	data, err := json.Marshal(subjects)
	if err != nil {
		return false, fmt.Errorf("broker: groups of %s: %w", worker, err)
	}
	a.mu.Lock()
	if !a.tab.SetGroups(worker, subjects, data) {
		a.mu.Unlock()
		return false, nil
	}
	gen := a.tab.Gen()
	a.mu.Unlock()
	if err := a.commit(gen); err != nil {
		return true, fmt.Errorf("broker: groups of %s: %w", worker, err)
	}
	return true, nil
}

// Revoke takes from worker the subjects of one job of a pipeline, or of every job of it when job
// is 0, and of every pipeline when pipeline is "". It returns once the server applies it: from
// then on the worker can no longer publish to the job's pipes.
func (a *access) Revoke(worker, pipeline string, job int) error {
	return a.revokeWhere(worker, func(k acl.Key, _ protocol.Assignment) bool {
		return pipeline == "" || (k.Pipeline == pipeline && (job == 0 || k.Job == job))
	})
}

// revokeEnded takes from worker the subjects of an instance of a job that has ended — the grant
// of that epoch or an older one, never a newer instance's placed there since (a restart). It
// returns once the server applies it. Ended jobs are revoked on goroutines of their own
// (control.revokeEnded), so the ends of many jobs share one round (commit): a 1,000-job
// chain's end costs a few reloads, not 1,000.
func (a *access) revokeEnded(worker, pipeline string, job int, epoch uint64) error {
	return a.revokeWhere(worker, func(k acl.Key, g protocol.Assignment) bool {
		return k == acl.Key{Pipeline: pipeline, Job: job} && g.Epoch <= epoch
	})
}

// revokeWhere takes from worker the grants that match, and returns once the server applies it.
func (a *access) revokeWhere(worker string, match func(acl.Key, protocol.Assignment) bool) error {
	if a == nil || !a.enrolled(worker) {
		return nil
	}
	a.mu.Lock()
	if !a.tab.Revoke(worker, match) {
		a.mu.Unlock()
		return nil
	}
	gen := a.tab.Gen()
	a.mu.Unlock()
	if err := a.commit(gen); err != nil {
		return fmt.Errorf("broker: revoke from %s: %w", worker, err)
	}
	return nil
}

// commit returns once the server has applied the tables as they were at gen (a.tab.Gen() right
// after the caller's change), and the bucket writes queued until then are made; with the error of
// the round that carried them. A round under way may have started before the change: its caller
// waits for it, then starts the next round unless another caller did. No lock is held across the
// writes or the reload.
func (a *access) commit(gen uint64) error {
	for {
		a.mu.Lock()
		if r := a.round; r != nil {
			a.mu.Unlock()
			<-r.done
			if r.gen >= gen {
				return r.err
			}
			continue
		}
		if a.applied >= gen {
			a.mu.Unlock()
			return nil
		}
		r := &commitRound{gen: a.tab.Gen(), done: make(chan struct{})}
		ops, kv := a.tab.Take(), a.kv
		a.round = r
		users := a.usersLocked(r.gen)
		accounts := a.isolatedLocked()
		a.mu.Unlock()

		werr := acl.Write(kv, ops)
		rerr := a.reload(users, accounts)
		r.err = errors.Join(werr, rerr)
		a.mu.Lock()
		a.round = nil
		if rerr == nil {
			a.applied = max(a.applied, r.gen)
		}
		a.mu.Unlock()
		close(r.done)
		return r.err // r.gen >= gen: gen was a.tab.Gen() or less when the caller came
	}
}

// reloadMarker names a user no client can be (not a valid identity name) whose password is the
// generation of the tables: every round's reload differs from the one before, which is what makes
// the server authenticate every client again (Check, with the tables as they are then), even when
// the permissions came back to what they were (a grant and its revocation in one round, while a
// client logged in between).
const reloadMarker = "$marvelo-generation"

// usersLocked lists the identities, as the server lists its users, and the marker of gen. The
// custom authenticator decides who is who and with which permissions, so the list carries none:
// computing them for every identity at every reload would double its cost. Callers hold a.mu.
func (a *access) usersLocked(gen uint64) []*server.User {
	users := []*server.User{{Username: reloadMarker, Password: strconv.FormatUint(gen, 10), Permissions: denyAll}}
	for _, id := range a.tab.All() {
		users = append(users, &server.User{Username: id.Name, Password: id.Hash, Permissions: denyAll})
	}
	sort.Slice(users, func(i, k int) bool { return users[i].Username < users[k].Username })
	return users
}

// isolatedLocked are the accounts of the identities and of the shared worker token
// (isolation.go). Callers hold a.mu.
func (a *access) isolatedLocked() []isolated {
	return isolatedAccounts(a.tab.All(), a.sharedWorker)
}

// isolateSharedWorker makes the shared worker token's account at once, before any identity is
// loaded: its clients are refused until it exists.
func (a *access) isolateSharedWorker() error {
	if !a.sharedWorker {
		return nil
	}
	return a.iso.ensure(a.ns, []isolated{{sharedWorkerAccount, RoleWorker}})
}

// reload makes the server authenticate every client again (with the tables as they are then:
// Check reads them), with the accounts of the identities given (isolation.go): those not made yet
// are made first. Only commit calls it, one round at a time.
func (a *access) reload(users []*server.User, accounts []isolated) error {
	if a.ns == nil {
		return nil
	}
	if err := a.iso.ensure(a.ns, accounts); err != nil {
		return err
	}
	tmpl, err := templates(a.ns, accounts)
	if err != nil {
		return err
	}
	o := a.base.Clone()
	o.Accounts = tmpl
	// Ports chosen at random (-1) are the ones the server took, or the reload would refuse.
	if addr, ok := a.ns.Addr().(*net.TCPAddr); ok {
		o.Port = addr.Port
	}
	if m := a.ns.MonitorAddr(); m != nil {
		o.HTTPPort = m.Port
	}
	o.Users = users
	a.reloads.Add(1)
	a.reloading.Store(true)
	defer a.reloading.Store(false)
	if err := a.ns.ReloadOptions(o); err != nil {
		return fmt.Errorf("apply permissions: %w", err)
	}
	return nil
}

// Violations returns the permission violations counted per identity.
func (a *access) Violations() map[string]uint64 {
	if a == nil {
		return map[string]uint64{}
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.tab.Violations()
}

// The server reports a refused publish or subscription in its log, as
// `[cid] - ... Publish Violation - Subject "S"`; serverLogger turns those into the broker's
// warnings with the identity's name, and counts them (acl.ParseViolation).

type serverLogger struct{ a *access }

func (l serverLogger) Noticef(string, ...any) {}
func (l serverLogger) Debugf(string, ...any)  {}
func (l serverLogger) Tracef(string, ...any)  {}
func (l serverLogger) Warnf(format string, v ...any) {
	l.a.log.Debug("nats server", "warning", fmt.Sprintf(format, v...))
}
func (l serverLogger) Fatalf(format string, v ...any) {
	l.a.log.Error("nats server", "error", fmt.Sprintf(format, v...))
}
func (l serverLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	cid, kind, subject, ok := acl.ParseViolation(msg)
	if !ok {
		l.a.log.Debug("nats server", "error", msg)
		return
	}
	l.a.mu.Lock()
	name := l.a.tab.Violation(cid)
	l.a.mu.Unlock()
	l.a.log.Warn("permission violation refused", "identity", name, "kind", kind, "subject", subject)
}

// ---- what the control plane calls (each nil-safe: a broker without tokens has no identities) ----

// senderIs checks that a control message published on protocol.From(subject, worker) speaks for
// the worker whose subject it came on: the server lets each worker identity publish only on its own.
func senderIs(subject, worker string) error { return acl.SenderIs(subject, worker) }

// beforeRequest grants a worker the subjects of the job it is about to prepare.
func (a *access) beforeRequest(worker, verb string, req any) error {
	if a == nil || verb != protocol.VerbPrepare {
		return nil
	}
	as, ok := req.(protocol.Assignment)
	if !ok {
		return nil
	}
	// Placement granted it already (grantAll), unless the job is placed alone (a move).
	changed, err := a.grantAll([]placedAssignment{{worker: worker, a: as}})
	if err != nil {
		return fmt.Errorf("worker %s: %s: %w", worker, verb, err)
	}
	if changed {
		a.syncWarn("grant to " + worker) // a cluster: every broker's server (access_cluster.go)
	}
	return nil
}

// grantPlaced grants every job placed together before any of them is prepared: one reload for
// all (and, in a cluster, one wait for every broker to apply them).
func (a *access) grantPlaced(assigns []placedAssignment) error {
	if a == nil {
		return nil
	}
	changed, err := a.grantAll(assigns)
	if err != nil {
		return err
	}
	if changed {
		a.syncWarn(fmt.Sprintf("grants of %d jobs", len(assigns)))
	}
	return nil
}

// afterRequest takes the grant back when the worker did not take the job.
func (a *access) afterRequest(worker, verb string, req any, err error) {
	if a == nil || err == nil || verb != protocol.VerbPrepare {
		return
	}
	if as, ok := req.(protocol.Assignment); ok {
		a.revoke(worker, as.Pipeline, as.Job.ID)
	}
}

// revoke is Revoke for callers that can only log a failure.
func (a *access) revoke(worker, pipeline string, job int) {
	if a == nil {
		return
	}
	if err := a.Revoke(worker, pipeline, job); err != nil {
		a.log.Error("permissions not revoked", "worker", worker, "pipeline", pipeline, "job", job, "error", err)
	}
	a.syncWarn("revoke from " + worker) // a cluster: every broker's server (access_cluster.go)
}

// revokeEnded takes an ended instance's subjects back on a goroutine of the control plane's, so
// that the jobs ending together share a round (access.revokeEnded); a cleanup or a restart that
// follows does not wait for it.
func (c *control) revokeEnded(s protocol.JobState) {
	if c.access == nil {
		return
	}
	c.spawn("revoke an ended job", func(context.Context) {
		if err := c.access.revokeEnded(s.Worker, s.Pipeline, s.Job, s.Epoch); err != nil {
			c.log.Error("permissions not revoked", "worker", s.Worker, "pipeline", s.Pipeline, "job", s.Job, "error", err)
		}
		c.access.syncWarn("revoke from " + s.Worker) // a cluster: every broker's server
	})
}

// revokePipeline takes every grant of an ended pipeline back, from every worker.
func (a *access) revokePipeline(pipeline string) {
	if a == nil {
		return
	}
	a.mu.RLock()
	holders := a.tab.Holders(pipeline)
	a.mu.RUnlock()
	for _, w := range holders {
		a.revoke(w, pipeline, 0)
	}
}
