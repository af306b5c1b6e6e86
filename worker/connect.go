package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultWorkDir is the folder for the jobs' working directories when none is given: marvelo in
// the user's cache folder.
func DefaultWorkDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return d + "/marvelo"
	}
	return os.TempDir() + "/marvelo"
}

// Connect opens a NATS connection that retries forever while the broker is away, and logs each
// disconnect and reconnect.
func Connect(url, token, tlsCA string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("marvelo-worker"),
		nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true), nats.CustomReconnectDelay(reconnectDelay),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("disconnected from the broker; reconnecting", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to the broker", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				// A slow consumer names its subscription: a pipe's pull inbox, or a control subject.
				log.Warn("nats error", "error", err, "subject", sub.Subject)
				return
			}
			log.Warn("nats error", "error", err)
		}),
	}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	if tlsCA != "" {
		opts = append(opts, nats.RootCAs(tlsCA))
	}
	opts = append(opts, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to broker %s: %w", url, err)
	}
	return nc, nil
}

// reconnectDelay is the wait before each attempt to reconnect: none before the first (up to 10 ms
// of jitter), so a connection cut by a network blip is back within the broker's grace and the
// worker's jobs do not move (DESIGN.md §8); then 500 ms and up to 250 ms of jitter, as nats.go's
// defaults, while the broker is away.
func reconnectDelay(attempts int) time.Duration {
	if attempts <= 1 {
		return rand.N(10 * time.Millisecond)
	}
	return 500*time.Millisecond + rand.N(250*time.Millisecond)
}

// DefaultName is a worker's name when none is given: its host name, made a valid name.
func DefaultName() string {
	host, _ := os.Hostname()
	return SanitizeName(host)
}

// DescribeConnectError says what went wrong connecting to the broker at url: it names the URL,
// and says "authorization failed" when the broker refused the credentials. marvelo's commands
// and workers report connection errors through it.
func DescribeConnectError(url string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization violation"):
		return fmt.Errorf("connect to broker %s: authorization failed: the broker refused the token (check --auth-token or MARVELO_AUTH_TOKEN): %w", url, err)
	case errors.Is(err, nats.ErrNoServers), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("connect to broker %s: cannot reach it (is the broker running there? check --broker or MARVELO_BROKER): %w", url, err)
	}
	return fmt.Errorf("connect to broker %s: %w", url, err)
}
