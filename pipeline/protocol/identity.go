package protocol

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// The enrolment API (operator only): an identity request → Reply.
const (
	SubjIdentityAdd    = "marvelo.api.identity.add"
	SubjIdentityRemove = "marvelo.api.identity.remove"
)

// identityTokenPrefix starts the token of an enrolled identity: "marvelo-id.NAME.SECRET".
const identityTokenPrefix = "marvelo-id."

// IdentityToken is the token an enrolled identity connects with.
func IdentityToken(name, secret string) string { return identityTokenPrefix + name + "." + secret }

// ParseIdentityToken splits an identity's token; ok is false for any other token.
func ParseIdentityToken(token string) (name, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, identityTokenPrefix)
	if !ok {
		return "", "", false
	}
	name, secret, ok = strings.Cut(rest, ".")
	return name, secret, ok && name != "" && secret != ""
}

// A credentials file holds one identity: its name and its token.
const (
	credsNamePrefix  = "# marvelo identity: "
	credsTokenPrefix = "token: "
)

// FormatCreds returns the credentials file of identity name with its secret.
func FormatCreds(name, secret string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s%s\n", credsNamePrefix, name)
	b.WriteString("# Keep this file secret: whoever holds it is this identity.\n")
	fmt.Fprintf(&b, "%s%s\n", credsTokenPrefix, IdentityToken(name, secret))
	return b.Bytes()
}

// ParseCreds returns the identity name and token a credentials file holds.
func ParseCreds(data []byte) (name, token string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if t, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), credsTokenPrefix); ok {
			n, _, ok := ParseIdentityToken(t)
			if !ok {
				return "", "", fmt.Errorf("the token line is not a marvelo identity's")
			}
			return n, t, CheckName("identity", n)
		}
	}
	return "", "", fmt.Errorf("no %q line: not a marvelo credentials file", strings.TrimSpace(credsTokenPrefix))
}

// From is the subject a worker publishes a control message on: the shared subject (SubjRegister,
// SubjDeregister, SubjJobState, or the heartbeat prefix without its dot) and its own name, so
// that the broker's permissions let each worker speak only for itself.
func From(subject, worker string) string { return strings.TrimSuffix(subject, ".") + "." + worker }

// Sender returns the worker a control message published on From(subject, worker) came from.
func Sender(subject string) string { return subject[strings.LastIndexByte(subject, '.')+1:] }

// InboxPrefix is the inbox prefix of an identity's connections: the broker lets an identity
// subscribe to its own inboxes only, so the answers it gets (request replies, pulled pipe blocks)
// are readable by it alone.
func InboxPrefix(identity string) string { return "_INBOX." + identity }

// BrokerInboxPrefix is the inbox prefix of the broker's own connection: workers answer the
// broker's requests there (their permissions allow it; the inboxes are random and no worker can
// read the requests that carry them).
const BrokerInboxPrefix = "_INBOX_marvelo_broker"
