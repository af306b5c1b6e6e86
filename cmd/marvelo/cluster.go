package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/cmd/internal/cliutil"
)

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "show the head nodes of a cluster of brokers and the one leading",
		Description: `Shows which broker's control plane acts (the leader), the brokers that are up, and the NATS
servers holding a copy of the control plane's state (current or catching up). A broker started
alone has no cluster.

Example:
   marvelo cluster --broker nats://h1:4222,nats://h2:4222,nats://h3:4222`,
		Flags: append(brokerFlags(), &cli.BoolFlag{Name: "json", Usage: "print JSON for scripts"}),
		Action: func(c *cli.Context) error {
			nc, _, err := connect(c)
			if err != nil {
				return err
			}
			defer nc.Close()
			v, err := broker.ReadCluster(c.Context, nc)
			if err != nil {
				return cliutil.Failure(err)
			}
			if c.Bool("json") {
				return printJSON(v)
			}
			leader := v.Leader
			if leader == "" {
				leader = "(none: an election is under way)"
			} else {
				leader += fmt.Sprintf(" (since %s)", v.LeaderSince.Format(time.TimeOnly))
			}
			fmt.Printf("leader: %s\n", leader)
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BROKER\tURL\tUP FOR\tROLE")
			for _, b := range v.Brokers {
				role := "standby"
				if b.Server == v.Leader {
					role = "leader"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Server, b.URL, time.Since(b.Started).Round(time.Second), role)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			var peers []string
			for _, p := range v.Peers {
				s := p.Server
				switch {
				case p.Leader:
					s += " (raft leader)"
				case !p.Current:
					s += " (behind)"
				}
				peers = append(peers, s)
			}
			fmt.Printf("state: %d replicas on %s\n", v.Replicas, strings.Join(peers, ", "))
			return nil
		},
	}
}
