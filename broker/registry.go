package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// The worker registry and liveness: workers join, heartbeat, leave or go silent.

type workerState struct {
	info     protocol.WorkerInfo
	lastSeen time.Time // the liveness clock: a loaded worker gets a heartbeat timeout from the load
	// heard is when this worker was last heard (heartbeat or registration), by this broker or,
	// for a worker saved dead, by the one before a restart; zero: unknown (alive when the broker
	// stopped, and silent since). marvelo workers shows it, never the liveness clock.
	heard   time.Time
	metrics protocol.Metrics
	alive   bool
	// confirmed is false for a worker loaded from the saved state until it speaks again.
	confirmed bool
	// cordoned: drained or leaving; it takes no new job (marvelo uncordon clears it).
	cordoned bool
	// staleTold holds the stale instances this worker was told to stop, so each is told (and
	// recorded as an event) once, not at every heartbeat.
	staleTold map[protocol.JobRef]bool
	// bidding: the worker has heartbeated since it registered. A worker subscribes to its groups'
	// offers once registered and before its first heartbeat, so from then on it bids (placement
	// by offer, scheduler.go); its first heartbeat kicks the placement of what is pending.
	bidding bool
}

// sameInstance reports whether two registrations come from the same worker process.
func sameInstance(a, b protocol.WorkerInfo) bool {
	return a.PID == b.PID && a.Host == b.Host && a.Started.Equal(b.Started)
}

func (c *control) handleRegister(m *nats.Msg) any {
	var info protocol.WorkerInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return protocol.Reply{Error: "register: " + err.Error()}
	}
	if err := senderIs(m.Subject, info.Name); err != nil { // access (issue 12)
		return protocol.Reply{Error: err.Error()}
	}
	if err := protocol.CheckName("worker", info.Name); err != nil {
		return protocol.Reply{Error: err.Error()}
	}
	if err := info.CheckGroups(); err != nil {
		return protocol.Reply{Error: fmt.Sprintf("register %s: %v", info.Name, err)}
	}
	if err := c.access.checkClaims(info); err != nil { // issue 22: no flag it may not claim
		return protocol.Reply{Error: err.Error()}
	}
	// Nothing is granted before the registration is accepted (issue 22): the name first.
	if reply, taken := c.nameTaken(info); taken {
		return reply
	}
	// Placement by offer: it hears its groups' subjects, and those only (access, issue 12).
	if err := c.access.GrantGroups(info.Name, info.GroupSubjects()); err != nil {
		return protocol.Reply{Error: fmt.Sprintf("register %s: %v", info.Name, err)}
	}
	c.mu.Lock()
	old, known := c.workers[info.Name]
	replaced := known && !sameInstance(old.info, info)
	if replaced && old.alive && old.confirmed {
		// Taken meanwhile by a registration of another process: its groups stand.
		c.mu.Unlock()
		if err := c.access.GrantGroups(info.Name, old.info.GroupSubjects()); err != nil {
			c.log.Error("groups of a live worker not restored", "worker", info.Name, "error", err)
		}
		return takenReply(info.Name, old.info)
	}
	// The same process registering again (after a reconnect) stays cordoned if it was.
	cordoned := known && !replaced && old.cordoned
	now := time.Now()
	c.workers[info.Name] = &workerState{info: info, lastSeen: now, heard: now, alive: true, confirmed: true, cordoned: cordoned}
	c.mu.Unlock()
	c.saveWorker(info, true, now)
	if replaced {
		// A new process under a known name: whatever the old one ran is gone. The moves offer
		// jobs and ask workers — this one too, once it hears its reply — so they run beside the
		// reply: done on the reply's path, they made the registration time out.
		name := info.Name
		c.spawn("move the jobs of restarted worker "+name, func(context.Context) { c.workerLost(name, "restarted") })
	} else {
		c.resumeRecovered(info.Name)
	}
	c.log.Info("worker joined", "worker", info.Name, "groups", info.Groups, "slots", info.Slots, "host", info.Host)
	return protocol.Reply{OK: true}
}

// nameTaken reports whether a live worker of another process holds the name a registration
// claims, with the refusal to answer.
func (c *control) nameTaken(info protocol.WorkerInfo) (protocol.Reply, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, known := c.workers[info.Name]
	if known && !sameInstance(old.info, info) && old.alive && old.confirmed {
		return takenReply(info.Name, old.info), true
	}
	return protocol.Reply{}, false
}

func takenReply(name string, live protocol.WorkerInfo) protocol.Reply {
	return protocol.Reply{Error: fmt.Sprintf("worker name %q is taken by a live worker on %s (pid %d); choose another with --name", name, live.Host, live.PID)}
}

// resumeRecovered has the deliveries lost with the previous broker process come again at once
// for the jobs of a worker that registered again (the same process), or of every worker when
// worker is "" (a takeover in a cluster, leader.go): see redeliverNow.
func (c *control) resumeRecovered(worker string) {
	var refs []jobRef
	c.mu.Lock()
	for name, p := range c.pipelines {
		for id, j := range p.jobs {
			if j.recovered && (worker == "" || j.worker == worker) {
				j.recovered = false
				refs = append(refs, jobRef{name, id})
			}
		}
	}
	c.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	c.spawn("hurry redeliveries", func(ctx context.Context) { c.redeliverNow(ctx, refs) }) // JetStream requests: not on the registration's reply path
}

