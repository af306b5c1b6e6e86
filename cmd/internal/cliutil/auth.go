package cliutil

import (
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker"
)

// AuthFlags are the two ways a command proves who it is to the broker: the shared operator token,
// or the credentials file of an enrolled identity (marvelo-broker operator add / worker add).
func AuthFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "auth-token", EnvVars: []string{"MARVELO_AUTH_TOKEN"}, Usage: "token the broker requires"},
		&cli.StringFlag{Name: "creds", EnvVars: []string{"MARVELO_CREDS"}, Usage: "credentials file of an enrolled identity, instead of --auth-token"},
	}
}

// AuthOptions are the connection options for the AuthFlags given.
func AuthOptions(c *cli.Context) ([]nats.Option, error) {
	var opts []nats.Option
	if t := c.String("auth-token"); t != "" {
		opts = append(opts, nats.Token(t))
	}
	if f := c.String("creds"); f != "" {
		_, copts, err := worker.Creds(f)
		if err != nil {
			return nil, UsageError(err)
		}
		opts = append(opts, copts...)
	}
	return opts, nil
}

// Connect connects a command, as the client named name, to the broker of --broker with the
// AuthFlags and --tls-ca given, and returns the connection and the broker API's client on it.
// With --creds, the client names that identity in its permission errors.
func Connect(c *cli.Context, name string) (*nats.Conn, *client.Client, error) {
	opts := []nats.Option{nats.Name(name), nats.Timeout(5 * time.Second)}
	auth, err := AuthOptions(c)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, auth...)
	if ca := c.String("tls-ca"); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	var id client.Identity
	if f := c.String("creds"); f != "" {
		if id, err = credsIdentity(f); err != nil {
			return nil, nil, UsageError(err)
		}
	}
	url := c.String("broker")
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, Failure(worker.DescribeConnectError(url, err))
	}
	cl := client.New(nc)
	cl.Identity = id
	return nc, cl, nil
}

// credsIdentity is the identity a credentials file holds: its name and, when the file notes it,
// its role.
func credsIdentity(file string) (client.Identity, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return client.Identity{}, fmt.Errorf("credentials: %w", err)
	}
	name, _, err := protocol.ParseCreds(data)
	if err != nil {
		return client.Identity{}, fmt.Errorf("credentials %s: %w", file, err)
	}
	return client.Identity{Name: name, Role: protocol.CredsRole(data)}, nil
}
