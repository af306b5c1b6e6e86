package broker

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Disconnect events: the broker learns from the NATS server at once that a worker's connection
// closed, and moves its jobs then instead of after three missed heartbeats (DESIGN.md §8).
//
// The embedded server publishes a connect and a disconnect event for every client connection
// in its system account ($SYS.ACCOUNT.<account>.CONNECT / DISCONNECT), the servers of a cluster
// those of each other's clients too. The global account, where the broker is, imports them for
// every account (importConnEvents: worker identities have accounts of their own) as
// subjConnect.<account> and subjDisconnect.<account>, which workers may not publish
// (workerDenied, WorkerPermissions), so the control plane needs no system-account user. An event
// names the connection by server and client id, and its worker by the client name
// (protocol.WorkerConnName); an enrolled identity may only name itself (access.checkIdentity).
//
// A closed connection is a dead worker only if no other connection of that worker is open when
// the grace (Options.DisconnectGrace) has passed: a worker whose connection was cut by a blip
// reconnects at once (its first reconnect attempt has no delay, worker.Connect) and is not moved.
// A server that shuts down closes every client: those reconnect to another server or wait for
// this one, and heartbeats judge them. What the server cannot see — a frozen process, a cut
// cable — is left to heartbeats as before. On --nats (no embedded server) there are no events.
//
// connWatch.mu is a leaf: it is never held while taking control.mu or making a call.

const (
	// subjSys holds the subjects the server publishes on; no worker may (workerDenied).
	subjSys        = "marvelo.sys.>"
	subjConnect    = "marvelo.sys.connect"
	subjDisconnect = "marvelo.sys.disconnect"
	// defaultDisconnectGrace: see DESIGN.md §8 for the choice.
	defaultDisconnectGrace = 100 * time.Millisecond
)

// importConnEvents makes the embedded server's connect and disconnect events of every account
// visible in the global account as subjConnect.<account> and subjDisconnect.<account>.
func importConnEvents(ns *server.Server) error {
	sys, global := ns.SystemAccount(), ns.GlobalAccount()
	if sys == nil || global == nil {
		return fmt.Errorf("broker: connection events: the server has no system account")
	}
	// Every account's: a worker identity's connections are in an account of its own
	// (isolation.go). The account's name becomes the last token.
	for from, to := range map[string]string{
		"$SYS.ACCOUNT.*.CONNECT":    subjConnect + ".*",
		"$SYS.ACCOUNT.*.DISCONNECT": subjDisconnect + ".*",
	} {
		if err := sys.AddStreamExport(from, []*server.Account{global}); err != nil {
			return fmt.Errorf("broker: connection events: export %s: %w", from, err)
		}
		if err := global.AddMappedStreamImport(sys, from, to); err != nil {
			return fmt.Errorf("broker: connection events: import %s as %s: %w", from, to, err)
		}
	}
	return nil
}

// connKey names one client connection in a cluster: its server and its client id there.
type connKey struct {
	server string
	cid    uint64
}

// connWatch follows the open connections of each worker, from the events, and the closes whose
// grace is running.
type connWatch struct {
	grace time.Duration

	mu      sync.Mutex
	open    map[string]map[connKey]bool // worker → its connections open
	waiting map[string]*time.Timer      // worker → the grace running after its last close
	stopped bool
}

func newConnWatch(grace time.Duration) *connWatch {
	if grace <= 0 {
		grace = defaultDisconnectGrace
	}
	return &connWatch{grace: grace, open: map[string]map[connKey]bool{}, waiting: map[string]*time.Timer{}}
}

// opened records a connection of a worker.
func (cw *connWatch) opened(worker string, k connKey) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	if cw.open[worker] == nil {
		cw.open[worker] = map[connKey]bool{}
	}
	cw.open[worker][k] = true
}

// forget records the close of a connection without starting a grace.
func (cw *connWatch) forget(worker string, k connKey) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	delete(cw.open[worker], k)
	if len(cw.open[worker]) == 0 {
		delete(cw.open, worker)
	}
}

// What a close started (connWatch.closed).
type closeOutcome int

const (
	graceStarted closeOutcome = iota // no connection of the worker is open: the grace runs
	otherOpen                        // another connection of the worker is open
	graceRunning                     // a grace runs already (a second close, or the same event twice in a cluster)
	watchStopped                     // the control plane is stopping
)