func (c *control) handleDeregister(m *nats.Msg) any {
	var info protocol.WorkerInfo
	if err := json.Unmarshal(m.Data, &info); err != nil {
		return protocol.Reply{Error: "deregister: " + err.Error()}
	}
	if err := senderIs(m.Subject, info.Name); err != nil { // access (issue 12)
		return protocol.Reply{Error: err.Error()}
	}
	c.mu.Lock()
	var heard time.Time
	if w, ok := c.workers[info.Name]; ok {
		w.alive, heard = false, w.heard
	}
	c.mu.Unlock()
	c.saveWorker(info, false, heard)
	c.log.Info("worker left", "worker", info.Name)
	c.workerLost(info.Name, "left")
	return protocol.Reply{OK: true}
}

func (c *control) handleHeartbeat(m *nats.Msg) any {
	var hb protocol.Heartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil {
		c.log.Warn("bad heartbeat", "subject", m.Subject, "error", err)
		return nil
	}
	if err := senderIs(m.Subject, hb.Worker); err != nil { // access (issue 12)
		c.log.Warn("heartbeat refused", "error", err)
		return nil
	}
	c.mu.Lock()
	w, ok := c.workers[hb.Worker]
	if !ok {
		c.mu.Unlock()
		return nil // not registered (yet): it registers on its own
	}
	back, first := !w.alive, !w.bidding
	w.lastSeen, w.metrics, w.confirmed, w.alive, w.bidding = time.Now(), hb.Metrics, true, true, true
	w.heard = w.lastSeen
	var stale []protocol.JobRef
	for _, s := range hb.Stats {
		p, ok := c.pipelines[s.Pipeline]
		if !ok {
			continue
		}
		j, ok := p.jobs[s.Job]
		if !ok {
			continue
		}
		if j.worker != hb.Worker || j.epoch != s.Epoch || p.state.terminal() && j.state.terminal() {
			// An instance the broker has replaced (its worker was declared dead meanwhile).
			ref := protocol.JobRef{Pipeline: s.Pipeline, Job: s.Job, Epoch: s.Epoch}
			if !w.staleTold[ref] {
				if w.staleTold == nil {
					w.staleTold = map[protocol.JobRef]bool{}
				}
				w.staleTold[ref] = true
				stale = append(stale, ref)
			}
			continue
		}
		if !j.state.terminal() {
			j.stats = s.Stats
		}
	}
	info, heard := w.info, w.heard
	c.mu.Unlock()
	if back {
		c.log.Warn("worker declared dead is heartbeating again", "worker", hb.Worker)
		c.saveWorker(info, true, heard)
	}
	if back || first {
		c.kickPlacement() // it bids from now on: place what is pending
	}
	for _, ref := range stale {
		c.log.Warn("stopping a stale job instance", "worker", hb.Worker, "pipeline", ref.Pipeline, "job", ref.Job, "epoch", ref.Epoch)
		c.event(ref.Pipeline, ref.Job, "stale instance", fmt.Sprintf("job %d: worker %s still runs epoch %d, replaced meanwhile; told to stop it", ref.Job, hb.Worker, ref.Epoch))
		c.spawn("stop a stale job instance", func(ctx context.Context) {
			if err := c.requestWorker(ctx, hb.Worker, protocol.VerbStop, ref); err != nil {
				c.log.Warn("stale job not stopped", "worker", hb.Worker, "pipeline", ref.Pipeline, "job", ref.Job, "error", err)
			}
		})
	}
	return nil
}

// livenessTick is how often the heartbeats are checked: a fifteenth of the timeout, so a silent
// worker is declared dead at most 7% after its deadline (100 ms for the default 1.5 s).
func livenessTick(timeout time.Duration) time.Duration {
	return max(timeout/15, 10*time.Millisecond)
}

func (c *control) checkLiveness(now time.Time) {
	var silent []string
	c.mu.Lock()
	for name, w := range c.workers {
		if w.alive && now.Sub(w.lastSeen) > c.opts.HeartbeatTimeout {
			silent = append(silent, name)
		}
	}
	c.mu.Unlock()
	for _, name := range silent {
		stillSilent := func(w *workerState) bool { return now.Sub(w.lastSeen) > c.opts.HeartbeatTimeout }
		if c.declareDead(name, "missed its heartbeats", stillSilent) {
			c.log.Warn("worker missed its heartbeats; declared dead", "worker", name, "timeout", c.opts.HeartbeatTimeout)
		}
	}
}

// declareDead is the one way a live worker is declared dead, whatever noticed it (missed
// heartbeats, its connection closed: disconnect.go): it is marked dead and saved so, and its jobs
// move (workerLost), each fenced by a new epoch. still, when not nil, must hold for the worker
// under the same hold of mu that marks it dead. It reports whether the worker was declared dead
// now (false: unknown, already dead, or still returned false).
func (c *control) declareDead(name, why string, still func(*workerState) bool) bool {
	c.mu.Lock()
	w, ok := c.workers[name]
	if !ok || !w.alive || still != nil && !still(w) {
		c.mu.Unlock()
		return false
	}
	w.alive = false
	info, heard := w.info, w.heard
	c.mu.Unlock()
	c.saveWorker(info, false, heard)
	c.workerLost(name, why)
	return true
}

// slotsUsed counts the jobs each worker runs. Callers hold mu.
func (c *control) slotsUsed() map[string]int {
	used := map[string]int{}
	for _, p := range c.pipelines {
		for _, j := range p.jobs {
			if j.worker != "" && !j.state.terminal() {
				used[j.worker]++
			}
		}
	}
	return used
}

// saveWorker saves a worker's registration, whether it is alive and when it was last heard.
func (c *control) saveWorker(info protocol.WorkerInfo, alive bool, heard time.Time) {
	if c.opts.fenced() != nil {
		return // another broker's control plane acts now (leader.go)
	}
	if err := c.store.saveWorker(context.Background(), info, alive, heard); err != nil {
		c.log.Error("worker state not saved", "worker", info.Name, "error", err)
	}
}
