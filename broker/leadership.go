package broker

// What a broker of a cluster does with the lead (DESIGN.md §8a). The election itself — the
// leader key, its lease and renewals, the members' announcements — is package broker/leader;
// here a broker campaigns in it, runs its control plane during each term it wins (fenced by the
// term: it stops acting when the term no longer holds), records the takeover in the pipelines,
// hands each term to WhileLeader, and keeps the Raft leaders away from itself (leader.go).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/broker/leader"
)

// The election's bucket holds the leader key and the brokers' announcements (access_cluster.go
// reads the live brokers' names from it).
const (
	leaderBucket = leader.Bucket
	memberPrefix = leader.MemberPrefix
)

// errNotLeader is what a fenced control plane's writes and orders fail with.
var errNotLeader = errors.New("broker: this broker no longer leads the control plane")

// fenced reports whether a control plane may still act: nil for a broker alone, or while its
// term of leadership lasts.
func (o *Options) fenced() error {
	if o.fence == nil {
		return nil
	}
	return o.fence()
}

// campaign runs until ctx ends: it announces this broker, campaigns for the lead, and runs the
// control plane during each term it wins.
func (b *Broker) campaign(ctx context.Context) {
	js, err := jetstream.New(b.nc)
	if err != nil {
		b.log.Error("leader election", "error", err)
		return
	}
	member, _ := json.Marshal(ClusterMember{Server: b.serverName(), URL: b.ClientURL(), Started: time.Now(), Local: b.opts.PinnedLocal})
	leader.Campaign(ctx, js, leader.Config{
		Name:     b.serverName(),
		Replicas: b.opts.Replicas,
		Member:   member,
		Deferral: b.deferral,
		Lead:     func(t *leader.Term) { b.lead(ctx, t) },
		Log:      b.log,
	})
}

// deferral is how long this broker waits, once it sees no leader, before it campaigns: the
// broker that runs the LOCAL worker whoever leads (--local) waits longest, so that the leader's
// death does not also take the LOCAL jobs; the broker whose server is the JetStream meta leader
// waits too, so that the leader's death does not also stall JetStream for a meta election.
// Others campaign at once.
func (b *Broker) deferral() time.Duration {
	switch {
	case b.opts.PinnedLocal:
		return 3 * time.Second
	case b.ns != nil && b.ns.JetStreamIsLeader():
		return 300 * time.Millisecond
	}
	return 0
}

// lead is one term: it runs the control plane until the term ends (the lead lost, or ctx ended:
// the election then gives the key up so a standby takes over at once). A control plane that
// does not start gives the lead up.
func (b *Broker) lead(ctx context.Context, t *leader.Term) {
	b.log.Info("won the leader election", "server", b.serverName(), "jetstream_meta_leader", b.ns != nil && b.ns.JetStreamIsLeader())
	term := t.Context()
	opts := b.opts
	opts.fence = func() error {
		if !t.Held() {
			return errNotLeader
		}
		return nil
	}
	ctl, err := newControl(term, b.nc, opts, b.log)
	if err != nil {
		b.log.Error("control plane did not start; giving up the lead", "error", err)
		t.Resign()
		return
	}
	b.log.Info("leading the control plane", "server", b.serverName())
	ctl.takeover(b.serverName())
	var wg sync.WaitGroup
	defer wg.Wait()
	if b.ns != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.keepRaftLeadersAway(term, t)
		}()
	}
	select {
	case <-b.terms: // a term nobody took up has ended
	default:
	}
	b.terms <- term
	ctl.run(term)
	if ctx.Err() != nil {
		b.log.Info("control plane stopped; giving up the lead", "server", b.serverName())
		return
	}
	b.log.Warn("leadership lost: control plane stopped", "server", b.serverName())
}

// takeoverGrace is how long after a takeover the workers of the saved state keep their jobs
// without a heartbeat: a worker that lost its server reconnects and registers again first, with
// retries that back off to 5 s while no control plane answers, before it heartbeats again.
const takeoverGrace = 5 * time.Second

// takeover records, in every pipeline still going, that this broker's control plane now acts,
// and gives the workers of the saved state the grace to speak again.
func (c *control) takeover(server string) {
	c.mu.Lock()
	for _, w := range c.workers {
		if !w.confirmed {
			w.lastSeen = time.Now().Add(takeoverGrace)
		}
	}
	var names []string
	for name, p := range c.pipelines {
		if !p.state.terminal() {
			names = append(names, name)
		}
	}
	c.mu.Unlock()
	sort.Strings(names)
	for _, name := range names {
		c.event(name, 0, "takeover", fmt.Sprintf("broker %s took over the control plane", server))
	}
	// Deliveries in flight through the dead leader's server are lost; their workers' inputs
	// hold the later blocks until they come again. Hurry them now for every recovered job, not
	// when each worker registers again (seconds later, its retries backing off meanwhile).
	c.resumeRecovered("")
}

// WhileLeader runs fn during each term in which this broker leads the control plane, with a
// context that ends with the term, until ctx ends. A broker alone leads as long as it runs.
func (b *Broker) WhileLeader(ctx context.Context, fn func(context.Context) error) error {
	if !b.elects() {
		return fn(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case term := <-b.terms:
			tctx, cancel := context.WithCancel(term)
			stop := context.AfterFunc(ctx, cancel)
			err := fn(tctx)
			stop()
			cancel()
			if err != nil && tctx.Err() == nil {
				return err
			}
		}
	}
}
