package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Identities and the permissions that follow placement (DESIGN.md §12).
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
// Locks: access.mu alone guards the tables, the queue and the round under way; it is never held
// across a reload, a network call or a call into the server (the reload calls back into Check,
// which takes access.mu, and the server logs violations, which take it too, holding locks of its
// own). accessCluster.mu (access_cluster.go) is never taken with access.mu held, nor the reverse.

// Roles of an identity.
const (
	RoleWorker   = "worker"
	RoleOperator = "operator"
	RoleReader   = "reader"
)

const kvIdentities = "marvelo_identities"

// Identity is one enrolled user of the broker.
type Identity struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Hash string `json:"hash"` // hex SHA-256 of the identity's secret
	// Groups, when set at enrolment, are the only groups a worker identity may register with.
	Groups []string `json:"groups,omitempty"`
}

type grantKey struct {
	pipeline string
	job      int
}

type access struct {
	log *slog.Logger

	ns   *server.Server
	base *server.Options // the options the server started with; reloads differ in Users only

	mu         sync.RWMutex
	byName     map[string]Identity // name → identity
	grants     map[string]map[grantKey]protocol.Assignment
	groups     map[string][]string // worker → the subjects of its groups (placement by offer)
	clients    map[uint64]string   // NATS client id → identity name, for violations
	violations map[string]uint64   // identity name → permission violations
	kv         jetstream.KeyValue
	reloading  atomic.Bool    // a reload is under way (auth.go)
	reloads    atomic.Uint64  // reloads made (tests)
	gen        uint64         // counts changes of the tables (under mu)
	cl         *accessCluster // set in a cluster of brokers (access_cluster.go), else nil
	iso        *isolation     // the accounts of the isolated identities (isolation.go)
	// sharedWorker: the broker has a shared worker token, whose clients share an account of
	// their own (isolation.go). Set before start.
	sharedWorker bool

	// Under mu: the bucket writes queued by changes not yet committed, in order; the round
	// under way (nil: none); the gen the server has applied (the last round that reloaded).
	queued  []kvOp
	round   *commitRound
	applied uint64
}

// kvOp is a write of the identity bucket queued by a change of the tables: a put, or a delete
// (value nil).
type kvOp struct {
	key   string
	value []byte
}

// commitRound is one write of the queued bucket changes and one reload, carrying every change
// up to gen.
type commitRound struct {
	gen  uint64
	done chan struct{} // closed when the round is over; err is set then
	err  error
}

func newAccess(log *slog.Logger) *access {
	return &access{log: log, byName: map[string]Identity{}, grants: map[string]map[grantKey]protocol.Assignment{},
		groups:  map[string][]string{},
		clients: map[uint64]string{}, violations: map[string]uint64{}, iso: newIsolation()}
}

// checkIdentity authenticates a client presenting an identity's token (protocol.IdentityToken)
// and registers it with that identity's permissions now.
func (a *access) checkIdentity(c server.ClientAuthentication, name, secret string) bool {
	if !connNameFits(name, c.GetOpts().Name) {
		return false
	}
	sum := sha256.Sum256([]byte(secret))
	for {
		a.mu.Lock()
		id, ok := a.byName[name]
		if !ok || subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(id.Hash)) != 1 {
			a.mu.Unlock()
			return false
		}
		perms, gen := a.permissionsLocked(id), a.gen
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
		a.clients[c.GetID()] = id.Name
		a.mu.Unlock()
		// No Username: the server would then look the client up in its own user table on the
		// next reload, find it absent (this authenticator decides) and close it.
		c.RegisterUser(&server.User{Permissions: perms, Account: acc})
		a.mu.RLock()
		current := a.gen == gen
		a.mu.RUnlock()
		if current { // else a grant or revoke came in between: register its permissions
			return true
		}
	}
}

// connNameFits reports whether an identity's connection may carry a client name: a worker
// connection's name (protocol.WorkerConnName) only its own, for the broker maps the server's
// event of that connection's close to the worker it names (disconnect.go).
func connNameFits(identity, connName string) bool {
	w, ok := protocol.WorkerOfConnName(connName)
	return !ok || w == identity
}

