package failoverkit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

func TestRecoveryIsTheFirstBlockAfterTheJobsWorkerLostEvent(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer ns.Shutdown()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p, err := Watch(nc, "p", 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	event := func(job int, kind string) {
		data, _ := json.Marshal(protocol.Event{Pipeline: "p", Job: job, Kind: kind, Message: "job " + kind})
		if err := nc.Publish(protocol.EventSubject("p"), data); err != nil {
			t.Fatal(err)
		}
	}
	pipe := protocol.PipeSubject("p", 2)
	killed := time.Now()
	for range 3 { // blocks of the dead instance, still arriving
		if err := nc.Publish(pipe, []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	event(3, "worker lost") // another job's
	if err := nc.Publish(pipe, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitMessages(ctx, 4); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := p.Recovery(short, killed); err == nil || !strings.Contains(err.Error(), `no "worker lost" event for job 2`) {
		t.Fatalf("recovered before the job was lost: %v", err)
	}
	event(2, "worker lost")
	lostSent := time.Now()
	if err := nc.Publish(pipe, []byte("new")); err != nil {
		t.Fatal(err)
	}
	res, err := p.Recovery(ctx, killed)
	if err != nil {
		t.Fatal(err)
	}
	if res.Why != "job worker lost" || res.Recovered < lostSent.Sub(killed) || res.Detected > res.Recovered {
		t.Fatalf("result %+v: want the first block after job 2's worker lost event (sent %v after the kill)", res, lostSent.Sub(killed))
	}
}