// closed records the close of a connection of a worker. When none of its connections is open,
// after the grace lost runs, or back if one opened meanwhile.
func (cw *connWatch) closed(worker string, k connKey, lost, back func()) closeOutcome {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	delete(cw.open[worker], k)
	switch {
	case cw.stopped:
		return watchStopped
	case len(cw.open[worker]) > 0:
		return otherOpen
	case cw.waiting[worker] != nil:
		return graceRunning
	}
	delete(cw.open, worker)
	var t *time.Timer
	t = time.AfterFunc(cw.grace, func() {
		cw.mu.Lock()
		current := cw.waiting[worker] == t && !cw.stopped
		if current {
			delete(cw.waiting, worker)
		}
		reopened := len(cw.open[worker]) > 0
		cw.mu.Unlock()
		switch {
		case !current:
		case reopened:
			back()
		default:
			lost()
		}
	})
	cw.waiting[worker] = t
	return graceStarted
}

// stop cancels the graces running; no lost runs after it returns, except one already running.
func (cw *connWatch) stop() {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	cw.stopped = true
	for w, t := range cw.waiting {
		t.Stop()
		delete(cw.waiting, w)
	}
}

// watchLiveness starts what tells the control plane of a worker's death besides its heartbeats:
// the connection events of the embedded server; on --nats, nothing (said in the log).
func (c *control) watchLiveness() error {
	if !c.opts.connEvents {
		c.log.Info("no connection events from the NATS server (--nats): a worker's death is noticed by its missed heartbeats",
			"timeout", c.opts.HeartbeatTimeout)
		return nil
	}
	return c.watchConnections()
}

// watchConnections subscribes to the connection events (the control plane's subscriptions end
// with it, run stops the graces). One subscription takes both kinds, so they are handled in the
// order the server sent them. With one subscription a subject (each has its own goroutine) a
// worker's new connection and the close of its old one could be handled swapped, and the close
// then started a grace although another connection was open.
func (c *control) watchConnections() error {
	sub, err := c.nc.Subscribe(subjSys, c.handleConnEvent)
	if err != nil {
		return fmt.Errorf("broker: subscribe %s: %w", subjSys, err)
	}
	c.subs = append(c.subs, sub)
	return nil
}

// connEvent is what the control plane reads of server.ConnectEventMsg and DisconnectEventMsg.
type connEvent struct {
	Type   string            `json:"type"`
	Server server.ServerInfo `json:"server"`
	Client server.ClientInfo `json:"client"`
	Reason string            `json:"reason"`
}

// Reasons of a disconnect event (nats-server's ClosedState strings) that say nothing of the
// worker: the server went away, not the worker.
var serverSideReasons = map[string]bool{
	server.ServerShutdown.String(): true,
}

func (c *control) handleConnEvent(m *nats.Msg) {
	var ev connEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		c.log.Warn("bad connection event", "subject", m.Subject, "error", err)
		return
	}
	worker, ok := protocol.WorkerOfConnName(ev.Client.Name)
	if !ok {
		return
	}
	k := connKey{ev.Server.ID, ev.Client.ID}
	switch ev.Type {
	case server.ConnectEventMsgType:
		c.conns.opened(worker, k)
	case server.DisconnectEventMsgType:
		if serverSideReasons[ev.Reason] {
			c.conns.forget(worker, k) // heartbeats judge the worker
			return
		}
		closedAt := time.Now()
		lost := func() { c.connectionLost(worker, ev.Reason, closedAt) }
		back := func() {
			c.log.Info("a worker reconnected within the grace; its jobs stay", "worker", worker, "reason", ev.Reason)
		}
		switch c.conns.closed(worker, k, lost, back) {
		case graceStarted:
			c.log.Info("a worker's connection closed; moving its jobs unless it reconnects", "worker", worker,
				"reason", ev.Reason, "server", ev.Server.Name, "grace", c.conns.grace)
		case otherOpen:
			c.log.Debug("a connection of a worker closed; another is open", "worker", worker, "reason", ev.Reason)
		}
	}
}

// connectionLost declares a worker dead whose connection closed and did not come back within
// the grace. A worker already declared dead, gone or never registered is left alone.
func (c *control) connectionLost(worker, reason string, closedAt time.Time) {
	why := fmt.Sprintf("closed its connection (%s) and did not reconnect within %s", reason, c.conns.grace)
	if c.declareDead(worker, why, nil) {
		c.log.Warn("worker's connection closed; declared dead", "worker", worker, "reason", reason,
			"since", time.Since(closedAt).Round(time.Millisecond))
	}
}