// permissionsLocked returns the permissions of an identity now. Callers hold a.mu.
func (a *access) permissionsLocked(id Identity) *server.Permissions {
	switch id.Role {
	case RoleOperator:
		return nil
	case RoleReader:
		return readerPermissions(id.Name)
	}
	var grants []protocol.Assignment
	for _, g := range a.grants[id.Name] {
		grants = append(grants, g)
	}
	return WorkerPermissions(id.Name, a.groups[id.Name], grants)
}

// WorkerPermissions are what a worker identity may do while the given assignments are placed on
// it: its own control subjects always, the subjects of the groups it registered with (groups:
// protocol.WorkerInfo.GroupSubjects, to hear offers and announcements), the subjects of its jobs'
// pipes, logs and checkpoints while they run there, and no JetStream API that creates, changes,
// deletes or purges.
func WorkerPermissions(name string, groups []string, grants []protocol.Assignment) *server.Permissions {
	pub := []string{
		protocol.From(protocol.SubjRegister, name), protocol.From(protocol.SubjDeregister, name),
		protocol.From(protocol.SubjJobState, name), protocol.From(protocol.SubjHeartbeatPrefix, name),
		protocol.From(protocol.SubjLeave, name), // lifecycle (issue 11): drained on SIGTERM
		protocol.JSAPIInfo, protocol.AllUnder(protocol.BrokerInboxPrefix),
		protocol.JSStreamInfo(protocol.KVStream(protocol.CheckpointBucket)),
		// Dependencies: the object store's metadata and chunks, read by direct gets only (no
		// consumer: its deliver subject could name any subject of the global account).
		protocol.JSStreamInfo(protocol.ObjectStream(protocol.DepsBucket)),
		protocol.JSDirectGet(protocol.ObjectStream(protocol.DepsBucket)),
		protocol.AllUnder(protocol.JSDirectGet(protocol.ObjectStream(protocol.DepsBucket))),
	}
	sub := []string{
		protocol.WorkerSubject(name, ">"), protocol.AllUnder(protocol.InboxPrefix(name)),
	}
	sub = append(sub, groups...)
	for _, g := range grants {
		pub = append(pub, protocol.LogSubject(g.Pipeline, g.Job.ID))
		key := protocol.CheckpointKey(g.Pipeline, g.Job.ID)
		pub = append(pub, protocol.KVKeySubject(protocol.CheckpointBucket, key),
			protocol.JSDirectGetLast(protocol.KVStream(protocol.CheckpointBucket), protocol.KVKeySubject(protocol.CheckpointBucket, key)))
		sub = append(sub, protocol.StdinSubject(g.Pipeline, g.Job.ID))
		for _, o := range g.Outputs {
			pub = append(pub, o.Subject)
			if o.Realtime {
				continue
			}
			pub = append(pub, protocol.JSStreamInfo(o.Stream), protocol.JSStreamMsgGet(o.Stream),
				protocol.JSDirectGet(o.Stream), protocol.AllUnder(protocol.JSDirectGet(o.Stream)))
		}
		for _, in := range g.Inputs {
			if in.Realtime {
				sub = append(sub, in.Subject, protocol.RealtimeRelaySubject(in.Subject))
				continue
			}
			pub = append(pub, protocol.JSStreamInfo(in.Stream),
				protocol.JSStreamMsgGet(in.Stream), // a delivery lost in transit, read from the stream (worker/input.go)
				protocol.JSConsumerInfo(in.Stream, in.Consumer),
				protocol.JSMsgNext(in.Stream, in.Consumer),
				protocol.JSAcks(in.Stream, in.Consumer))
		}
	}
	sort.Strings(pub)
	sort.Strings(sub)
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: dedup(pub)},
		Subscribe: &server.SubjectPermission{Allow: dedup(sub)},
		// No Response permission for the answers to the broker's requests: the server forgets
		// the requests it let through whenever it applies new permissions, so an answer in flight
		// across a grant would be refused. They go to BrokerInboxPrefix instead.
	}
}

