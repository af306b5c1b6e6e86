package broker

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Isolation of identities by NATS accounts (DESIGN.md §10, issue 22).
//
// User permissions decide what a client may publish itself, but not where the server publishes
// on its behalf: JetStream answers every request (a direct get, a pull) on the reply subject the
// requester names, in the requester's account, and nothing checks that subject against the
// requester's permissions. With every client in one account, a worker could name any subject as
// the reply of a direct get of its own checkpoint and have the server publish bytes it chose
// there (a stop request, a forged block, a submission). So every worker identity and every
// read-only identity is an account of its own, as NATS separates tenants:
//
//   - the global account ($G) holds JetStream, the broker, operators and the shared tokens, and
//     exports everything: one service export ">" and one stream export ">";
//   - an isolated account imports the service ">" from $G: whatever its client publishes (and
//     its user permissions let through) goes on to $G under the same subject, and every answer
//     to it — JetStream's included — comes back into the isolated account only, on the reply
//     subject it named there. An answer the client steers onto a subject of that import is not
//     carried to $G again: the server refuses a chain that goes back through the export the
//     request came by. So the server can publish for a worker only where the worker could
//     publish itself, and only into the worker's own account;
//   - it imports the stream ">" from $G: what the broker and operators publish reaches it, and
//     its user permissions choose what it may subscribe to;
//   - the server does not hand what came into $G through one account's service import on to
//     another account's stream import, so what isolated accounts say to each other is imported
//     from the speaker's account: every worker account imports the pipe subjects of every other
//     worker account, under the prefix protocol.RealtimeRelayPrefix.<account> (realtime pipes;
//     a worker subscribes to its realtime inputs there too), and every read-only account imports
//     the heartbeats and log lines of every worker account.
//
// An account is made at run time when its identity is first known (ensure), and every reload of
// the server lists all of them as option accounts (templates): a reload drops the accounts its
// options do not list, and applies the imports the others gained, refreshing the subscriptions
// of the clients already connected (so a worker enrolled later is heard on realtime inputs
// subscribed to before).

const (
	workerAccountPrefix = "marvelo-worker-"
	readerAccountPrefix = "marvelo-reader-"
	// sharedWorkerAccount holds the clients of the shared worker token (--worker-token): they
	// share it, and are kept out of the global account like a worker identity (not a valid
	// identity name, so no identity's account).
	sharedWorkerAccount = "marvelo-shared-worker-token"
	// responseThreshold is how long the server keeps the way back for the answers to a request
	// an isolated identity made (streamed: a pull is answered by many messages). Longer than
	// any request a worker waits for: a leave (protocol.LeaveGrace + 10 s), a pull (5 s, kept
	// alive by its heartbeats).
	responseThreshold = 30 * time.Second
)

// accountName is the account an identity's clients are in: "" for an operator (the global
// account).
func accountName(id Identity) string {
	switch id.Role {
	case RoleWorker:
		return workerAccountPrefix + id.Name
	case RoleReader:
		return readerAccountPrefix + id.Name
	}
	return ""
}

// isolation holds the accounts made on this broker's server. Its lock guards the map only: it is
// never held across a call into the server.
type isolation struct {
	mu       sync.Mutex
	accounts map[string]*server.Account // by account name
	roles    map[string]string          // account name → RoleWorker or RoleReader
}

func newIsolation() *isolation {
	return &isolation{accounts: map[string]*server.Account{}, roles: map[string]string{}}
}

// account returns the account of an identity, nil when it has not been made yet.
func (x *isolation) account(name string) *server.Account {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.accounts[name]
}

// exportGlobal makes the global account's exports the isolated accounts import. Called once,
// when the server runs.
func exportGlobal(ns *server.Server) error {
	g := ns.GlobalAccount()
	if err := g.AddServiceExportWithResponse(">", server.Streamed, nil); err != nil {
		return fmt.Errorf("broker: export the global account's services: %w", err)
	}
	if err := g.SetServiceExportResponseThreshold(">", responseThreshold); err != nil {
		return fmt.Errorf("broker: export the global account's services: %w", err)
	}
	if err := g.AddStreamExport(">", nil); err != nil {
		return fmt.Errorf("broker: export the global account's streams: %w", err)
	}
	return nil
}

// isolated is an account of its own: an identity's, or the shared worker token's.
type isolated struct {
	name string // the account's
	role string // RoleWorker or RoleReader: what it imports
}

// isolatedAccounts are the accounts of the identities that have one, and of the shared worker
// token when there is one, workers first, each group by name: the order of the accounts made and
// of the reload's templates.
func isolatedAccounts(ids []Identity, sharedWorker bool) []isolated {
	var out []isolated
	for _, id := range ids {
		if name := accountName(id); name != "" {
			out = append(out, isolated{name, id.Role})
		}
	}
	if sharedWorker {
		out = append(out, isolated{sharedWorkerAccount, RoleWorker})
	}
	sort.Slice(out, func(i, k int) bool {
		if out[i].role != out[k].role {
			return out[i].role == RoleWorker
		}
		return out[i].name < out[k].name
	})
	return out
}

