package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// enrolFlags reach the running broker as its operator.
func enrolFlags() []cli.Flag {
	return append(cliutil.AuthFlags(),
		&cli.StringFlag{Name: "broker", Value: nats.DefaultURL, EnvVars: []string{"MARVELO_BROKER"}, Usage: "NATS URL of the running broker"},
		&cli.StringFlag{Name: "tls-ca", Usage: "CA certificate to verify the broker's TLS certificate"},
		&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Usage: "credentials file to write (default NAME.creds)"},
	)
}

func identityCommands() []*cli.Command {
	add := func(role, usage, desc string, extra ...cli.Flag) *cli.Command {
		return &cli.Command{
			Name: "add", Usage: usage, ArgsUsage: "NAME", Description: desc,
			Flags: append(enrolFlags(), extra...),
			Action: func(c *cli.Context) error {
				r := role
				if c.Bool("read-only") {
					r = broker.RoleReader
				}
				return addIdentity(c, r, c.StringSlice("groups"))
			},
		}
	}
	remove := &cli.Command{
		Name: "remove", Usage: "remove an identity: its connections are closed and it cannot connect again", ArgsUsage: "NAME",
		Description: `Example:
   marvelo-broker worker remove mic1 --auth-token "$TOKEN"`,
		Flags: enrolFlags(), Action: removeIdentity,
	}
	return []*cli.Command{
		{
			Name: "worker", Usage: "enrol or remove a worker identity",
			Subcommands: []*cli.Command{add(broker.RoleWorker, "enrol a worker: write its credentials file",
				`Makes a new secret for worker NAME, tells the running broker its SHA-256, and writes the
credentials file (the secret) that the worker presents with marvelo-worker --creds FILE.
The worker may then publish and read only the subjects of the jobs placed on it. With --groups,
it may register with those groups only (a registration naming another is refused); without, with
any. A worker identity never registers as the head node's worker (local) nor of every group (any).

Example:
   marvelo-broker worker add mic1 --groups mic --auth-token "$TOKEN" --out mic1.creds
   scp mic1.creds mic1:   # then on mic1:
   marvelo-worker --broker nats://head:4222 --creds mic1.creds --groups mic`,
				&cli.StringSliceFlag{Name: "groups", Usage: "the only groups it may register with, comma-separated (default: any)"}), remove},
		},
		{
			Name: "operator", Usage: "enrol or remove an operator identity (marvelo submit/stop/... --creds FILE)",
			Subcommands: []*cli.Command{add(broker.RoleOperator, "enrol an operator: write its credentials file",
				`Makes a new secret for operator NAME, tells the running broker its SHA-256, and writes the
credentials file that the marvelo command presents with --creds FILE. An operator may do
everything; with --read-only, only marvelo status, workers, logs and top.

Example:
   marvelo-broker operator add alice --auth-token "$TOKEN"
   marvelo-broker operator add dashboard --read-only --auth-token "$TOKEN" --out dashboard.creds`,
				&cli.BoolFlag{Name: "read-only", Usage: "may run status, workers, logs and top only"}), remove},
		},
	}
}

func addIdentity(c *cli.Context, role string, groups []string) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := protocol.CheckName("group", g); err != nil {
			return cliutil.UsageError(err)
		}
	}
	out := c.String("out")
	if out == "" {
		out = name + ".creds"
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return cliutil.Failure(fmt.Errorf("new secret: %w", err))
	}
	secret := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(secret))
	// Create the file first: a name the broker knows but whose key was never written is useless.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return cliutil.Failure(fmt.Errorf("credentials file: %w", err))
	}
	if err := call(c, "enrol "+role+" "+name, protocol.SubjIdentityAdd, broker.Identity{Name: name, Role: role, Hash: hex.EncodeToString(sum[:]), Groups: groups}); err != nil {
		f.Close()
		os.Remove(out)
		return err
	}
	_, werr := f.Write(protocol.FormatCreds(name, role, secret))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return cliutil.Failure(fmt.Errorf("credentials file %s: %w", out, werr))
	}
	fmt.Fprintf(c.App.Writer, "%s %s enrolled; credentials in %s (keep it secret)\n", role, name, out)
	return nil
}

func removeIdentity(c *cli.Context) error {
	name, err := oneName(c)
	if err != nil {
		return err
	}
	if err := call(c, "remove identity "+name, protocol.SubjIdentityRemove, broker.Identity{Name: name}); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s removed\n", name)
	return nil
}

func oneName(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", cliutil.UsageError(errors.New("expected one NAME"))
	}
	name := c.Args().First()
	if err := protocol.CheckName("identity", name); err != nil {
		return "", cliutil.UsageError(err)
	}
	return name, nil
}

// call sends one enrolment request to the running broker, as the token or identity given; what
// names the request in its errors ("enrol worker mic1").
func call(c *cli.Context, what, subject string, req broker.Identity) error {
	nc, cl, err := cliutil.Connect(c, "marvelo-broker enrol")
	if err != nil {
		return err
	}
	defer nc.Close()
	cl.Timeout = 10 * time.Second
	var r protocol.Reply
	if err := cl.Call(c.Context, subject, req, &r); err != nil {
		if errors.Is(err, client.ErrNoBroker) {
			err = fmt.Errorf("the broker does not enrol identities: start it with --auth-token (%w)", err)
		}
		return cliutil.Failure(fmt.Errorf("%s: %w", what, err))
	}
	if err := r.Err(); err != nil {
		return cliutil.Failure(fmt.Errorf("%s: %w", what, err))
	}
	return nil
}
