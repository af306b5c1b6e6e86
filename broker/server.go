// Package broker is the head node: an embedded NATS server with JetStream, and the control plane
// on top of it — worker registry, scheduler, pipeline lifecycle and the API the marvelo command
// uses (DESIGN.md §2, §6, §8).
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Options configure a broker.
type Options struct {
	// Listen is host:port for NATS clients; port -1 picks a free port (tests, marvelo run).
	Listen string
	// StoreDir keeps JetStream on disk, so a restarted broker picks up where it was. Empty with
	// Memory false uses a temporary directory.
	StoreDir string
	// Memory keeps every stream in memory (marvelo run, throwaway brokers).
	Memory bool
	// SyncInterval is when a stored broker's JetStream writes reach the disk (nats-server's
	// sync_interval). Zero, the default, syncs every write before it is acknowledged (SyncAlways,
	// `sync_interval: always`): what a stream, bucket or object store acknowledged survives a
	// power failure or OS crash. A positive interval acknowledges writes once the operating system
	// has them and syncs in the background every SyncInterval: faster, and a power failure or OS
	// crash may lose what was acknowledged since the last sync. Not with Memory or NATS (ParseSync
	// reads --sync).
	SyncInterval time.Duration
	// NATSMonitor are monitoring URLs (http://HOST:8222) of the servers of NATS: the broker reads
	// each one's /varz at start and warns when it syncs lazily. A client of an account cannot
	// learn it otherwise (the server's INFO and $JS.API.INFO do not carry it).
	NATSMonitor []string
	// AuthToken, when set, is required from every client: the operator's token.
	AuthToken string
	// WorkerToken, when set, is a second token for workers: they may run jobs but not submit,
	// stop or change pipelines, nor touch the broker's streams and state.
	WorkerToken string
	// TLSCert and TLSKey make the client port speak TLS.
	TLSCert, TLSKey string
	// AllowInsecure lets the broker listen beyond loopback without a token (not recommended).
	AllowInsecure bool
	// Monitor is host:port of the NATS monitoring endpoint; empty turns it off.
	Monitor string
	// HeartbeatTimeout is how long a worker may stay silent before it is declared dead
	// (default 3 × 500 ms).
	HeartbeatTimeout time.Duration
	// Logger is the broker's log.
	Logger *slog.Logger

	// NATS, when set, is the URL (or comma-separated URLs) of a NATS deployment marvelo did not
	// start: the broker embeds no server and runs its control plane against it (DESIGN.md §12).
	NATS string
	// Creds is a NATS credentials file for NATS (the external deployment's account).
	Creds string
	// ServerName names this broker's server in a cluster (default: marvelo).
	ServerName string
	// Cluster is host:port where the embedded server accepts routes from the other brokers of a
	// cluster; empty keeps the broker alone.
	Cluster string
	// Routes are the nats-route:// URLs of the other brokers' --cluster addresses.
	Routes []string
	// PinnedLocal tells the election that this broker runs the LOCAL worker whoever leads
	// (--local): it leaves the lead to the others while one can take it.
	PinnedLocal bool
	// Replicas of the pipe streams, state buckets and object store (default: 3 in a cluster of
	// three or more servers, else 1).
	Replicas int

	// fence, set by the leader election for one term, reports whether this control plane may
	// still act (leader.go); nil means always.
	fence func() error

	access *access // set by Start: the enrolled identities, for the control plane

	// DisconnectGrace is how long after a worker's connection closed the broker waits for it to
	// reconnect before it moves its jobs (default 100 ms; DESIGN.md §8, broker/disconnect.go).
	DisconnectGrace time.Duration
	// connEvents, set by Start, says the embedded server's connection events reach the control
	// plane (disconnect.go); false on --nats.
	connEvents bool
}

// Broker is a running head node. Create it with Start; stop it with Shutdown.
type Broker struct {
	opts   Options
	ns     *server.Server
	nc     *nats.Conn
	terms  chan context.Context // each term of leadership, for WhileLeader (leader.go)
	ctl    *control
	access *access
	sopts  *server.Options
	// accessSubs serve the enrolment API (access.go).
	accessSubs []*nats.Subscription
	accessDone <-chan struct{} // in a cluster: the identity bucket's follower ended (access_cluster.go)
	log        *slog.Logger
	tempDir    string
	cancel     context.CancelFunc
	done       chan struct{}
}

