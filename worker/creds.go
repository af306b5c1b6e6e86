package worker

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Creds reads a credentials file written by `marvelo-broker worker add` (or `operator add`) and
// returns the identity's name and the connection options that authenticate as it: its token, and
// its own inbox prefix, the only inboxes the broker lets it read.
func Creds(file string) (string, []nats.Option, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", nil, fmt.Errorf("credentials: %w", err)
	}
	name, token, err := protocol.ParseCreds(data)
	if err != nil {
		return "", nil, fmt.Errorf("credentials %s: %w", file, err)
	}
	// A restarted broker refuses identities until it has loaded them: keep retrying.
	return name, []nats.Option{nats.Token(token), nats.CustomInboxPrefix(protocol.InboxPrefix(name)), nats.IgnoreAuthErrorAbort()}, nil
}
