package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Placement by offer (DESIGN.md §8). A job is offered to its `node`, then to each of its groups
// in priority order, on the group's subject (scatter-gather, OfferWait at most); the workers that
// can take it now answer with their load, the others say why not. The broker ranks the bids by
// its rule (most free CPU, then memory, then free slots) and reserves a slot on the best bidder;
// the worker's acceptance of the reservation is what books the slot, so two placements at once
// never double-book a worker, and no placement relies on a slot count seen in a heartbeat.

// offerWait bounds how long an offer waits for the bids of a group's workers: the collection ends
// sooner once every live worker the registry knows in the group has answered.
const offerWait = time.Second

// target is where a job is offered: its node, or one of its groups.
type target struct {
	node  string // the job's node: offered on its own subject
	group string
}

func (t target) subject() string {
	if t.node != "" {
		return protocol.WorkerSubject(t.node, protocol.VerbOffer)
	}
	return protocol.GroupSubject(t.group, protocol.VerbOffer)
}

func (t target) String() string {
	if t.node != "" {
		return "node " + t.node
	}
	return "group " + t.group
}

// targets lists where a job is offered, in order: its node, then its groups by priority.
func targets(j *pipeline.Job) []target {
	var out []target
	if j.Node != "" {
		out = append(out, target{node: j.Node})
	}
	for _, g := range j.EffectiveGroups() {
		out = append(out, target{group: g})
	}
	return out
}

// rankBids orders the bids that can take a job, best first: most free CPU, then most free
// memory, then most free slots, then by name (a stable choice).
func rankBids(bids []protocol.Bid) []protocol.Bid {
	out := make([]protocol.Bid, 0, len(bids))
	for _, b := range bids {
		if b.OK {
			out = append(out, b)
		}
	}
	sort.SliceStable(out, func(i, k int) bool {
		a, b := out[i], out[k]
		if a.Metrics.CPUFree != b.Metrics.CPUFree {
			return a.Metrics.CPUFree > b.Metrics.CPUFree
		}
		if a.Metrics.MemFree != b.Metrics.MemFree {
			return a.Metrics.MemFree > b.Metrics.MemFree
		}
		if a.Free != b.Free {
			return a.Free > b.Free
		}
		return a.Worker < b.Worker
	})
	return out
}

// placeJobs offers every job of doc, producers before their consumers (pipeline.PlacementOrder),
// and reserves a slot for each, or returns why one cannot be placed, having released what it
// reserved: placement is all or nothing. A job is offered first to the worker of its chain
// producer, so that chains form (chain.go). No lock is held: callers do not hold mu.
func (c *control) placeJobs(ctx context.Context, doc *pipeline.Pipeline, epoch uint64) (map[int]string, string) {
	ends := doc.Endpoints()
	placement := map[int]string{}
	for _, id := range doc.PlacementOrder() {
		j := doc.JobByID(id)
		pref := preferenceOf(doc, ends, id, func(job int) string { return placement[job] })
		w, why := c.offerJobPreferring(ctx, doc.Name, j, epoch, pref)
		if w == "" {
			c.releaseReservations(doc.Name, placement, epoch)
			return nil, fmt.Sprintf("%s: %s", j.Label(), why)
		}
		placement[id] = w
	}
	return placement, ""
}

// offerJob finds a worker for one job, with no preference among the bidders (offerJobPreferring).
func (c *control) offerJob(ctx context.Context, pipelineName string, j *pipeline.Job, epoch uint64) (string, string) {
	return c.offerJobPreferring(ctx, pipelineName, j, epoch, preference{})
}

// offerJobPreferring finds a worker for one job and reserves its slot: each target in order, the
// best bid first (rankBids, then the job's preference among them), the next when a reservation is
// refused (its slot went meanwhile). It returns the worker, or "" and why nobody took the job
// (each worker's reason). No lock is held.
func (c *control) offerJobPreferring(ctx context.Context, pipelineName string, j *pipeline.Job, epoch uint64, pref preference) (string, string) {
	offer := protocol.Offer{Pipeline: pipelineName, Epoch: epoch, Job: *j}
	ref := protocol.JobRef{Pipeline: pipelineName, Job: j.ID, Epoch: epoch}
	var why []string
	for _, t := range targets(j) {
		offer.Group = t.group
		bids, missing := c.gather(ctx, t, offer, j)
		var reasons []string
		for _, b := range pref.order(rankBids(bids)) {
			err := c.requestWorker(ctx, b.Worker, protocol.VerbReserve, ref)
			if err == nil {
				return b.Worker, ""
			}
			reasons = append(reasons, fmt.Sprintf("worker %s: %v", b.Worker, err))
		}
		for _, b := range bids {
			if !b.OK {
				reasons = append(reasons, fmt.Sprintf("worker %s: %s", b.Worker, b.Reason))
			}
		}
		for _, w := range missing {
			reasons = append(reasons, fmt.Sprintf("worker %s: no answer within %s", w, offerWait))
		}
		if len(missing) > 0 {
			c.offerMissed.Store(true) // placement is tried again: see run
		}
		switch {
		case len(reasons) == 0 && t.node != "":
			reasons = append(reasons, "not a live worker that may take it")
		case len(reasons) == 0:
			reasons = append(reasons, "no live worker")
		}
		why = append(why, fmt.Sprintf("%s: %s", t, strings.Join(reasons, "; ")))
	}
	return "", fmt.Sprintf("no worker took %s job: %s", jobKind(j), strings.Join(why, "; "))
}

