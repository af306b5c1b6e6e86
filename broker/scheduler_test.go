package broker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

func bid(name string, cpu, mem float64, free int) protocol.Bid {
	return protocol.Bid{Worker: name, OK: true, Free: free, Slots: 4, Metrics: protocol.Metrics{CPUFree: cpu, MemFree: mem}}
}

func names(bids []protocol.Bid) string {
	var out []string
	for _, b := range bids {
		out = append(out, b.Worker)
	}
	return strings.Join(out, ",")
}

func TestRankBidsMostFreeCPUThenMemoryThenSlotsAndDropsDeclines(t *testing.T) {
	declined := bid("x", 100, 100, 4)
	declined.OK, declined.Reason = false, "no free slot"
	got := rankBids([]protocol.Bid{
		bid("d", 50, 50, 1),
		bid("c", 50, 50, 3), // ties d on cpu and memory: more free slots
		declined,            // the best load, but it declined
		bid("b", 50, 80, 1), // ties on cpu: more free memory
		bid("a", 90, 10, 1), // most free cpu
		bid("e", 50, 50, 1), // ties d on everything: by name
	})
	if want := "a,b,c,d,e"; names(got) != want {
		t.Fatalf("ranked %s, want %s", names(got), want)
	}
}

func TestTargetsAreTheNodeThenTheGroupsInPriorityOrder(t *testing.T) {
	var got []string
	for _, tg := range targets(&pipeline.Job{ID: 1, Type: "forward", Node: "n1", Groups: []string{"b", "a"}}) {
		got = append(got, tg.String()+" on "+tg.subject())
	}
	want := "node n1 on marvelo.worker.n1.offer|group b on marvelo.group.b.offer|group a on marvelo.group.a.offer"
	if strings.Join(got, "|") != want {
		t.Fatalf("targets %q, want %q", strings.Join(got, "|"), want)
	}
	if got := targets(&pipeline.Job{ID: 1, Type: "forward"}); len(got) != 1 || got[0].group != pipeline.GroupAll {
		t.Fatalf("a job without groups is offered to %v, want ALL only", got)
	}
}

// bidder answers offers and reservations on NATS as a worker does: its bid, and a
// reservation that takes one of its free slots.
type bidder struct {
	name   string
	groups []string
	cpu    float64
	mu     sync.Mutex
	free   int
	reason string // declines with it when set
	offers int
	// refuseReserve: it bids, then refuses the reservation (its slot went meanwhile).
	refuseReserve bool
}

// offerBroker starts a broker (its control plane places nothing on its own here: every fake
// worker is entered in the registry directly) and the fake workers answering on its subjects.
func offerBroker(t *testing.T, ws ...*bidder) *control {
	t.Helper()
	b, err := Start(Options{Listen: "127.0.0.1:-1", Memory: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Shutdown)
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	c := b.ctl
	for _, w := range ws {
		info := protocol.WorkerInfo{Name: w.name, Groups: w.groups, Slots: 4, Types: []string{"forward"}}
		c.mu.Lock()
		c.workers[w.name] = &workerState{info: info, alive: true, confirmed: true, bidding: true}
		c.mu.Unlock()
		answer := func(m *nats.Msg) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.offers++
			b := protocol.Bid{Worker: w.name, OK: w.reason == "" && w.free > 0, Reason: w.reason, Free: w.free, Slots: 4,
				Metrics: protocol.Metrics{CPUFree: w.cpu, MemFree: 50}}
			if w.reason == "" && w.free <= 0 {
				b.Reason = "no free slot"
			}
			data, _ := json.Marshal(b)
			_ = m.Respond(data)
		}
		for _, s := range append(info.GroupSubjects(), protocol.WorkerSubject(w.name, protocol.VerbOffer)) {
			if _, err := nc.Subscribe(s, answer); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := nc.Subscribe(protocol.WorkerSubject(w.name, protocol.VerbReserve), func(m *nats.Msg) {
			w.mu.Lock()
			defer w.mu.Unlock()
			r := protocol.Reply{OK: w.free > 0 && !w.refuseReserve}
			if r.OK {
				w.free--
			} else {
				r.Error = "no free slot any more"
			}
			data, _ := json.Marshal(r)
			_ = m.Respond(data)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOfferHonoursGroupOrderOverLoad(t *testing.T) {
	a := &bidder{name: "wa", groups: []string{"a"}, cpu: 99, free: 1}
	b := &bidder{name: "wb", groups: []string{"b"}, cpu: 10, free: 1}
	c := offerBroker(t, a, b)
	w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 1, Type: "forward", Groups: []string{"b", "a"}}, 1)
	if w != "wb" {
		t.Fatalf("placed on %q (%s), want wb: group b comes first though wa has more free cpu", w, why)
	}
	if a.offers != 0 {
		t.Fatalf("group a was offered the job %d times after group b took it", a.offers)
	}
}

func TestOfferPicksTheMostFreeCPUWithinAGroupAndTheNodeFirst(t *testing.T) {
	x := &bidder{name: "x", groups: []string{"dsp"}, cpu: 40, free: 2}
	y := &bidder{name: "y", groups: []string{"dsp"}, cpu: 80, free: 2}
	n := &bidder{name: "n", cpu: 1, free: 1}
	c := offerBroker(t, x, y, n)
	if w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 1, Type: "forward", Groups: []string{"dsp"}}, 1); w != "y" {
		t.Fatalf("placed on %q (%s), want y (most free cpu)", w, why)
	}
	if w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 2, Type: "forward", Node: "n", Groups: []string{"dsp"}}, 1); w != "n" {
		t.Fatalf("placed on %q (%s), want n (its node)", w, why)
	}
	// The node is full now: the job falls back to its groups.
	if w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 3, Type: "forward", Node: "n", Groups: []string{"dsp"}}, 1); w != "y" {
		t.Fatalf("placed on %q (%s), want y once node n is full", w, why)
	}
}

