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

// The log stream allows direct gets: the marvelo command reads it that way (client.ReadLogs),
// with no consumer, which read-only identities may not create.
func (c *control) createLogStream(ctx context.Context) error {
	st, err := openStream(ctx, c.js, jetstream.StreamConfig{
		Name: protocol.LogStream, Subjects: []string{protocol.LogSubjects}, Storage: c.storage, Replicas: c.opts.Replicas,
		MaxAge: 24 * time.Hour, MaxBytes: 256 << 20, Discard: jetstream.DiscardOld, AllowDirect: true,
	})
	if err != nil {
		return fmt.Errorf("broker: log stream: %w", err)
	}
	// A store made before the logs were read by direct gets keeps its stream: allow them there.
	if info := st.CachedInfo(); info != nil && !info.Config.AllowDirect {
		// Its configuration now, not as looked up: openStream may have changed its replicas.
		if info, err = st.Info(ctx); err != nil {
			return fmt.Errorf("broker: log stream: %w", err)
		}
		cfg := info.Config
		cfg.AllowDirect = true
		if _, err := c.js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("broker: log stream: allowing direct gets: %w", err)
		}
	}
	return nil
}

// Pipe stream limits: a pipe without max_queue holds up to this much unread data and then makes
// its writer wait (backpressure), so a slow job never grows memory without bound.
const (
	pipeMaxMsgs  = protocol.PipeMaxMsgs
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
		// Each request is retried through a cluster's leader election, as a move's are (jsRetry).
		err := jsRetry(ctx, rebindBound, func(ctx context.Context) error {
			err := c.js.DeleteStream(ctx, cfg.Name)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("pipe %d: delete old stream: %w", id, err)
		}
		var st jetstream.Stream
		err = jsRetry(ctx, rebindBound, func(ctx context.Context) (err error) {
			st, err = c.js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("pipe %d: create stream %s: %w", id, cfg.Name, err)
		}
		if dst == nil {
			continue
		}
		err = jsRetry(ctx, rebindBound, func(ctx context.Context) error {
			_, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(dst, doc.PipeByID(id), epoch))
			return err
		})
		if err != nil {
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

// consumerConfig is the durable consumer of pipe pp read by job dst at an epoch. In-flight
// blocks are bounded (MaxAckPending, in messages): a slow job pushes back instead of growing
// memory; a max_queue pipe keeps its queue in the stream, where the oldest block is dropped, so
// its consumer lets out only what one round needs. A round holds the messages it consumed until
// its outputs are stored, so the bound is never below the messages of one round (block_count,
// one block a message at worst) plus the one a checker may hold for the next round: less would
// stall the job until the ack wait redelivered (a max_queue job with block_count 2 did).
func consumerConfig(dst *pipeline.Job, pp pipeline.Pipe, epoch uint64) jetstream.ConsumerConfig {
	round := 1
	if pp.BlockCount > 1 {
		round = pp.BlockCount
	}
	maxAck := max(64, 2*round)
	if dst.MaxQueue > 0 {
		maxAck = round + 1
	}
	return jetstream.ConsumerConfig{
		Durable: protocol.PipeConsumer(dst.ID, epoch), AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: maxAck,
		// A delivery lost in transit (a connection cut) comes again after AckWait; the worker
		// holds later blocks meanwhile (worker/input.go), so keep it short.
		AckWait: 5 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy, MaxDeliver: -1,
	}
}

// Redelivery after a broker restart: the blocks a consumer had delivered when the broker died
// never reached the worker, and JetStream delivers them again only after the ack wait (5 s),
// while the worker holds the later blocks for order. For a moment the input consumers of the
// recovered jobs get a short ack wait, so they come again at once; a block delivered twice is
// dropped by its SQN, as after a move. Then the usual ack wait is put back.
const (
	hurriedAckWait = 200 * time.Millisecond
	hurryFor       = 3 * time.Second
)

// redeliverNow hurries the redelivery of the recovered jobs' input consumers (see above).
func (c *control) redeliverNow(ctx context.Context, refs []jobRef) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var hurried []jetstream.ConsumerConfig
	var streams []string
	for _, r := range refs {
		c.mu.Lock()
		p, ok := c.pipelines[r.pipeline]
		var job *pipeline.Job
		var epoch uint64
		if ok {
			job, epoch = p.jobs[r.job].job, p.jobs[r.job].epoch
		}
		c.mu.Unlock()
		if !ok {
			continue
		}
		for _, id := range job.Inputs {
			if pp := p.doc.PipeByID(id); pp.IsRealtime() {
				continue
			}
			cfg := consumerConfig(job, p.doc.PipeByID(id), epoch)
			fast := cfg
			fast.AckWait = hurriedAckWait
			stream := protocol.PipeStream(r.pipeline, id)
			if _, err := c.js.UpdateConsumer(ctx, stream, fast); err != nil {
				c.log.Warn("redelivery not hurried", "pipeline", r.pipeline, "job", r.job, "pipe", id, "error", err)
				continue
			}
			hurried, streams = append(hurried, cfg), append(streams, stream)
		}
	}
	if len(hurried) == 0 {
		return
	}
	c.log.Info("deliveries lost with the previous broker come again now", "consumers", len(hurried))
	time.AfterFunc(hurryFor, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i, cfg := range hurried {
			if _, err := c.js.UpdateConsumer(ctx, streams[i], cfg); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
				c.log.Warn("ack wait not restored", "stream", streams[i], "consumer", cfg.Durable, "error", err)
			}
		}
	})
}

// rebindInputs replaces the consumers of a job's input pipes by ones of the new epoch. On a
// work-queue stream the new consumer is delivered every block not yet acknowledged, at once.
// Each request is retried through a cluster's leader election (jsRetry): a move that gives up
// on a stall of a second or two fails a job that nothing else ails.
func (c *control) rebindInputs(ctx context.Context, doc *pipeline.Pipeline, j *pipeline.Job, oldEpoch, newEpoch uint64) error {
	for _, id := range j.Inputs {
		if pp := doc.PipeByID(id); pp.IsRealtime() {
			continue
		}
		var st jetstream.Stream
		err := jsRetry(ctx, rebindBound, func(ctx context.Context) (err error) {
			st, err = c.js.Stream(ctx, protocol.PipeStream(doc.Name, id))
			return err
		})
		if err != nil {
			return fmt.Errorf("pipe %d: %w", id, err)
		}
		err = jsRetry(ctx, rebindBound, func(ctx context.Context) error {
			err := st.DeleteConsumer(ctx, protocol.PipeConsumer(j.ID, oldEpoch))
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil // gone already (or deleted by an attempt that timed out)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("pipe %d: delete consumer of epoch %d: %w", id, oldEpoch, err)
		}
		err = jsRetry(ctx, rebindBound, func(ctx context.Context) error {
			_, err := st.CreateOrUpdateConsumer(ctx, consumerConfig(j, doc.PipeByID(id), newEpoch))
			return err
		})
		if err != nil {
			return fmt.Errorf("pipe %d: create consumer of epoch %d: %w", id, newEpoch, err)
		}
	}
	return nil
}

// rebindBound is how long a move retries a request through a stall (a cluster electing
// leaders takes seconds; a broker alone never stalls this long).
const rebindBound = 20 * time.Second

func (c *control) deletePipes(doc *pipeline.Pipeline) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for id := range doc.Endpoints() {
		if err := c.js.DeleteStream(ctx, protocol.PipeStream(doc.Name, id)); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			c.log.Warn("pipe stream not deleted", "pipeline", doc.Name, "pipe", id, "error", err)
		}
	}
}
