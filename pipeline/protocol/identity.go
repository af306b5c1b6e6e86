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

// A credentials file holds one identity: its name, its role (a comment: the broker decides what
// the identity may do; the role only lets the marvelo commands say who lacked a right) and its
// token.
const (
	credsNamePrefix  = "# marvelo identity: "
	credsRolePrefix  = "# marvelo role: "
	credsTokenPrefix = "token: "
)

// FormatCreds returns the credentials file of identity name, enrolled with role (the broker's
// broker.RoleWorker, RoleOperator or RoleReader), with its secret.
func FormatCreds(name, role, secret string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s%s\n", credsNamePrefix, name)
	if role != "" {
		fmt.Fprintf(&b, "%s%s\n", credsRolePrefix, role)
	}
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

// CredsRole returns the role a credentials file names ("worker", "operator" or "reader"), or ""
// for a file written before the role was noted there.
func CredsRole(data []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if r, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), strings.TrimSpace(credsRolePrefix)); ok {
			return strings.TrimSpace(r)
		}
	}
	return ""
}

// DescribeRole names an identity's role in a message: "a worker", "an operator", "a read-only
// operator" for the broker's broker.RoleWorker, RoleOperator and RoleReader; "" for any other.
func DescribeRole(role string) string {
	switch role {
	case "worker":
		return "a worker"
	case "operator":
		return "an operator"
	case "reader":
		return "a read-only operator"
	}
	return ""
}

// The JetStream API subjects a reader of LogStream publishes to (client.ReadLogs): the stream's
// info, and direct gets of its lines (LogDirectGetSubject, or the same with ".SUBJECT"
// appended). Reading the logs takes no consumer, whose deliver subject could point anywhere.
const (
	LogStreamInfoSubject = jsStreamInfo + LogStream // JSStreamInfo(LogStream)
	LogDirectGetSubject  = jsDirectGet + LogStream  // JSDirectGet(LogStream)
)

// Right says whose right it is to publish to, or subscribe to, a subject of the marvelo API,
// for the error of an identity that lacked it: "stopping pipelines is an operator's right".
// It is "" for a subject it does not know.
func Right(subject string) string {
	const op, reader = "an operator's right", "an operator's or a read-only operator's right"
	switch subject {
	case SubjIdentityAdd:
		return "enrolling identities is " + op
	case SubjIdentityRemove:
		return "removing identities is " + op
	case SubjSubmit:
		return "submitting pipelines is " + op
	case SubjStop:
		return "stopping pipelines is " + op
	case SubjReset:
		return "resetting a pipeline's sources is " + op
	case SubjDrain:
		return "draining workers is " + op
	case SubjUncordon:
		return "uncordoning workers is " + op
	case SubjRemove:
		return "removing pipelines is " + op
	case SubjStatus:
		return "reading the status of pipelines is " + reader
	case SubjWorkers:
		return "listing the workers is " + reader
	case LogStreamInfoSubject, LogDirectGetSubject:
		return "reading the logs is " + reader
	}
	tokens := strings.Split(subject, ".")
	switch {
	case strings.HasPrefix(subject, LogDirectGetSubject+"."):
		return "reading the logs is " + reader
	case len(tokens) >= 4 && tokens[0] == "marvelo" && tokens[2] == "log":
		return "following the logs is " + reader
	case len(tokens) == 3 && tokens[0] == "marvelo" && tokens[2] == "event":
		return "following a pipeline's events is " + reader
	}
	return ""
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