// readerPermissions: status, workers, logs and top, nothing that changes anything. The log
// stream is read by direct gets: no consumer, whose deliver subject could name any subject.
func readerPermissions(name string) *server.Permissions {
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			protocol.SubjStatus, protocol.SubjWorkers, protocol.JSAPIInfo,
			protocol.LogStreamInfoSubject,
			protocol.LogDirectGetSubject,
			protocol.AllUnder(protocol.LogDirectGetSubject),
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			protocol.AllUnder(protocol.InboxPrefix(name)), protocol.From(protocol.SubjHeartbeatPrefix, "*"), protocol.EventSubject("*"),
			protocol.LogSubjects, // woken by live lines when following (broker/client/logs.go)
		}},
	}
}

func dedup(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

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
		if worker, ok := strings.CutPrefix(k, groupsKVPrefix); ok {
			var subjects []string
			if err := json.Unmarshal(e.Value(), &subjects); err != nil {
				return nil, fmt.Errorf("broker: groups %s: %w", k, err)
			}
			a.mu.Lock()
			a.groups[worker] = subjects
			a.mu.Unlock()
			continue
		}
		if worker, ok := grantWorker(k); ok {
			var as protocol.Assignment
			if err := json.Unmarshal(e.Value(), &as); err != nil {
				return nil, fmt.Errorf("broker: grant %s: %w", k, err)
			}
			a.mu.Lock()
			if a.grants[worker] == nil {
				a.grants[worker] = map[grantKey]protocol.Assignment{}
			}
			a.grants[worker][grantKey{as.Pipeline, as.Job.ID}] = as
			a.mu.Unlock()
			continue
		}
		var id Identity
		if err := json.Unmarshal(e.Value(), &id); err != nil {
			return nil, fmt.Errorf("broker: identity %s: %w", k, err)
		}
		a.mu.Lock()
		a.byName[id.Name] = id
		a.mu.Unlock()
		n++
	}
	if n > 0 {
		a.log.Info("identities loaded", "count", n)
		// Make their accounts (isolation.go): the identities log in once they exist.
		a.mu.Lock()
		a.gen++
		gen := a.gen
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
	if err := protocol.CheckName("identity", id.Name); err != nil {
		return err
	}
	switch id.Role {
	case RoleWorker, RoleOperator, RoleReader:
	default:
		return fmt.Errorf("identity %s: unknown role %q (worker, operator or reader)", id.Name, id.Role)
	}
	if len(id.Hash) != 2*sha256.Size {
		return fmt.Errorf("identity %s: the secret's hash is not a hex SHA-256", id.Name)
	}
	if len(id.Groups) > 0 && id.Role != RoleWorker {
		return fmt.Errorf("identity %s: only a worker is enrolled with groups", id.Name)
	}
	for _, g := range id.Groups {
		if err := protocol.CheckName("group", g); err != nil {
			return fmt.Errorf("identity %s: %w", id.Name, err)
		}
	}
	a.mu.RLock()
	_, exists := a.byName[id.Name]
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
	a.byName[id.Name] = id
	a.gen++
	gen := a.gen
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
	delete(a.byName, req.Name)
	delete(a.grants, req.Name)
	delete(a.groups, req.Name)
	a.gen++
	gen := a.gen
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
	return a.byName[name].Role == RoleWorker
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
	id, ok := a.byName[info.Name]
	a.mu.RUnlock()
	if !ok || id.Role != RoleWorker {
		return nil
	}
	switch {
	case info.Local:
		return fmt.Errorf("register %s: worker identity %s may not register as the head node's worker (local): refused", info.Name, id.Name)
	case info.Any:
		return fmt.Errorf("register %s: worker identity %s may not register as a worker of every group (any): refused", info.Name, id.Name)
	}
	if len(id.Groups) == 0 {
		return nil
	}
	for _, g := range info.Groups {
		if !slices.Contains(id.Groups, g) {
			return fmt.Errorf("register %s: worker identity %s is enrolled for groups %s, not %s: refused",
				info.Name, id.Name, strings.Join(id.Groups, ","), g)
		}
	}
	return nil
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
		return a.byName[pa.worker].Role != RoleWorker // the shared worker token: nothing to grant
	})
	a.mu.RUnlock()
	if len(assigns) == 0 {
		return false, nil
	}
	var data [][]byte
	for _, pa := range assigns {
		b, err := json.Marshal(pa.a)
		if err != nil {
			return false, fmt.Errorf("broker: grant %s to %s: %w", pa.a.Job.Label(), pa.worker, err)
		}
		data = append(data, b)
	}
	a.mu.Lock()
	for i, pa := range assigns {
		if a.byName[pa.worker].Role != RoleWorker {
			continue // removed meanwhile
		}
		g := a.grants[pa.worker]
		if g == nil {
			g = map[grantKey]protocol.Assignment{}
			a.grants[pa.worker] = g
		}
		k := grantKey{pa.a.Pipeline, pa.a.Job.ID}
		if old, ok := g[k]; ok && reflect.DeepEqual(old, pa.a) {
			continue
		}
		g[k] = pa.a
		a.queued = append(a.queued, kvOp{key: grantKVKey(pa.worker, k.pipeline, k.job), value: data[i]})
		changed = true
	}
	if changed {
		a.gen++
	}
	// Unchanged, the grants may still be on their way to the server in another caller's round.
	gen := a.gen
	a.mu.Unlock()
	if err := a.commit(gen); err != nil {
		return changed, fmt.Errorf("broker: grant: %w", err)
	}
	return changed, nil
}