// gather sends an offer to a target and collects the bids of the workers that may take the job
// (alive, not cordoned, in the group; for a node, that worker if the job may go there) until each
// live worker of the target has answered or offerWait has passed; missing names those that did
// not answer. Bids from anyone else are dropped.
func (c *control) gather(ctx context.Context, t target, offer protocol.Offer, j *pipeline.Job) (bids []protocol.Bid, missing []string) {
	missing = c.scatter(ctx, t.subject(), offer, c.offerees(t, j), offerWait, func(data []byte) error {
		var b protocol.Bid
		if err := json.Unmarshal(data, &b); err != nil {
			return err
		}
		bids = append(bids, b)
		return nil
	})
	return bids, missing
}

// scatter publishes one request to many workers at once (a group's subject) and hands the first
// answer of each expected worker (named by the answer's "worker" field) to each, until every
// expected worker has answered or wait has passed; it returns the expected workers that did not
// answer. Answers from anyone else are dropped. Used by offers and by announcements to a group.
func (c *control) scatter(ctx context.Context, subject string, req any, expected map[string]bool, wait time.Duration, each func([]byte) error) []string {
	if len(expected) == 0 {
		return nil
	}
	names := func(pick func(string) bool) []string {
		var out []string
		for w := range expected {
			if pick(w) {
				out = append(out, w)
			}
		}
		sort.Strings(out)
		return out
	}
	all := func(string) bool { return true }
	if err := c.opts.fenced(); err != nil {
		return names(all) // another broker's control plane acts now (leader.go)
	}
	data, err := json.Marshal(req)
	if err != nil {
		c.log.Error("request not encoded", "subject", subject, "error", err)
		return names(all)
	}
	inbox := c.nc.NewRespInbox()
	ch := make(chan *nats.Msg, len(expected)+8)
	sub, err := c.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		c.log.Warn("request not sent", "subject", subject, "error", err)
		return names(all)
	}
	defer sub.Unsubscribe()
	if err := c.nc.PublishRequest(subject, inbox, data); err != nil {
		c.log.Warn("request not sent", "subject", subject, "error", err)
		return names(all)
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	answered := map[string]bool{}
	for len(answered) < len(expected) {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
			return names(func(w string) bool { return !answered[w] })
		case m := <-ch:
			var who struct {
				Worker string `json:"worker"`
			}
			if err := json.Unmarshal(m.Data, &who); err != nil || !expected[who.Worker] || answered[who.Worker] {
				continue // not one of those asked, or its second answer
			}
			if err := each(m.Data); err != nil {
				c.log.Warn("bad answer", "subject", subject, "worker", who.Worker, "error", err)
				continue
			}
			answered[who.Worker] = true
		}
	}
	return nil
}

// offerees are the workers the registry knows may take a job offered to a target now: alive,
// not cordoned, heard since they registered (so subscribed to their groups), in the group (for the node, the node itself unless a LOCAL job may not go there).
func (c *control) offerees(t target, j *pipeline.Job) map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for name, w := range c.workers {
		if !w.alive || w.cordoned || !w.bidding {
			continue
		}
		switch {
		case t.node != "":
			if name == t.node && (w.info.Local || w.info.Any || !j.IsLocal()) {
				out[name] = true
			}
		case w.info.InGroup(t.group):
			out[name] = true
		}
	}
	return out
}

// releaseReservations gives back the slots reserved for jobs of a pipeline that is not placed
// after all (a VerbStop naming a reserved job releases its slot).
func (c *control) releaseReservations(pipelineName string, placement map[int]string, epoch uint64) {
	for id, w := range placement {
		if w == "" {
			continue
		}
		ref := protocol.JobRef{Pipeline: pipelineName, Job: id, Epoch: epoch}
		if err := c.requestWorker(context.Background(), w, protocol.VerbStop, ref); err != nil {
			c.log.Warn("reserved slot not released; it expires", "worker", w, "pipeline", pipelineName, "job", id, "error", err, "after", protocol.ReserveTTL)
		}
	}
}

func jobKind(j *pipeline.Job) string {
	switch {
	case j.Exec != nil:
		return fmt.Sprintf("executable %q", j.Exec.Path)
	case j.Python != nil:
		return fmt.Sprintf("Python class %q", j.Python.Class)
	}
	return fmt.Sprintf("%q", j.Type)
}