// Start runs the embedded NATS server and the control plane.
func Start(opts Options) (*Broker, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HeartbeatTimeout <= 0 {
		opts.HeartbeatTimeout = 1500 * time.Millisecond
	}
	if err := opts.checkReplicas(); err != nil {
		return nil, err
	}
	if err := opts.checkSync(); err != nil {
		return nil, err
	}
	b := &Broker{opts: opts, log: opts.Logger, done: make(chan struct{}), terms: make(chan context.Context, 1)}
	if opts.NATS == "" {
		if err := b.startServer(); err != nil {
			return nil, err
		}
		if err := b.connectionEvents(); err != nil {
			b.Shutdown()
			return nil, err
		}
	}
	nc, err := b.Connect(nats.Name("marvelo-broker"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.CustomInboxPrefix(protocol.BrokerInboxPrefix))
	if err != nil {
		b.Shutdown()
		return nil, err
	}
	b.nc = nc
	b.opts.Replicas = b.replicas()
	b.logSync()
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	// Once cancel is set, Shutdown waits for done: a start that fails before the control plane
	// runs closes it itself.
	fail := func(err error) (*Broker, error) {
		close(b.done)
		b.Shutdown()
		return nil, err
	}
	if b.access != nil && b.elects() {
		if err := b.startClusterAccess(ctx); err != nil {
			return fail(err)
		}
	} else if b.access != nil {
		subs, err := b.access.start(ctx, b.ns, b.sopts, nc, opts.Memory)
		if err != nil {
			return fail(err)
		}
		b.accessSubs = subs
	}
	b.opts.access = b.access
	if b.elects() {
		go func() {
			defer close(b.done)
			b.campaign(ctx)
		}()
		b.log.Info("broker ready; campaigning to lead the control plane", "url", b.ClientURL(), "server", b.serverName(), "replicas", b.opts.Replicas, "store", b.storeDescription(), "sync", b.syncDescription())
		return b, nil
	}
	ctl, err := newControl(ctx, nc, b.opts, b.log)
	if err != nil {
		return fail(err)
	}
	b.ctl = ctl
	go func() {
		defer close(b.done)
		ctl.run(ctx)
	}()
	b.log.Info("broker ready", "url", b.ClientURL(), "store", b.storeDescription(), "sync", b.syncDescription())
	return b, nil
}

// startServer runs the embedded NATS server.
func (b *Broker) startServer() error {
	if err := checkListen("--listen", b.opts.Listen); err != nil {
		return err
	}
	sopts, err := b.serverOptions()
	if err != nil {
		return err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		b.removeTemp()
		return fmt.Errorf("broker: nats server: %w", err)
	}
	if b.access != nil {
		b.sopts = sopts.Clone()
		ns.SetLoggerV2(serverLogger{b.access}, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		b.removeTemp()
		return fmt.Errorf("broker: nats server did not become ready on %s", b.opts.Listen)
	}
	b.ns = ns
	return nil
}

// connectionEvents brings the embedded server's client connect and disconnect events to the
// control plane (disconnect.go).
func (b *Broker) connectionEvents() error {
	if err := importConnEvents(b.ns); err != nil {
		return err
	}
	b.opts.connEvents = true
	return nil
}

func (b *Broker) serverOptions() (*server.Options, error) {
	host, port, err := splitHostPort(b.opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker: --listen %q: %w", b.opts.Listen, err)
	}
	if b.opts.AuthToken == "" && !b.opts.AllowInsecure && !isLoopback(host) {
		return nil, fmt.Errorf("broker: refusing to listen on %s without --auth-token: anyone on the network could run code on the workers", b.opts.Listen)
	}
	o := &server.Options{
		ServerName: b.serverName(), Host: host, Port: port, JetStream: true,
		NoSigs: true, NoLog: true, MaxPayload: 8 << 20,
	}
	if b.opts.WorkerToken != "" && b.opts.AuthToken == "" {
		return nil, errors.New("broker: --worker-token needs --auth-token (the operator's)")
	}
	if b.opts.AuthToken != "" {
		// Enrolled identities present tokens of their own (access.go).
		b.access = newAccess(b.log)
		b.access.sharedWorker = b.opts.WorkerToken != ""
		o.CustomClientAuthentication = tokenAuth{operator: b.opts.AuthToken, worker: b.opts.WorkerToken, ids: b.access}
	}
	switch {
	case b.opts.Memory:
		// JetStream still wants a directory for its metadata; nothing of ours lands there.
		dir, err := os.MkdirTemp("", "marvelo-broker-*")
		if err != nil {
			return nil, fmt.Errorf("broker: temporary store: %w", err)
		}
		b.tempDir, o.StoreDir = dir, dir
	case b.opts.StoreDir != "":
		o.StoreDir = b.opts.StoreDir
	default:
		dir, err := os.MkdirTemp("", "marvelo-broker-*")
		if err != nil {
			return nil, fmt.Errorf("broker: temporary store: %w", err)
		}
		b.tempDir, o.StoreDir = dir, dir
	}
	if !b.opts.Memory {
		// Every file store of the server follows these — streams, buckets, the object store,
		// consumers, and in a cluster the Raft logs (nats-server stream.go, jetstream_cluster.go).
		// SyncAlways with SyncInterval 0 is what `sync_interval: always` sets (the server fills
		// the interval in, for the few files it still syncs on a timer).
		o.SyncAlways = b.opts.SyncInterval == 0
		o.SyncInterval = b.opts.SyncInterval
	}
	if (b.opts.TLSCert == "") != (b.opts.TLSKey == "") {
		return nil, errors.New("broker: --tls-cert and --tls-key go together")
	}
	if b.opts.TLSCert != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: b.opts.TLSCert, KeyFile: b.opts.TLSKey})
		if err != nil {
			return nil, fmt.Errorf("broker: tls: %w", err)
		}
		o.TLSConfig, o.TLS = tc, true
	}
	if b.opts.Monitor != "" {
		mh, mp, err := splitHostPort(b.opts.Monitor)
		if err != nil {
			return nil, fmt.Errorf("broker: --monitor %q: %w", b.opts.Monitor, err)
		}
		o.HTTPHost, o.HTTPPort = mh, mp
	}
	if err := b.clusterOptions(o); err != nil {
		return nil, err
	}
	return o, nil
}

