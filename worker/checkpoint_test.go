package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
)

// failingPuts is a KV bucket whose first fails puts fail, as during an election of its stream's
// leader.
type failingPuts struct {
	jetstream.KeyValue
	fails atomic.Int32
	puts  atomic.Int32
}

func (f *failingPuts) Put(context.Context, string, []byte) (uint64, error) {
	if f.fails.Add(-1) >= 0 {
		return 0, errors.New("nats: timeout")
	}
	return uint64(f.puts.Add(1)), nil
}

// fixedState is a job whose checkpoint is always the same.
type fixedState struct{}

func (fixedState) Checkpoint() ([]byte, error) { return []byte(`{"offset":10}`), nil }
func (fixedState) Restore([]byte) error        { return nil }

// TestASinkCheckpointThatFailedIsTriedAgainWithoutANewRound: a sink's last round is
// acknowledged once its checkpoint is stored. The first two puts fail; no later round comes
// (with the consumer's MaxAckPending full of such rounds none can), yet the checkpoint is
// stored and the round's message acknowledged.
func TestASinkCheckpointThatFailedIsTriedAgainWithoutANewRound(t *testing.T) {
	_, js := startJetStream(t)
	pipe := testPipe(t, js, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, pipe.Subject, codec.AppendBlock(nil, codec.Block{SQN: 1, Payload: []byte{1}}, pipe.HeadSize)); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, pipe.Stream, pipe.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	kv := &failingPuts{}
	kv.fails.Store(2)
	log := slog.New(slog.DiscardHandler)
	s := newSinkCheckpoints(&checkpoints{kv: kv, key: "sink", job: fixedState{}, label: "csv_sink 2"}, log)
	go s.run(ctx)
	tk := &task{log: log}
	s.record(1, "", nil, tk.newRoundAcks([]jetstream.Msg{m}, 0))
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumAckPending == 0 && kv.puts.Load() == 1 {
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after 10 s: %d puts stored, %d failed, %d messages unacknowledged; want the checkpoint stored and the round acknowledged",
				kv.puts.Load(), 2-max(kv.fails.Load(), 0), info.NumAckPending)
		}
	}
	if err := s.close(ctx); err != nil {
		t.Fatal(err)
	}
}
