package client

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Identity is who a connection is: an enrolled identity's name and role, as its credentials file
// gives them (protocol.ParseCreds, protocol.CredsRole). The zero Identity is a shared token's.
type Identity struct {
	Name string
	Role string // "worker", "operator" or "reader"; "" when the credentials file does not say
}

// String names the identity in a message: `identity "w1" (a worker)`.
func (id Identity) String() string {
	if id.Name == "" {
		return "the shared token"
	}
	s := fmt.Sprintf("identity %q", id.Name)
	if role := protocol.DescribeRole(id.Role); role != "" {
		s += " (" + role + ")"
	}
	return s
}

// What the server may refuse a connection: PermissionError.Op.
const (
	OpPublish   = "publish to"
	OpSubscribe = "subscribe to"
)

// PermissionError is the server's refusal, for lack of permission, of a publish or subscription
// a request needed. Its message names the identity, what it may not do and whose right that is:
// `permission denied: identity "w1" (a worker) may not publish to marvelo.api.identity.add:
// enrolling identities is an operator's right`.
type PermissionError struct {
	Identity Identity
	Op       string // OpPublish or OpSubscribe
	Subject  string
	Server   string // the server's words, when they name no subject this client knows how to read
}

func (e *PermissionError) Error() string {
	if e.Subject == "" {
		return fmt.Sprintf("permission denied: %s was refused: %s", e.Identity, e.Server)
	}
	msg := fmt.Sprintf("permission denied: %s may not %s %s", e.Identity, e.Op, e.Subject)
	if right := protocol.Right(e.Subject); right != "" {
		msg += ": " + right
	}
	return msg
}

// Unwrap makes a PermissionError a nats.ErrPermissionViolation.
func (e *PermissionError) Unwrap() error { return nats.ErrPermissionViolation }

// ErrNoBroker: nobody answered a request to the broker, even sent again for noResponderWait.
var ErrNoBroker = errors.New("no broker answers")

// A guard cuts short what waits on a publish or subscription the server refuses.
type guard struct {
	op, subject string
	refuse      context.CancelCauseFunc
}

// guard returns ctx, ended with a *PermissionError as its cause as soon as the server refuses
// this connection op on subject (or, when the server's words name no subject, refuses anything);
// release forgets the guard.
func (c *Client) guard(ctx context.Context, op, subject string) (context.Context, func()) {
	ctx, refuse := context.WithCancelCause(ctx)
	g := &guard{op: op, subject: subject, refuse: refuse}
	c.mu.Lock()
	c.guards[g] = struct{}{}
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		delete(c.guards, g)
		c.mu.Unlock()
		refuse(nil)
	}
}

// refusal returns the *PermissionError that ended ctx, or nil.
func refusal(ctx context.Context) error {
	var pe *PermissionError
	if errors.As(context.Cause(ctx), &pe) {
		return pe
	}
	return nil
}

// violationRE reads the server's "Permissions Violation for Publish to "SUBJECT"" (or "for
// Subscription to"), as nats.go hands it to the error handler.
var violationRE = regexp.MustCompile(`(?i)violation for (publish|subscription) to "([^"]*)"`)

// refused is the connection's error handler: a permission violation ends the guards it names.
func (c *Client) refused(err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	pe := &PermissionError{Identity: c.Identity}
	if m := violationRE.FindStringSubmatch(err.Error()); m != nil {
		pe.Op, pe.Subject = OpPublish, m[2]
		if strings.EqualFold(m[1], "subscription") {
			pe.Op = OpSubscribe
		}
	} else {
		pe.Server = err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for g := range c.guards {
		if pe.Subject == "" || (g.op == pe.Op && g.subject == pe.Subject) {
			g.refuse(pe)
		}
	}
}

// noResponderWait bounds how long a request is sent again while nobody listens: a standby
// taking over (within about 2 s) or a broker that just restarted and whose subscriptions are not
// yet known to the server the client is connected to. Past it the error says so; a longer wait
// would only delay the answer "no broker" when there is none.
const noResponderWait = 3 * time.Second

// Request sends data on subject and returns the reply, within timeout. Every request of the
// marvelo commands goes through it (Call, and the client's methods): while nobody listens it
// sends again for a while (ErrNoBroker past it), and when the server refuses it for lack of
// permission it fails at once with a *PermissionError naming the identity and the right it
// lacks.
func (c *Client) Request(ctx context.Context, timeout time.Duration, subject string, data []byte) (*nats.Msg, error) {
	var reply *nats.Msg
	err := c.exchange(ctx, timeout, subject, data, func(m *nats.Msg) (bool, error) {
		reply = m
		return true, nil
	})
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("%w on %s: is marvelo-broker running?", ErrNoBroker, c.nc.ConnectedUrlRedacted())
	}
	return reply, err
}

// exchange is Request with any number of replies: it sends data on subject with an inbox of
// its own as the reply subject, and hands each reply to onReply until onReply is done (or
// fails), within timeout. While nobody listens (the server's no-responders status) it sends
// again every 100 ms for noResponderWait, then fails with nats.ErrNoResponders: nobody
// received it, so sending again is safe for every request, a submit included. A refusal of
// the publish, or of the inbox's subscription, ends it at once with a *PermissionError.
func (c *Client) exchange(ctx context.Context, timeout time.Duration, subject string, data []byte, onReply func(*nats.Msg) (done bool, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	inbox := c.nc.NewInbox()
	ctx, releasePub := c.guard(ctx, OpPublish, subject)
	defer releasePub()
	ctx, releaseSub := c.guard(ctx, OpSubscribe, inbox)
	defer releaseSub()
	sub, err := c.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("%s: reply inbox: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	fail := func(err error) error {
		if pe := refusal(ctx); pe != nil {
			return pe
		}
		return fmt.Errorf("%s: %w", subject, err)
	}
	until := time.Now().Add(noResponderWait)
	again := backoff.Backoff{First: 100 * time.Millisecond, Max: 100 * time.Millisecond}
	for {
		if err := c.nc.PublishRequest(subject, inbox, data); err != nil {
			return fail(err)
		}
		for {
			m, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return fail(err)
			}
			if noResponders(m) {
				break
			}
			if done, err := onReply(m); done || err != nil {
				return err
			}
		}
		if time.Now().After(until) || !again.Wait(ctx) {
			return fail(nats.ErrNoResponders)
		}
	}
}

// noResponders reports whether m is the server's answer that nobody listens on the subject.
func noResponders(m *nats.Msg) bool {
	return len(m.Data) == 0 && m.Header.Get("Status") == "503"
}
