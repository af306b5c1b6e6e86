package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Announcements to a group: `marvelo drain --group G [--shutdown]` reaches every worker of the
// group at once on the group's subject (the subjects offers use, protocol.GroupSubject), with
// the scatter-gather of placement.

// drainGroup drains every live worker of a group as drainWorker drains one: each is cordoned,
// told on the group's subject to end its jobs (bounded by LeaveGrace), and its jobs move. With
// shutdown the workers are then told to stop, as on SIGTERM.
func (c *control) drainGroup(ctx context.Context, group string, shutdown bool) protocol.DrainReply {
	c.mu.Lock()
	members := map[string]bool{}
	for name, w := range c.workers {
		if w.alive && w.info.InGroup(group) {
			members[name] = true
			w.cordoned = true
		}
	}
	moving := c.jobsOn(members)
	c.mu.Unlock()
	if len(members) == 0 {
		return protocol.DrainReply{Reply: protocol.Reply{Error: fmt.Sprintf("no live worker in group %q", group)}}
	}
	c.log.Info("draining group", "group", group, "workers", len(members), "jobs", len(moving), "shutdown", shutdown)
	missing := c.announce(ctx, group, protocol.VerbGroupLeave, protocol.LeaveRequest{Grace: protocol.LeaveGrace}, members, protocol.LeaveGrace+5*time.Second)
	if len(missing) > 0 {
		// They did not confirm their jobs ended: the jobs move anyway, as when a worker dies; a
		// stale instance is fenced by its epoch and told to stop when it heartbeats.
		c.log.Warn("workers did not confirm their jobs ended; moving them anyway", "group", group, "workers", missing)
	}
	names := make([]string, 0, len(members))
	for w := range members {
		names = append(names, w)
	}
	sort.Strings(names)
	for _, w := range names {
		c.workerLost(w, "was drained with group "+group)
	}
	if shutdown {
		if missing := c.announce(ctx, group, protocol.VerbGroupShutdown, struct{}{}, members, 5*time.Second); len(missing) > 0 {
			c.log.Warn("workers did not confirm the shutdown", "group", group, "workers", missing)
		}
	}
	return c.drainOutcome(moving, members)
}

// announce tells every worker of members on the group's subject and waits, at most wait, for
// their answers; it returns those that did not answer or refused.
func (c *control) announce(ctx context.Context, group, verb string, req any, members map[string]bool, wait time.Duration) []string {
	var refused []string
	missing := c.scatter(ctx, protocol.GroupSubject(group, verb), req, members, wait, func(data []byte) error {
		var r protocol.GroupReply
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		if err := r.Err(); err != nil {
			c.log.Warn("group announcement refused", "group", group, "verb", verb, "worker", r.Worker, "error", err)
			refused = append(refused, r.Worker)
		}
		return nil
	})
	return append(missing, refused...)
}