// SyncAlways is what --sync says for SyncInterval 0: sync every write before acknowledging it.
const SyncAlways = "always"

// ParseSync reads --sync: "always" (SyncInterval 0) or a positive duration such as 1s or 2m.
func ParseSync(s string) (time.Duration, error) {
	if strings.EqualFold(s, SyncAlways) {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("--sync %q: want %s or a positive duration such as 1s or 2m", s, SyncAlways)
	}
	return d, nil
}

// SyncName is --sync's spelling of a SyncInterval: "always" or the duration.
func SyncName(interval time.Duration) string {
	if interval == 0 {
		return SyncAlways
	}
	return interval.String()
}

// checkSync refuses a SyncInterval that cannot apply: negative, or on a broker whose JetStream
// does not store on disk here.
func (o *Options) checkSync() error {
	switch {
	case o.SyncInterval < 0:
		return fmt.Errorf("broker: --sync %s: want %s or a positive duration", o.SyncInterval, SyncAlways)
	case o.SyncInterval > 0 && o.Memory:
		return errors.New("broker: --sync applies to a stored broker; --memory keeps nothing on disk")
	case o.SyncInterval > 0 && o.NATS != "":
		return errors.New("broker: --sync belongs to the embedded server; on --nats the deployment's own sync_interval decides")
	case len(o.NATSMonitor) > 0 && o.NATS == "":
		return errors.New("broker: --nats-monitor goes with --nats (the embedded server's setting is --sync)")
	}
	return nil
}

// syncDescription says when this broker's JetStream writes reach the disk, for its logs.
func (b *Broker) syncDescription() string {
	switch {
	case b.opts.NATS != "":
		return "the deployment's sync_interval"
	case b.opts.Memory:
		return "none (memory)"
	case b.opts.SyncInterval == 0:
		return "always (before acknowledging)"
	}
	return "every " + b.opts.SyncInterval.String() + " (lazy)"
}

// logSync warns where acknowledged writes may not survive a power failure: a stored broker with
// a sync interval, or a NATS deployment that syncs lazily (read from its monitoring endpoints,
// the only place an account's client can learn it) or whose setting is unknown.
func (b *Broker) logSync() {
	switch {
	case b.opts.NATS != "" && len(b.opts.NATSMonitor) == 0:
		b.log.Warn("the NATS deployment's sync setting is unknown: a client of an account cannot read it (its INFO and $JS.API.INFO do not carry it); "+
			"if a server syncs lazily (the NATS default, sync_interval 2m), a power failure or OS crash can lose acknowledged blocks. "+
			"Give --nats-monitor with the servers' monitoring URLs to check it, and set `jetstream { sync_interval: always }` on every server",
			"nats", b.opts.NATS)
	case b.opts.NATS != "":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, u := range b.opts.NATSMonitor {
			b.checkDeploymentSync(ctx, u)
		}
	case !b.opts.Memory && b.opts.SyncInterval > 0:
		b.log.Warn("JetStream acknowledges writes before they are on disk (--sync "+b.opts.SyncInterval.String()+"): "+
			"a power failure or OS crash of this machine can lose the blocks, checkpoints and state acknowledged since the last sync; --sync always prevents it",
			"sync", b.opts.SyncInterval)
	}
}