// groupsKVPrefix keys a worker's group subjects beside the identities ("groups.WORKER"), so a
// broker restarted with its store lets the workers keep hearing their groups' offers.
const groupsKVPrefix = "groups."

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
	if slices.Equal(a.groups[worker], subjects) {
		a.mu.Unlock()
		return false, nil
	}
	a.groups[worker] = subjects
	a.queued = append(a.queued, kvOp{key: groupsKVPrefix + worker, value: data})
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	if err := a.commit(gen); err != nil {
		return true, fmt.Errorf("broker: groups of %s: %w", worker, err)
	}
	return true, nil
}

// Grants are kept beside the identities, so that a broker restarted with its store gives the
// workers back the subjects of the jobs they still run: "grant.WORKER.PIPELINE.JOB".
func grantKVKey(worker, pipeline string, job int) string {
	return "grant." + worker + "." + pipeline + "." + strconv.Itoa(job)
}

func grantWorker(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "grant.")
	if !ok {
		return "", false
	}
	w, _, ok := strings.Cut(rest, ".")
	return w, ok
}

// Revoke takes from worker the subjects of one job of a pipeline, or of every job of it when job
// is 0, and of every pipeline when pipeline is "". It returns once the server applies it: from
// then on the worker can no longer publish to the job's pipes.
func (a *access) Revoke(worker, pipeline string, job int) error {
	return a.revokeWhere(worker, func(k grantKey, _ protocol.Assignment) bool {
		return pipeline == "" || (k.pipeline == pipeline && (job == 0 || k.job == job))
	})
}

// revokeEnded takes from worker the subjects of an instance of a job that has ended — the grant
// of that epoch or an older one, never a newer instance's placed there since (a restart). It
// returns once the server applies it. Ended jobs are revoked on goroutines of their own
// (control.revokeEnded), so the ends of many jobs share one round (commit): a 1,000-job
// chain's end costs a few reloads, not 1,000.
func (a *access) revokeEnded(worker, pipeline string, job int, epoch uint64) error {
	return a.revokeWhere(worker, func(k grantKey, g protocol.Assignment) bool {
		return k == grantKey{pipeline, job} && g.Epoch <= epoch
	})
}

// revokeWhere takes from worker the grants that match, and returns once the server applies it.
func (a *access) revokeWhere(worker string, match func(grantKey, protocol.Assignment) bool) error {
	if a == nil || !a.enrolled(worker) {
		return nil
	}
	a.mu.Lock()
	gone := 0
	for k, g := range a.grants[worker] {
		if match(k, g) {
			delete(a.grants[worker], k)
			a.queued = append(a.queued, kvOp{key: grantKVKey(worker, k.pipeline, k.job)})
			gone++
		}
	}
	if gone == 0 {
		a.mu.Unlock()
		return nil
	}
	a.gen++
	gen := a.gen
	a.mu.Unlock()
	if err := a.commit(gen); err != nil {
		return fmt.Errorf("broker: revoke from %s: %w", worker, err)
	}
	return nil
}