// ensure makes, on the running server, the account of every identity that has none yet, with
// its exports and its imports from the global account and from the worker accounts that exist
// already, and forgets the accounts of identities that are gone (the next reload drops them from
// the server). The imports the accounts that exist already gain from a new one come with the
// next reload (templates), which also refreshes their clients' subscriptions.
func (x *isolation) ensure(ns *server.Server, accounts []isolated) error {
	want := map[string]bool{}
	for _, a := range accounts {
		want[a.name] = true
	}
	x.mu.Lock()
	for name := range x.accounts {
		if !want[name] {
			delete(x.accounts, name)
			delete(x.roles, name)
		}
	}
	x.mu.Unlock()
	for _, a := range accounts {
		if x.account(a.name) != nil {
			continue
		}
		// An account the server has already (listed by an earlier reload) has its imports.
		acc, err := ns.LookupAccount(a.name)
		if err != nil {
			if acc, err = x.register(ns, a); err != nil {
				return fmt.Errorf("broker: account %s: %w", a.name, err)
			}
		}
		x.mu.Lock()
		x.accounts[a.name] = acc
		x.roles[a.name] = a.role
		x.mu.Unlock()
	}
	return nil
}

// register makes an isolated account on the running server.
func (x *isolation) register(ns *server.Server, a isolated) (*server.Account, error) {
	acc, err := ns.RegisterAccount(a.name)
	if err != nil {
		return nil, err
	}
	x.mu.Lock()
	var workers []*server.Account
	for name, w := range x.accounts {
		if x.roles[name] == RoleWorker {
			workers = append(workers, w)
		}
	}
	x.mu.Unlock()
	sort.Slice(workers, func(i, k int) bool { return workers[i].GetName() < workers[k].GetName() })
	if a.role == RoleWorker {
		if err := acc.AddStreamExport(">", nil); err != nil {
			return nil, fmt.Errorf("stream export: %w", err)
		}
	}
	if err := importsOf(acc, ns.GlobalAccount(), a.role, workers); err != nil {
		return nil, err
	}
	return acc, nil
}

// importsOf gives an isolated account its imports: from the global account, and from the worker
// accounts given (which export already).
func importsOf(acc, g *server.Account, role string, workers []*server.Account) error {
	if err := acc.AddServiceImport(g, ">", ">"); err != nil {
		return fmt.Errorf("service import from %s: %w", g.GetName(), err)
	}
	if err := acc.AddStreamImport(g, ">", ""); err != nil {
		return fmt.Errorf("stream import from %s: %w", g.GetName(), err)
	}
	for _, w := range workers {
		if w.GetName() == acc.GetName() {
			continue
		}
		for _, imp := range fromWorker(role, w.GetName()) {
			if err := acc.AddMappedStreamImport(w, imp.from, imp.to); err != nil {
				return fmt.Errorf("stream import %s from %s: %w", imp.from, w.GetName(), err)
			}
		}
	}
	return nil
}

type streamImport struct{ from, to string }

// fromWorker is what an isolated account of role imports from the worker account named worker:
// a worker the pipe subjects (its realtime inputs) under the relay prefix that names the
// speaker; a read-only identity the heartbeats and log lines.
func fromWorker(role, worker string) []streamImport {
	if role == RoleWorker {
		return []streamImport{{protocol.PipeSubjects, protocol.RealtimeRelayPrefix + "." + worker + "." + protocol.PipeSubjects}}
	}
	return []streamImport{
		{protocol.SubjHeartbeatPrefix + ">", protocol.SubjHeartbeatPrefix + ">"},
		{protocol.LogSubjects, protocol.LogSubjects},
	}
}

// templates are the option accounts of a reload: one per isolated identity, named like its
// account on the server, with every import it has (worker accounts import from each other both
// ways). The server updates its accounts from them in place.
func templates(ns *server.Server, accounts []isolated) ([]*server.Account, error) {
	var out, workers []*server.Account
	for _, a := range accounts {
		t := server.NewAccount(a.name)
		out = append(out, t)
		if a.role == RoleWorker {
			if err := t.AddStreamExport(">", nil); err != nil {
				return nil, fmt.Errorf("broker: account %s: stream export: %w", a.name, err)
			}
			workers = append(workers, t)
		}
	}
	for i, a := range accounts {
		if err := importsOf(out[i], ns.GlobalAccount(), a.role, workers); err != nil {
			return nil, fmt.Errorf("broker: account %s: %w", a.name, err)
		}
	}
	return out, nil
}
