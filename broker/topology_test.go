package broker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// logStreamAllowsDirect reports whether b's log stream allows direct gets, and with setTo
// non-nil first sets it so (a store made before the logs were read by direct gets).
func logStreamAllowsDirect(t *testing.T, b *Broker, setTo *bool) bool {
	t.Helper()
	nc, err := b.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, protocol.LogStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if setTo != nil {
		cfg.AllowDirect = *setTo
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return cfg.AllowDirect
}

// TestLogStreamAllowsDirectGetsAlsoOnAStoreMadeWithout: the log stream allows direct gets (the
// logs are read that way, without a consumer), and a broker restarted on a store whose log
// stream did not allow them makes it allow them.
func TestLogStreamAllowsDirectGetsAlsoOnAStoreMadeWithout(t *testing.T) {
	dir := t.TempDir()
	start := func() *Broker {
		b, err := Start(Options{Listen: "127.0.0.1:-1", StoreDir: dir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := start()
	if !logStreamAllowsDirect(t, b, nil) {
		t.Error("a new log stream does not allow direct gets")
	}
	off := false
	logStreamAllowsDirect(t, b, &off)
	b.Shutdown()
	b = start()
	defer b.Shutdown()
	if !logStreamAllowsDirect(t, b, nil) {
		t.Error("after a restart on a store whose log stream did not allow direct gets, it still does not")
	}
}
