// Command marvelo-broker runs the head node: an embedded NATS server with JetStream, the marvelo
// control plane, and a worker for the LOCAL group.
package main

import (
	"github.com/marvelo/marvelo/pipeline/protocol"

	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/liveview"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/worker"
)

func main() {
	// --version alone: -v is --verbose.
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version and exit"}
	app := &cli.App{
		Name:    "marvelo-broker",
		Version: protocol.BuildVersion(),
		Usage:   "run the marvelo head node: embedded NATS with JetStream and the control plane",
		UsageText: "marvelo-broker [--listen 127.0.0.1:4222] [--store DIR [--sync always|DURATION] | --memory] [--auth-token T] [--tls-cert F --tls-key F] [--monitor 127.0.0.1:8222] [--metrics 127.0.0.1:9090] [--ui 127.0.0.1:8080] [--no-local | --local]\n" +
			"   marvelo-broker --cluster HOST:PORT --routes URL,URL --server-name NAME [--replicas N] [--store DIR] ...\n" +
			"   marvelo-broker --nats URL[,URL] [--creds FILE] [--nats-monitor URL[,URL]] ...",
		Description: `Starts an embedded NATS server with JetStream and the marvelo control plane: the worker registry,
the scheduler, pipeline lifecycle and logs. Workers connect with marvelo-worker --broker
nats://THIS-HOST:PORT; pipelines are submitted with marvelo submit. A worker inside the broker
runs the jobs of the LOCAL group (csv sinks, interactive jobs) unless --no-local is given.

Listening beyond loopback requires --auth-token (or MARVELO_AUTH_TOKEN). With a token, each worker
should have an identity of its own (marvelo-broker worker add NAME): it may then use only the
subjects of the jobs placed on it. The shared tokens stay for single-user setups: the operator
token may do everything; --worker-token may run any job and read every pipe, but not use the
operator API nor change streams and the broker's state.

Several head nodes: brokers started with --cluster (this broker's route address), --routes (the
others' route addresses) and --server-name form one NATS cluster with clustered JetStream; pipes,
state and dependencies are replicated (--replicas, default 3 with three or more servers). One
broker's control plane acts; the others take over within about 2 s of its death. LOCAL jobs run
on the leader's worker, or always on the broker started with --local (give the others --no-local).

Per-worker identities work on every broker of a cluster: each follows the replicated identity
bucket, and enrolment (marvelo-broker worker add) may go to any of them.

On an existing NATS deployment (with JetStream), --nats URL[,URL] runs the control plane and the
LOCAL worker against it and embeds no server; --creds names the account's credentials file.

Durability: a stored broker (--store, or a temporary directory) syncs every JetStream write to
disk before acknowledging it (--sync always, the default: nats-server's sync_interval: always),
so a block, checkpoint or state change once acknowledged survives a power failure or an OS crash
of this machine. --sync DURATION (e.g. 1s, 2m: NATS's own default) acknowledges writes once the
OS has them and syncs every DURATION: faster (see marvelo bench --sync), and a power failure or
OS crash can lose what was acknowledged since the last sync; a crash of the process alone loses
nothing either way. Give every broker of a cluster the same --sync. --memory keeps nothing on
disk. On --nats the deployment's own sync_interval decides: an account's client cannot read it,
so --nats-monitor names the servers' monitoring URLs and the broker warns at start when one of
them syncs lazily (docs/operations.md has the table of what survives what).

Live view: --ui HOST:PORT serves a read-only web page at http://HOST:PORT/ with each pipeline's
graph (every job's state, worker and rates, every pipe's messages per second and lag), the
workers and their load, the events and a log tail, updated every second. Without --auth-token it
listens on loopback only; with it, the page asks for the operator token (HTTP basic
authentication: any user name, the token as password) or an operator or read-only identity's name
and secret (marvelo-broker operator add NAME --read-only), and scripts may send the header
Authorization: Bearer TOKEN. Its JSON: /api/pipelines, /api/workers, /api/events?pipeline=P,
/api/logs?pipeline=P&tail=N.

Examples:
   marvelo-broker --listen 0.0.0.0:4222 --store /var/lib/marvelo --auth-token "$TOKEN"
   marvelo-broker --server-name h1 --listen 0.0.0.0:4222 --cluster 0.0.0.0:6222 \
       --routes nats-route://h2:6222,nats-route://h3:6222 --store /var/lib/marvelo --auth-token "$TOKEN"
   marvelo-broker --store /var/lib/marvelo --sync 1s    # trade durability on power loss for speed, knowingly
   marvelo-broker --memory --ui 127.0.0.1:8080          # then open http://127.0.0.1:8080/ in a browser
   marvelo-broker --nats nats://nats1:4222,nats://nats2:4222 --creds marvelo.creds \
       --nats-monitor http://nats1:8222,http://nats2:8222
   marvelo-broker worker add mic1 --auth-token "$TOKEN" --out mic1.creds`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:4222", Usage: "host:port for workers and clients (port 0: any free port; the broker prints the one it bound)"},
			&cli.StringFlag{Name: "store", Usage: "JetStream directory: pipelines and pipes survive a restart"},
			&cli.BoolFlag{Name: "memory", Usage: "keep everything in memory (throwaway broker)"},
			&cli.StringFlag{Name: "sync", Value: broker.SyncAlways, Usage: "when the store syncs to disk: always (before acknowledging a write: nothing acknowledged is lost on a power failure) or a DURATION such as 1s or 2m (faster; a power failure or OS crash can lose what was acknowledged in the last DURATION)"},
			&cli.StringFlag{Name: "auth-token", EnvVars: []string{"MARVELO_AUTH_TOKEN"}, Usage: "the operator's token: every client must present a token"},
			&cli.StringFlag{Name: "worker-token", EnvVars: []string{"MARVELO_WORKER_TOKEN"}, Usage: "a token for workers only: they run jobs but cannot submit, stop or change pipelines"},
			&cli.StringFlag{Name: "tls-cert", Usage: "TLS certificate for the client port"},
			&cli.StringFlag{Name: "tls-key", Usage: "TLS key for the client port"},
			&cli.StringFlag{Name: "metrics", Usage: "host:port serving Prometheus metrics on /metrics: per job, pipe and worker; a Go job's CPU and memory are its worker process's, an executable's its program's (off when empty; e.g. --metrics 127.0.0.1:9090)"},
			&cli.StringFlag{Name: "ui", Usage: "host:port serving the live view, a read-only web page: the pipeline graph with each job's state, worker and rates, the workers' load, the events and a log tail (off when empty; e.g. --ui 127.0.0.1:8080); beyond loopback only with --auth-token, which the page then asks for"},
			&cli.StringFlag{Name: "monitor", Usage: "host:port of the NATS monitoring endpoint (off when empty; port 0: any free port, printed)"},
			&cli.BoolFlag{Name: "no-local", Usage: "do not run a worker for LOCAL jobs in the broker"},
			&cli.BoolFlag{Name: "local", Usage: "in a cluster, run the worker for LOCAL jobs here whichever broker leads (default: on the leader)"},
			&cli.StringFlag{Name: "server-name", Usage: "this broker's name in a cluster, unique among the brokers"},
			&cli.StringFlag{Name: "cluster", Usage: "host:port where this broker accepts routes from the other brokers of a cluster"},
			&cli.StringFlag{Name: "routes", Usage: "comma-separated route URLs of the other brokers (nats-route://HOST:PORT)"},
			&cli.IntFlag{Name: "replicas", Usage: "copies of every pipe, state bucket and dependency (default 3 with three or more servers, else 1); a store made with another number is changed to it, e.g. --replicas 3 after growing to three brokers"},
			&cli.StringFlag{Name: "nats", Usage: "comma-separated URLs of an existing NATS deployment with JetStream: embed no server"},
			&cli.StringFlag{Name: "creds", Usage: "NATS credentials file for --nats"},
			&cli.StringFlag{Name: "nats-monitor", Usage: "comma-separated monitoring URLs of the --nats servers (http://HOST:8222): warn at start when one syncs JetStream lazily"},
			&cli.StringFlag{Name: "workdir", Value: ".", Usage: "working directory of LOCAL jobs"},
			&cli.DurationFlag{Name: "heartbeat-timeout", Value: 1500 * time.Millisecond, Usage: "silence after which a worker is declared dead"},
			&cli.DurationFlag{Name: "disconnect-grace", Value: 100 * time.Millisecond, Usage: "how long a worker whose connection closed may take to reconnect before its jobs move (e.g. --disconnect-grace 500ms over a slow WAN); not on --nats, where heartbeats decide"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
		},
		Commands:       identityCommands(),
		Action:         run,
		ExitErrHandler: cliutil.HandleExitError,
	}
	if err := app.Run(cliutil.FlagsFirst(app, os.Args)); err != nil {
		fmt.Fprintln(os.Stderr, "marvelo-broker:", err)
		os.Exit(cliutil.ExitCode(err))
	}
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliutil.UsageError(fmt.Errorf("unexpected arguments: %v", c.Args().Slice()))
	}
	if c.String("store") != "" && c.Bool("memory") {
		return cliutil.UsageError(fmt.Errorf("--store and --memory exclude each other"))
	}
	if c.Bool("local") && c.Bool("no-local") {
		return cliutil.UsageError(fmt.Errorf("--local and --no-local exclude each other"))
	}
	if c.Bool("memory") && c.IsSet("sync") {
		return cliutil.UsageError(fmt.Errorf("--sync applies to a stored broker: --memory keeps nothing on disk"))
	}
	syncInterval, err := broker.ParseSync(c.String("sync"))
	if err != nil {
		return cliutil.UsageError(err)
	}
	if c.String("nats") != "" {
		for _, f := range []string{"listen", "store", "sync", "cluster", "routes", "server-name", "tls-cert", "tls-key", "monitor", "worker-token"} {
			if c.IsSet(f) {
				return cliutil.UsageError(fmt.Errorf("--nats runs on a NATS deployment marvelo did not start: --%s belongs to the embedded server", f))
			}
		}
	} else if c.String("creds") != "" {
		return cliutil.UsageError(fmt.Errorf("--creds goes with --nats"))
	} else if c.String("nats-monitor") != "" {
		return cliutil.UsageError(fmt.Errorf("--nats-monitor goes with --nats"))
	}
	level := slog.LevelInfo
	if c.Bool("verbose") {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	b, err := broker.Start(broker.Options{
		Listen: c.String("listen"), StoreDir: c.String("store"), Memory: c.Bool("memory"), SyncInterval: syncInterval,
		AuthToken: c.String("auth-token"), WorkerToken: c.String("worker-token"), TLSCert: c.String("tls-cert"), TLSKey: c.String("tls-key"),
		Monitor: c.String("monitor"), HeartbeatTimeout: c.Duration("heartbeat-timeout"), Logger: log, DisconnectGrace: c.Duration("disconnect-grace"),
		ServerName: c.String("server-name"), Cluster: c.String("cluster"), Routes: splitList(c.String("routes")),
		Replicas: c.Int("replicas"), NATS: c.String("nats"), Creds: c.String("creds"), PinnedLocal: c.Bool("local"),
		NATSMonitor: splitList(c.String("nats-monitor")),
	})
	if err != nil {
		return cliutil.Failure(err)
	}
	defer b.Shutdown()
	if addr := c.String("metrics"); addr != "" {
		m, err := broker.ServeMetrics(b, addr)
		if err != nil {
			return cliutil.Failure(err)
		}
		defer m.Close()
		fmt.Fprintf(os.Stderr, "marvelo-broker metrics on http://%s/metrics\n", m.Addr())
	}
	if addr := c.String("ui"); addr != "" {
		src, err := b.LiveSource()
		if err != nil {
			return cliutil.Failure(err)
		}
		defer src.Close()
		ui, err := liveview.Serve(liveview.Options{Addr: addr, Source: src, Authorize: b.LiveAuthorizer(), Logger: log})
		if err != nil {
			return cliutil.Failure(err)
		}
		defer ui.Close()
		fmt.Fprintf(os.Stderr, "marvelo-broker live view on http://%s/\n", ui.Addr())
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if u := b.MonitorURL(); u != "" {
		fmt.Fprintf(os.Stderr, "marvelo-broker NATS monitoring on %s\n", u)
	}
	fmt.Fprintf(os.Stderr, "marvelo-broker listening on %s\n", b.ClientURL())
	if c.Bool("no-local") {
		<-ctx.Done()
		log.Info("shutting down")
		return nil
	}
	if c.Bool("local") {
		name := localWorkerName(c.String("server-name"), c.String("cluster") != "" || c.String("nats") != "")
		return runLocalWorker(ctx, b, name, c.String("workdir"), log)
	}
	// LOCAL jobs follow the control plane: a broker alone always leads.
	return b.WhileLeader(ctx, func(ctx context.Context) error { return runLocalWorker(ctx, b, "head", c.String("workdir"), log) })
}

// localWorkerName names the LOCAL worker of a broker started with --local: in a cluster
// "head-SERVER" (its --server-name, else its host name), so that it can collide neither with the
// leader's worker of brokers without --local or --no-local, which follows the lead as "head",
// nor with another --local broker's; alone, "head".
func localWorkerName(server string, cluster bool) string {
	if !cluster {
		return "head"
	}
	if server == "" {
		server, _ = os.Hostname()
	}
	var sb strings.Builder
	for _, r := range server {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			sb.WriteRune(r)
		default:
			sb.WriteRune('_')
		}
	}
	name := "head-" + sb.String()
	if sb.Len() == 0 {
		name = "head-local"
	}
	return name[:min(len(name), 64)]
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// runLocalWorker runs the worker of the LOCAL group inside the broker until ctx ends. A worker
// that stops on an error (its registration refused, "name head is taken by a live worker": the
// worker of a leader that has not noticed yet that it lost the lead) is started again, 1 s
// doubling to 30 s later: the broker never exits for its worker, since in a cluster that exit
// could take the cluster below its quorum. Only a worker that cannot be made at all (its
// options) ends the broker, at start.
func runLocalWorker(ctx context.Context, b *broker.Broker, name, workdir string, log *slog.Logger) error {
	wait := backoff.Backoff{First: time.Second, Max: 30 * time.Second}
	for {
		started := time.Now()
		err := runLocalWorkerOnce(ctx, b, name, workdir, log)
		if ctx.Err() != nil {
			log.Info("shutting down")
			return nil
		}
		var bad badWorkerOptions
		if errors.As(err, &bad) {
			return cliutil.Failure(err)
		}
		if time.Since(started) > time.Minute {
			wait.Reset() // it ran a while: a new trouble
		}
		d := wait.Next()
		log.Error("the broker's LOCAL worker stopped; the broker goes on and starts it again", "worker", name, "in", d, "error", err)
		if !backoff.Pause(ctx, d) {
			log.Info("shutting down")
			return nil
		}
	}
}

// badWorkerOptions is a LOCAL worker that cannot be made: trying again would not help.
type badWorkerOptions struct{ error }

func (e badWorkerOptions) Unwrap() error { return e.error }

// runLocalWorkerOnce runs one LOCAL worker until ctx ends (nil) or it stops on an error.
func runLocalWorkerOnce(ctx context.Context, b *broker.Broker, name, workdir string, log *slog.Logger) error {
	nc, err := b.Connect()
	if err != nil {
		return fmt.Errorf("LOCAL worker %s: connect: %w", name, err)
	}
	defer nc.Close()
	w, err := worker.New(nc, worker.Options{Name: name, Local: true, SharedWorkDir: true, WorkDir: workdir,
		Registry: builtin.Registry(), Logger: log})
	if err != nil {
		return badWorkerOptions{fmt.Errorf("LOCAL worker %s: %w", name, err)}
	}
	if err := w.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("LOCAL worker %s: %w", name, err)
	}
	return nil
}
