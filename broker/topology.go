package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Stream topology: the log stream, the pipe streams and their consumers.

func (c *control) createLogStream(ctx context.Context) error {
	_, err := openStream(ctx, c.js, jetstream.StreamConfig{
		Name: protocol.LogStream, Subjects: []string{protocol.LogSubjects}, Storage: c.storage, Replicas: c.opts.Replicas,
		MaxAge: 24 * time.Hour, MaxBytes: 256 << 20, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return fmt.Errorf("broker: log stream: %w", err)
	}
	return nil
}

// Pipe stream limits: a pipe without max_queue holds up to this much unread data and then makes
// its writer wait (backpressure), so a slow job never grows memory without bound.
const (
	pipeMaxMsgs  = 4096
	pipeMaxBytes = 64 << 20
)

func (c *control) createPipes(ctx context.Context, doc *pipeline.Pipeline, epoch uint64) error {
	if err := c.store.forgetCheckpoints(ctx, doc); err != nil {
		return err
	}
	ends := doc.Endpoints()
	for id, e := range ends {
		if pp := doc.PipeByID(id); pp.IsRealtime() {
			continue // core NATS: a subject, no stream
		}
		dst := doc.JobByID(e[1])
		maxQueue := 0
		if dst != nil {
			maxQueue = dst.MaxQueue
		}
		cfg := jetstream.StreamConfig{
			Name: protocol.PipeStream(doc.Name, id), Subjects: []string{protocol.PipeSubject(doc.Name, id)},
			Retention: jetstream.WorkQueuePolicy, Storage: c.storage, Discard: jetstream.DiscardNew,
			MaxMsgs: pipeMaxMsgs, MaxBytes: pipeMaxBytes, Replicas: c.opts.Replicas,
		}
		if maxQueue > 0 {
			maxQueueStream(&cfg, maxQueue)
		}
		// A pipeline submitted again under the same name starts from empty pipes.
		if err := c.js.DeleteStream(ctx, cfg.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("pipe %d: delete old stream: %w", id, err)
		}
		st, err := c.js.CreateStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("pipe %d: create stream %s: %w", id, cfg.Name, err)
		}
		if dst == nil {
			continue
		}
		if _, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(dst, epoch)); err != nil {
			return fmt.Errorf("pipe %d: create consumer: %w", id, err)
		}
	}
	return nil
}

// maxQueueStream makes a pipe's stream keep the newest maxQueue blocks, dropping the oldest; its
// end marker has a subject of its own, outside that count.
func maxQueueStream(cfg *jetstream.StreamConfig, maxQueue int) {
	cfg.Subjects = append(cfg.Subjects, protocol.PipeEndSubject(cfg.Subjects[0]))
	cfg.Discard, cfg.MaxMsgs, cfg.MaxBytes = jetstream.DiscardOld, -1, -1
	cfg.MaxMsgsPerSubject = int64(maxQueue)
}

// consumerConfig is the durable consumer of a pipe read by job dst at an epoch. In-flight
// blocks are bounded (MaxAckPending, in messages): a slow job pushes back instead of growing
// memory; a max_queue pipe keeps its queue in the stream, where the oldest block is dropped.
func consumerConfig(dst *pipeline.Job, epoch uint64) jetstream.ConsumerConfig {
	maxAck := 64
	if dst.MaxQueue > 0 {
		maxAck = 1
	}
	return jetstream.ConsumerConfig{
		Durable: protocol.PipeConsumer(dst.ID, epoch), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxAck,
		// A delivery lost in transit (a connection cut) comes again after AckWait; the worker
		// holds later blocks meanwhile (worker/input.go), so keep it short.
		AckWait: 5 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
	}
}

// rebindInputs replaces the consumers of a job's input pipes by ones of the new epoch. On a
// work-queue stream the new consumer is delivered every block not yet acknowledged, at once.
func (c *control) rebindInputs(ctx context.Context, doc *pipeline.Pipeline, j *pipeline.Job, oldEpoch, newEpoch uint64) error {
	for _, id := range j.Inputs {
		if pp := doc.PipeByID(id); pp.IsRealtime() {
			continue
		}
		st, err := c.js.Stream(ctx, protocol.PipeStream(doc.Name, id))
		if err != nil {
			return fmt.Errorf("pipe %d: %w", id, err)
		}
		if err := st.DeleteConsumer(ctx, protocol.PipeConsumer(j.ID, oldEpoch)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("pipe %d: delete consumer of epoch %d: %w", id, oldEpoch, err)
		}
		if _, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(j, newEpoch)); err != nil {
			return fmt.Errorf("pipe %d: create consumer of epoch %d: %w", id, newEpoch, err)
		}
	}
	return nil
}

func (c *control) deletePipes(doc *pipeline.Pipeline) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id := range doc.Endpoints() {
		if err := c.js.DeleteStream(ctx, protocol.PipeStream(doc.Name, id)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			c.log.Warn("pipe stream not deleted", "pipeline", doc.Name, "pipe", id, "error", err)
		}
	}
}
