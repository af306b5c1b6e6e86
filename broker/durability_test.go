package broker

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/marvelo/marvelo/broker/freeport"
	"github.com/nats-io/nats-server/v2/server"
)

// The sync setting (--sync) is nats-server's own SyncAlways / SyncInterval. These tests read
// what each server runs with from its /varz (Varz.JetStream.Config, the configuration every
// file store, consumer store and Raft log of the server is made with: nats-server's stream.go
// and jetstream_cluster.go copy SyncAlways and SyncInterval from the server's options). The
// crash test (cmd/internal/crashkit/broker_crash_test.go, MARVELO_CRASH_TEST=1) shows what the setting does when
// the power goes.

// jetStreamSync is the sync configuration a running server reports.
func jetStreamSync(t *testing.T, ns *server.Server) (always bool, interval time.Duration) {
	t.Helper()
	v, err := ns.Varz(nil)
	if err != nil {
		t.Fatalf("varz: %v", err)
	}
	if v.JetStream.Config == nil {
		t.Fatal("varz shows no JetStream configuration")
	}
	return v.JetStream.Config.SyncAlways, v.JetStream.Config.SyncInterval
}

func TestStoredBrokerSyncsEveryWriteBeforeAcknowledgingByDefault(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if always, interval := jetStreamSync(t, b.ns); !always {
		t.Fatalf("a stored broker runs with sync_always false, sync_interval %s: want sync_always", interval)
	}
}

func TestBrokerWithATemporaryStoreSyncsEveryWriteBeforeAcknowledging(t *testing.T) {
	b, err := Start(Options{Listen: "127.0.0.1:-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if always, interval := jetStreamSync(t, b.ns); !always {
		t.Fatalf("a broker on a temporary store runs with sync_always false, sync_interval %s: want sync_always", interval)
	}
}

func TestSyncIntervalMakesTheStoreSyncOnThatIntervalAndWarns(t *testing.T) {
	var log syncBuffer
	b, err := Start(Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), SyncInterval: 2 * time.Minute,
		Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if always, interval := jetStreamSync(t, b.ns); always || interval != 2*time.Minute {
		t.Fatalf("--sync 2m runs with sync_always %v, sync_interval %s: want false, 2m0s", always, interval)
	}
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "power failure") {
		t.Fatalf("--sync 2m started without a warning about power failures; log:\n%s", log.String())
	}
}

func TestEveryBrokerOfAClusterSyncsEveryWriteBeforeAcknowledging(t *testing.T) {
	ports, err := freeport.Loopback(3)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	for i, p := range ports {
		b, err := Start(Options{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler),
			ServerName: fmt.Sprintf("d%d", i+1), Cluster: fmt.Sprintf("127.0.0.1:%d", p), Routes: routes})
		if err != nil {
			t.Fatalf("broker %d: %v", i+1, err)
		}
		defer b.Shutdown()
		if always, interval := jetStreamSync(t, b.ns); !always {
			t.Errorf("broker %d of the cluster runs with sync_always false, sync_interval %s: want sync_always", i+1, interval)
		}
	}
}

func TestSyncIntervalRefusedWhereThereIsNoStoreOfOurs(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{Memory: true, SyncInterval: time.Second}, "--memory keeps nothing on disk"},
		{Options{NATS: "nats://127.0.0.1:4222", SyncInterval: time.Second}, "--sync belongs to the embedded server"},
		{Options{SyncInterval: -time.Second}, "positive duration"},
		{Options{NATSMonitor: []string{"http://127.0.0.1:8222"}}, "--nats-monitor goes with --nats"},
	} {
		_, err := Start(c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Start(%+v) = %v, want an error naming %q", c.opts, err, c.want)
		}
	}
}

func TestParseSyncReadsAlwaysOrAPositiveDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"always": 0, "ALWAYS": 0, "1s": time.Second, "2m": 2 * time.Minute, "150ms": 150 * time.Millisecond} {
		got, err := ParseSync(in)
		if err != nil || got != want {
			t.Errorf("ParseSync(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if SyncName(0) != "always" || SyncName(2*time.Minute) != "2m0s" {
		t.Errorf("SyncName: %q for 0, %q for 2m; want always, 2m0s", SyncName(0), SyncName(2*time.Minute))
	}
	for _, in := range []string{"", "0", "0s", "-1s", "sometimes"} {
		if _, err := ParseSync(in); err == nil || !strings.Contains(err.Error(), "want always or a positive duration") {
			t.Errorf("ParseSync(%q) = %v, want an error saying what it wants", in, err)
		}
	}
}

// startNATS starts a NATS server with JetStream on disk and its monitoring endpoint, as a
// deployment marvelo did not start; it returns the server and its monitoring URL.
func startNATS(t *testing.T, syncAlways bool) (*server.Server, string) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, HTTPHost: "127.0.0.1", HTTPPort: -1,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: syncAlways, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return ns, "http://" + ns.MonitorAddr().String()
}

func TestNATSDeploymentThatSyncsLazilyIsWarnedAboutAtStart(t *testing.T) {
	for _, c := range []struct {
		name       string
		syncAlways bool
		monitor    bool
		want       string
		warns      bool
	}{
		{"lazy", false, true, "the NATS server syncs JetStream lazily", true},
		{"always", true, true, "the NATS server syncs JetStream before acknowledging", false},
		{"unknown", true, false, "the NATS deployment's sync setting is unknown", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns, monitor := startNATS(t, c.syncAlways)
			var log syncBuffer
			opts := Options{NATS: ns.ClientURL(), Logger: slog.New(slog.NewTextHandler(&log, nil))}
			if c.monitor {
				opts.NATSMonitor = []string{monitor}
			}
			b, err := Start(opts)
			if err != nil {
				t.Fatal(err)
			}
			b.Shutdown()
			out := log.String()
			if !strings.Contains(out, c.want) {
				t.Fatalf("the broker's log does not say %q:\n%s", c.want, out)
			}
			if warned := strings.Contains(out, "level=WARN"); warned != c.warns {
				t.Fatalf("warned %v, want %v:\n%s", warned, c.warns, out)
			}
		})
	}
}
