package cliutil

import (
	"github.com/nats-io/nats.go"
	"github.com/urfave/cli/v2"

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