func TestOfferReservationRefusedFallsToTheNextBidder(t *testing.T) {
	// x bids with a free slot but has lost it by the time the broker reserves it.
	x := &bidder{name: "x", groups: []string{"g"}, cpu: 90, free: 1, refuseReserve: true}
	y := &bidder{name: "y", groups: []string{"g"}, cpu: 20, free: 1}
	c := offerBroker(t, x, y)
	w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 1, Type: "forward", Groups: []string{"g"}}, 1)
	if w != "y" {
		t.Fatalf("placed on %q (%s), want y after x refused the reservation", w, why)
	}
	w, why = c.offerJob(context.Background(), "p", &pipeline.Job{ID: 2, Type: "forward", Groups: []string{"g"}}, 1)
	if w != "" || !strings.Contains(why, "worker x: no free slot any more") || !strings.Contains(why, "worker y: no free slot") {
		t.Fatalf("placed on %q, reason %q; want nobody: x refuses, y is full", w, why)
	}
}

func TestOfferNobodyTakesItSaysEachWorkersReason(t *testing.T) {
	x := &bidder{name: "x", groups: []string{"g"}, cpu: 90, free: 1, reason: `proc.py needs python3, which is not on PATH`}
	y := &bidder{name: "y", groups: []string{"g"}, cpu: 20, free: 0}
	c := offerBroker(t, x, y)
	c.mu.Lock()
	c.workers["z"] = &workerState{info: protocol.WorkerInfo{Name: "z", Groups: []string{"g"}, Slots: 1}, alive: true, bidding: true, cordoned: true}
	c.mu.Unlock()
	start := time.Now()
	w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 1, Type: "forward", Groups: []string{"g", "other"}}, 1)
	if w != "" {
		t.Fatalf("placed on %q, want nobody", w)
	}
	for _, want := range []string{"group g", "worker x: proc.py needs python3, which is not on PATH", "worker y: no free slot", "group other: no live worker"} {
		if !strings.Contains(why, want) {
			t.Errorf("reason %q does not say %q", why, want)
		}
	}
	if strings.Contains(why, "worker z") {
		t.Errorf("reason %q names the cordoned worker z, which is not offered jobs", why)
	}
	if d := time.Since(start); d >= offerWait {
		t.Errorf("the offer took %s: it waits for the deadline (%s) though every live worker answered", d, offerWait)
	}
}

func TestOfferAWorkerThatDoesNotAnswerIsNamedAndPlacementIsRetried(t *testing.T) {
	x := &bidder{name: "x", groups: []string{"g"}, cpu: 90, free: 1}
	c := offerBroker(t, x)
	c.mu.Lock()
	c.workers["mute"] = &workerState{info: protocol.WorkerInfo{Name: "mute", Groups: []string{"h"}, Slots: 1}, alive: true, bidding: true}
	c.mu.Unlock()
	w, why := c.offerJob(context.Background(), "p", &pipeline.Job{ID: 1, Type: "forward", Groups: []string{"h"}}, 1)
	if w != "" || !strings.Contains(why, "worker mute: no answer within") {
		t.Fatalf("placed on %q, reason %q; want nobody and worker mute named", w, why)
	}
	// The broker's own loop takes the request at its next liveness tick and runs the pass.
	tick, deadline := time.NewTicker(10*time.Millisecond), time.After(10*time.Second)
	defer tick.Stop()
	for c.offerRetries.Load() == 0 {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatal("a missed answer does not ask for another placement pass")
		}
	}
}

// TestPlacementLeftPendingAfterAKickAsksForAnotherPass: a kick (a worker's first heartbeat, a
// freed slot) that comes while a placement's offers are out is not lost when that placement ends
// pending: it asks for another pass; without a kick meanwhile, or once placed, it does not.
func TestPlacementLeftPendingAfterAKickAsksForAnotherPass(t *testing.T) {
	doc := &pipeline.Pipeline{Name: "p", Jobs: []pipeline.Job{{ID: 1, Type: "counter"}}}
	p := &pipelineState{doc: doc, state: protocol.StatePending, jobs: map[int]*jobState{1: {job: &doc.Jobs[0], state: protocol.StatePending}}}
	c := &control{pipelines: map[string]*pipelineState{"p": p}, kick: make(chan struct{}, 1)}
	kicked := func() bool {
		select {
		case <-c.kick:
			return true
		default:
			return false
		}
	}
	gen := c.kicks.Load()
	c.kickedMeanwhile(gen, "p", 0)
	if kicked() {
		t.Fatal("a pass asked for though no kick came meanwhile")
	}
	c.kickPlacement() // e.g. a worker's first heartbeat while the offers were out
	if !kicked() {
		t.Fatal("kickPlacement did not kick")
	}
	c.kickedMeanwhile(gen, "p", 0)
	if !kicked() {
		t.Fatal("a pipeline left pending after a kick came meanwhile asks for no other pass")
	}
	c.kickedMeanwhile(gen, "p", 1)
	if !kicked() {
		t.Fatal("a job left pending after a kick came meanwhile asks for no other pass")
	}
	p.state, p.jobs[1].state = protocol.StateRunning, protocol.StateRunning
	c.kickedMeanwhile(gen, "p", 0)
	c.kickedMeanwhile(gen, "p", 1)
	if kicked() {
		t.Fatal("a placed pipeline asks for another pass")
	}
}