// varzSync is the part of a NATS server's /varz that says when its JetStream syncs.
type varzSync struct {
	ServerName string `json:"server_name"`
	JetStream  struct {
		Config *struct {
			SyncInterval time.Duration `json:"sync_interval"`
			SyncAlways   bool          `json:"sync_always"`
		} `json:"config"`
	} `json:"jetstream"`
}

// checkDeploymentSync reads one server's /varz and logs whether it syncs before acknowledging.
func (b *Broker) checkDeploymentSync(ctx context.Context, monitor string) {
	u := strings.TrimSuffix(monitor, "/")
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	v, err := readVarz(ctx, u+"/varz")
	switch {
	case err != nil:
		b.log.Warn("cannot read the NATS server's sync setting", "monitor", monitor, "error", err)
	case v.JetStream.Config == nil:
		b.log.Warn("the NATS server's /varz shows no JetStream", "monitor", monitor, "server", v.ServerName)
	case !v.JetStream.Config.SyncAlways:
		b.log.Warn("the NATS server syncs JetStream lazily: a power failure or OS crash of it can lose acknowledged blocks, checkpoints and state; "+
			"set `jetstream { sync_interval: always }` in its configuration",
			"monitor", monitor, "server", v.ServerName, "sync_interval", v.JetStream.Config.SyncInterval)
	default:
		b.log.Info("the NATS server syncs JetStream before acknowledging", "monitor", monitor, "server", v.ServerName)
	}
}

func readVarz(ctx context.Context, url string) (varzSync, error) {
	var v varzSync
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return v, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("GET %s: %w", url, err)
	}
	return v, nil
}

func splitHostPort(hp string) (string, int, error) {
	if hp == "" {
		return "127.0.0.1", server.RANDOM_PORT, nil
	}
	host, ps, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(ps)
	if err != nil {
		return "", 0, fmt.Errorf("port %q is not a number", ps)
	}
	if port == 0 {
		// Port 0 is any free port, as for net.Listen. NATS reads 0 as its default port (4222,
		// 6222) and, for monitoring, as off; its "any" is -1. The broker says what it bound.
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (b *Broker) storeDescription() string {
	if b.opts.NATS != "" {
		return "the NATS deployment at " + b.opts.NATS
	}
	if b.opts.Memory {
		return "memory"
	}
	if b.opts.StoreDir != "" {
		return b.opts.StoreDir
	}
	return b.tempDir + " (temporary)"
}

// ClientURL is the URL workers and the marvelo command connect to: the embedded server's, or
// the NATS deployment's URLs given with --nats.
func (b *Broker) ClientURL() string {
	if b.ns == nil {
		return b.opts.NATS
	}
	return b.ns.ClientURL()
}

// MonitorURL is the embedded server's monitoring endpoint (http://HOST:PORT) with the port it
// bound, which Options.Monitor may leave to the server (HOST:-1); "" when monitoring is off or
// NATS is not embedded.
func (b *Broker) MonitorURL() string {
	if b.ns == nil {
		return ""
	}
	if a := b.ns.MonitorAddr(); a != nil {
		return "http://" + a.String()
	}
	return ""
}

// Connect opens a NATS connection to the embedded server (or the NATS deployment), with the
// broker's token or credentials.
func (b *Broker) Connect(opts ...nats.Option) (*nats.Conn, error) {
	if b.opts.AuthToken != "" {
		opts = append(opts, nats.Token(b.opts.AuthToken))
	}
	if b.opts.Creds != "" {
		opts = append(opts, nats.UserCredentials(b.opts.Creds))
	}
	opts = append([]nats.Option{nats.ErrorHandler(AsyncErrorLogger(b.log))}, opts...)
	nc, err := nats.Connect(b.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect to %s: %w", b.ClientURL(), err)
	}
	return nc, nil
}

// AsyncErrorLogger returns a nats.ErrHandler that logs asynchronous connection errors (a write
// that failed while the server shut down, a slow consumer) instead of printing them to stderr.
func AsyncErrorLogger(log *slog.Logger) nats.ErrHandler {
	return func(nc *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			log.Warn("nats subscription error", "subject", sub.Subject, "error", err)
			return
		}
		log.Debug("nats connection error", "error", err)
	}
}

// Shutdown stops the control plane and the NATS server.
func (b *Broker) Shutdown() {
	if b.cancel != nil {
		b.cancel()
		<-b.done
		if b.accessDone != nil {
			<-b.accessDone
		}
	}
	if b.nc != nil {
		_ = b.nc.Drain()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
	b.removeTemp()
}

func (b *Broker) removeTemp() {
	if b.tempDir != "" {
		if err := os.RemoveAll(b.tempDir); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.log.Warn("temporary store not removed", "dir", b.tempDir, "error", err)
		}
	}
}