// commit returns once the server has applied the tables as they were at gen (a.gen right after
// the caller's change), and the bucket writes queued until then are made; with the error of the
// round that carried them. A round under way may have started before the change: its caller
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
		r := &commitRound{gen: a.gen, done: make(chan struct{})}
		ops, kv := a.queued, a.kv
		a.queued = nil
		a.round = r
		users := a.usersLocked(r.gen)
		accounts := a.isolatedLocked()
		a.mu.Unlock()

		werr := writeOps(kv, ops)
		rerr := a.reload(users, accounts)
		r.err = errors.Join(werr, rerr)
		a.mu.Lock()
		a.round = nil
		if rerr == nil {
			a.applied = max(a.applied, r.gen)
		}
		a.mu.Unlock()
		close(r.done)
		return r.err // r.gen >= gen: gen was a.gen or less when the caller came
	}
}

// writeOpsParallel bounds the bucket writes of one round in flight at once.
const writeOpsParallel = 32

// writeOps makes the queued bucket writes: the last of each key only (the queue is in the order
// of the changes, and rounds never overlap, so a key's writes land in that order), the keys at
// once.
func writeOps(kv jetstream.KeyValue, ops []kvOp) error {
	if kv == nil || len(ops) == 0 {
		return nil // no bucket yet (a cluster's JetStream is starting): the tables carry it
	}
	last := map[string]int{}
	for i, op := range ops {
		last[op.key] = i
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sem := make(chan struct{}, writeOpsParallel)
	errs := make([]error, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		if last[op.key] != i {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			if op.value == nil {
				err = kv.Delete(ctx, op.key)
			} else {
				_, err = kv.Put(ctx, op.key, op.value)
			}
			if err != nil {
				errs[i] = fmt.Errorf("identity bucket: %s: %w", op.key, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
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
	for _, id := range a.byName {
		users = append(users, &server.User{Username: id.Name, Password: id.Hash, Permissions: denyAll})
	}
	sort.Slice(users, func(i, k int) bool { return users[i].Username < users[k].Username })
	return users
}

// isolatedLocked are the accounts of the identities and of the shared worker token
// (isolation.go). Callers hold a.mu.
func (a *access) isolatedLocked() []isolated {
	ids := make([]Identity, 0, len(a.byName))
	for _, id := range a.byName {
		ids = append(ids, id)
	}
	return isolatedAccounts(ids, a.sharedWorker)
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
	out := map[string]uint64{}
	if a == nil {
		return out
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	for k, v := range a.violations {
		out[k] = v
	}
	return out
}

// The server reports a refused publish or subscription in its log, as
// `[cid] - ... Publish Violation - Subject "S"`; serverLogger turns those into the broker's
// warnings with the identity's name, and counts them.
var violationRE = regexp.MustCompile(`cid:(\d+).*(Publish|Subscription) Violation - (?:Subject|Reply) "([^"]*)"`)

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
	m := violationRE.FindStringSubmatch(msg)
	if m == nil {
		l.a.log.Debug("nats server", "error", msg)
		return
	}
	cid, _ := strconv.ParseUint(m[1], 10, 64)
	l.a.mu.Lock()
	name, ok := l.a.clients[cid]
	if !ok {
		name = "token client"
	}
	l.a.violations[name]++
	l.a.mu.Unlock()
	l.a.log.Warn("permission violation refused", "identity", name, "kind", m[2], "subject", m[3])
}

// ---- what the control plane calls (each nil-safe: a broker without tokens has no identities) ----

// senderIs checks that a control message published on protocol.From(subject, worker) speaks for
// the worker whose subject it came on: the server lets each worker identity publish only on its own.
func senderIs(subject, worker string) error {
	if from := protocol.Sender(subject); from != worker {
		return fmt.Errorf("%s: sent by worker %q on behalf of %q: refused", subject, from, worker)
	}
	return nil
}

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
	var holders []string
	for w, g := range a.grants {
		for k := range g {
			if k.pipeline == pipeline {
				holders = append(holders, w)
				break
			}
		}
	}
	a.mu.RUnlock()
	for _, w := range holders {
		a.revoke(w, pipeline, 0)
	}
}
