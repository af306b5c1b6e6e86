package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/builtin"
	"github.com/marvelo/marvelo/pipeline/cacheline"
	"github.com/marvelo/marvelo/pipeline/job"
	"github.com/marvelo/marvelo/pipeline/protocol"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
)

// stats are a running job's counters, read by heartbeats while the job writes them.
type stats struct {
	_                                                       cacheline.Pad // rounds is added to every round (cacheline)
	blocksIn, blocksOut, rounds, stale, dummies, queueDrops atomic.Uint64
	bytesIn, bytesOut, redeliveries                         atomic.Uint64
	usage                                                   jobUsage                // CPU and memory (worker/metrics.go)
	links                                                   atomic.Pointer[[]*link] // the job's chained outputs, set as it starts
	_                                                       cacheline.Pad
}

func (s *stats) snapshot() protocol.JobStats {
	cpu, mem := s.usage.sample()
	return protocol.JobStats{
		CPUSeconds: cpu, MemBytes: mem,
		BlocksIn: s.blocksIn.Load(), BlocksOut: s.blocksOut.Load(), Rounds: s.rounds.Load(),
		Stale: s.stale.Load(), Dummies: s.dummies.Load(), QueueDrops: s.queueDrops.Load(),
		BytesIn: s.bytesIn.Load(), BytesOut: s.bytesOut.Load(), Redeliveries: s.redeliveries.Load(),
		Links: linkStats(s.links.Load()),
	}
}

func linkStats(links *[]*link) []protocol.LinkStats {
	if links == nil {
		return nil
	}
	out := make([]protocol.LinkStats, len(*links))
	for i, l := range *links {
		out[i] = l.stats()
	}
	return out
}

// task is one job instance on this worker: prepared (built, args checked), then started.
type task struct {
	ins       []*input     // the job's inputs, set before its rounds start (noteAcked reads it)
	chk       *checkpoints // a source's checkpoints, nil without (issue 12)
	assign    protocol.Assignment
	label     string
	runner    *job.Runner
	jctx      *job.Context
	ctxConfig job.ContextConfig
	headSize  int
	log       *slog.Logger
	stats     stats
	// skippedDummies are dummies the checker made for rounds skipped after max_queue drops.
	skippedDummies uint64
	stdin          *stdinReader
	// execSpec describes an executable job (runner is nil then).
	execSpec *execjob.Spec
	// links are the worker's chained pipes: a chained input or output opens its link there.
	links *links
	// rt holds the subscriptions of realtime inputs, by pipe id, made at prepare.
	rt map[int]*realtimeSub
	// sequencer numbers a source's blocks (and an all-async job's); `marvelo reset` restarts it.
	sequencer *align.SourceSequencer
	// skipSQN is a poison round the job is not handed (Assignment.SkipSQN; engine.go,
	// poisonRound); failedSQN the round the job failed at, when known, for its report. Both
	// belong to the goroutine that runs the job.
	skipSQN, failedSQN uint64
	// sequence is the name of the restart the job's rounds count from (roundTag.restart), kept
	// while it stays the same so that a round does not build it again; the job's goroutine owns
	// it (engine.go, sourceTag and roundSequence). A source program's outputs keep their own
	// (execOutput.sequence): each is numbered by its own goroutine.
	sequence sequenceName

	// logPub receives a LoggingJob row per compute block when the job has log: true.
	logPub   *publisher
	logRow   builtin.LogRow
	logSQN   uint64
	logCodec codec.Codec

	cancel context.CancelFunc
	// drainCtx ends a source's generation without stopping its outputs: its streams end
	// cleanly (a graceful stop drains the pipeline from its sources).
	drainCtx context.Context
	drain    context.CancelFunc
	done     chan struct{}
	err      error // set before done is closed
}

// run executes the job to its end: setup, the compute loop, flush, close. It returns nil when the
// job finished or ended, ctx's error when stopped.
func (t *task) run(ctx context.Context, js jetstream.JetStream) (err error) {
	jobCtx := ctx
	if t.isSource() {
		jobCtx = t.drainCtx
	}
	t.jctx = job.NewContext(jobCtx, t.ctxConfig)
	defer t.stdin.Close()
	defer t.closeRealtime()
	// A job that checkpoints gets its saved state back before Setup (a moved source numbers on,
	// a moved file sink appends to its file).
	var cp *checkpoints
	var saved protocol.Checkpoint // what cp held, without the job's state
	if t.runner != nil {
		if cp, err = t.openCheckpoints(ctx, js); err != nil {
			return err
		}
		if cp != nil {
			if saved, err = cp.restore(ctx); err != nil {
				return err
			}
		}
		t.chk = cp // issue 12: run waits for its last checkpoint put
	}
	if t.runner != nil {
		if err := t.runner.Setup(t.jctx); err != nil {
			return err
		}
		defer func() {
			if cerr := t.runner.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	// The publishers and readers outlive the compute loop a little: the loop ends, then the
	// publishers flush. pctx stops them all when run returns.
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stop()
		wg.Wait()
	}()
	outs := make([]*publisher, len(t.assign.Outputs))
	var outLinks []*link
	for k, p := range t.assign.Outputs {
		pub, err := newPublisher(pctx, js, p, t.log)
		if err != nil {
			return fmt.Errorf("%s: %w", t.label, err)
		}
		if p.Chain != 0 {
			key := t.linkKey(p)
			pub.link = t.links.open(key)
			outLinks = append(outLinks, pub.link)
			defer t.links.close(key, producerEnd)
		}
		if logging := t.assign.Job.Log && k == len(t.assign.Outputs)-1; !logging {
			pub.counts = &t.stats // the logging pipe's rows are not the job's blocks out
		}
		outs[k] = pub
		wg.Add(1)
		go func() { defer wg.Done(); pub.run(pctx) }()
	}
	if outLinks != nil {
		t.stats.links.Store(&outLinks)
	}
	if t.assign.Job.Log {
		t.logPub, outs = outs[len(outs)-1], outs[:len(outs)-1]
		if t.logCodec, err = codec.New(t.logPub.pipe.Codec, t.logPub.pipe.BlockSize); err != nil {
			return fmt.Errorf("%s: logging pipe %d: %w", t.label, t.logPub.pipe.ID, err)
		}
	}
	ins := make([]*input, len(t.assign.Inputs))
	for k, p := range t.assign.Inputs {
		ins[k] = newInput(k, p)
		ins[k].log = t.log
		if rs := t.rt[p.ID]; rs != nil {
			ins[k].ch, ins[k].rt = rs.ch, rs // fed by the subscription made at prepare
			continue
		}
		if p.Chain != 0 {
			key := t.linkKey(p)
			l := t.links.open(key)
			defer t.links.close(key, consumerEnd)
			// Fed by the producer's publisher (link.put), and by the pipe's stream as any input:
			// the block wire format is documented so that any NATS client can put blocks into a
			// pipe, and those reach the job whether or not its producer is beside it.
			ins[k].ch, ins[k].link = l.ch, l
		}
		wg.Add(1)
		go func() { defer wg.Done(); ins[k].read(pctx, js) }()
	}
	t.ins = ins
	ports := newOutPorts(outs)
	if t.execSpec != nil {
		// A source program is stopped by draining, as Go sources are (its outputs then end
		// cleanly); other programs end when their inputs do.
		err = t.runExec(t.jctx.Context(), pctx, ins, ports)
	} else if t.runner.IsSource() {
		err = t.runSource(pctx, ports, cp, saved.SQN)
	} else {
		g := &goKind{t: t, outs: ports}
		if cp != nil && len(ports) == 0 {
			g.sink = newSinkCheckpoints(cp, t.log)
			g.skipUpTo, g.restart = saved.SQN, saved.Restart
			g.restoreLeft(ins, saved.Left)
			wg.Add(1)
			go func() { defer wg.Done(); g.sink.run(pctx) }()
		}
		err = t.runRounds(pctx, ins, ports, g)
		if g.sink != nil {
			if serr := g.sink.close(ctx); serr != nil && err == nil {
				err = serr
			}
		}
	}
	if err != nil {
		return err
	}
	if err := t.closeOutputs(ctx, ports); err != nil {
		return err
	}
	if t.chk != nil {
		t.chk.wait() // issue 12: the last checkpoint is stored before the job reports its end
	}
	if t.logPub != nil {
		// The logging rows never carry the finished bit: their stream ends with a marker.
		if err := t.closeOutputs(ctx, []*outPort{{pub: t.logPub, last: t.logSQN}}); err != nil {
			return err
		}
	}
	// Only now, everything it answered stored: should the worker die from here on, its producers
	// (ended once their links are acknowledged) have nothing left that it did not store.
	t.releaseLinks(ins)
	return nil
}

// linkKey is the key of a chained pipe of this job.
func (t *task) linkKey(p protocol.PipeBinding) linkKey {
	return linkKey{pipeline: t.assign.Pipeline, pipe: p.ID, chain: p.Chain}
}

// releaseLinks tells the producers of the job's chained inputs that it ended normally, its
// outputs stored: what they sent and send on counts as acknowledged (link.consumerDone), and
// they may end.
func (t *task) releaseLinks(ins []*input) {
	for _, in := range ins {
		if in.link != nil {
			in.link.consumerDone()
		}
	}
}

// isSource reports whether the job has no inputs.
func (t *task) isSource() bool { return len(t.assign.Inputs) == 0 }

// closeRealtime ends the subscriptions of realtime inputs.
func (t *task) closeRealtime() {
	for _, rs := range t.rt {
		rs.close()
	}
}

// logClock reads the clock for LoggingJob rows only: on the hot path of a job without log: true
// it costs nothing (reading the clock is a system call on some virtual machines).
func (t *task) logClock() time.Time {
	if t.logPub == nil {
		return time.Time{}
	}
	return time.Now()
}

// writeLogRow sends one LoggingJob row for a compute block that ran from in to out.
func (t *task) writeLogRow(ctx context.Context, in, out time.Time) error {
	if t.logPub == nil {
		return nil
	}
	row := t.logRow.Row(t.assign.Job.Label(), t.stats.rounds.Load(), in, out)
	payload, err := t.logCodec.Append(nil, row)
	if err != nil {
		return fmt.Errorf("%s: logging pipe %d: %w", t.label, t.logPub.pipe.ID, err)
	}
	t.logSQN++
	return t.logPub.Write(ctx, codec.Block{SQN: t.logSQN, Payload: payload}, false)
}

// runSource numbers the source's blocks from 1, with the reset bit on the first. A source that
// implements job.Checkpointer and has a checkpoint (it moved from another worker) continues
// after it, numbering on without a reset; its checkpoint is saved each time the blocks emitted
// so far are stored.
func (t *task) runSource(ctx context.Context, outs []*outPort, cp *checkpoints, last uint64) error {
	if last > 0 {
		t.sequencer.Resume(last)
	}
	// The sequencer is asked for the next block's number before the job produces it, so a reset
	// that arrives meanwhile applies to the block after (SB-3).
	step, err := nextSourceStep(t.drainCtx, t.sequencer)
	if err != nil {
		return nil
	}
	stepIn := t.logClock()
	err = t.runner.Generate(t.jctx, func(payloads [][]byte) error {
		if err := t.writeLogRow(ctx, stepIn, t.logClock()); err != nil {
			return err
		}
		tag := t.sourceTag(step, &t.sequence)
		for k, o := range outs {
			if err := t.answer(ctx, o, tag, t.jctx.OutHead(k), payloads[k], false, false); err != nil {
				return err
			}
		}
		t.stats.rounds.Add(1)
		if cp != nil {
			cp.save(step.SQN, outs)
		}
		var err error
		step, err = nextSourceStep(t.drainCtx, t.sequencer)
		stepIn = t.logClock()
		return err
	})
	switch {
	case err == nil, errors.Is(err, job.ErrEnd):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case t.drainCtx.Err() != nil:
		return nil // drained: the outputs end here
	}
	return err
}

// goKind is a Go job in the round engine: it computes each round where it is handed, and answers
// it on every output at once.
type goKind struct {
	t      *task
	outs   []*outPort
	outBuf [][]byte
	// sink saves a checkpointing sink's state with every round; the round's messages are
	// acknowledged once the checkpoint that covers them is stored.
	sink *sinkCheckpoints
	// skipUpTo: a restored sink has written the rounds up to this SQN already (the rounds come
	// again when their acknowledgement was lost); 0 once a later round, or a reset, came — but
	// not the restart named restart, which those rounds count from, sent again by a producer's
	// next instance (§8 "Replays").
	skipUpTo uint64
	// restart names the restart the sink's rounds count from, for its checkpoint; left is what
	// its inputs had left when it last looked (leftOf), never written to once made.
	restart string
	left    [][]string
}

// restoreLeft gives a restored sink's inputs the sequences the inputs it replaces had left
// (protocol.Checkpoint.Left): a producer's next instance may replay one of them, whose rows the
// sink wrote before (§8 "Replays"). An optional input is left out: its own goroutine takes its
// blocks into a buffer (feedOptional), and no row waits for them.
func (g *goKind) restoreLeft(ins []*input, left [][]string) {
	for k, in := range ins {
		if k < len(left) && in.pipe.Optional == nil {
			in.left = recentLeft(slices.Clone(left[k]))
		}
	}
	g.left = left
}

// leftOf is the sequences the job's inputs have left (none for an optional input, whose left
// its own goroutine keeps), for the sink's checkpoint: a new one only when an input left one
// since the last look (its left is never changed in place), so that a round costs no
// allocation and the checkpoint's goroutine may keep what it was given.
func (g *goKind) leftOf(ins []*input) [][]string {
	leftOf := func(in *input) []string {
		if in.pipe.Optional != nil {
			return nil
		}
		return in.left
	}
	changed := len(g.left) != len(ins)
	for k := 0; !changed && k < len(ins); k++ {
		changed = !slices.Equal(g.left[k], leftOf(ins[k]))
	}
	if changed {
		g.left = make([][]string, len(ins))
		for k, in := range ins {
			g.left[k] = leftOf(in)
		}
	}
	return g.left
}

func (g *goKind) step(ctx context.Context, r *round) (bool, error) {
	t := g.t
	if g.sink != nil || g.skipUpTo > 0 {
		// Only a checkpointing sink follows restarts: not a look at every round's head.
		_, reset, _ := codec.Flags(r.tag.head, t.headSize)
		if g.skipUpTo > 0 {
			replayed := reset && r.tag.restart != "" && r.tag.restart == g.restart
			if (reset && !replayed) || r.tag.sqn > g.skipUpTo {
				g.skipUpTo = 0
			} else {
				return false, nil // written before the move: acknowledged, not written twice
			}
		}
		if reset || r.tag.sqn == 1 {
			g.restart = r.tag.restart
		}
	}
	if g.sink != nil {
		defer func() { g.sink.record(r.tag.sqn, g.restart, g.leftOf(t.ins), r.tag.acks); r.tag.acks = nil }()
	}
	t.jctx.BeginBlock(r.heads)
	stepIn := t.logClock()
	var err error
	g.outBuf, err = t.runner.Step(t.jctx, r.payloads, g.outBuf)
	switch {
	case errors.Is(err, job.ErrEnd), errors.Is(err, job.ErrSkip):
		for _, o := range g.outs {
			t.skip(o, r.tag)
		}
		return errors.Is(err, job.ErrEnd), nil
	case err != nil:
		if r.connector {
			t.failedSQN = r.tag.sqn // the round that failed it, for its report (a poison round?)
		}
		return false, err
	}
	if err := t.writeLogRow(ctx, stepIn, t.logClock()); err != nil {
		return false, err
	}
	for k, o := range g.outs {
		// Only a chained output hands an input's payload on as it is (publisher.Write): the
		// others frame every block into their batch, and need not look.
		readOnly := o.pub.link != nil && withinInputs(g.outBuf[k], r.payloads)
		if err := t.answer(ctx, o, r.tag, t.jctx.OutHead(k), g.outBuf[k], r.connector, readOnly); err != nil {
			return false, err
		}
	}
	return false, nil
}

// skipRound answers a poison round with nothing on every output, as ErrSkip does: downstream
// makes a dummy there. A checkpointing sink records it (nothing written), so its messages are
// acknowledged with the checkpoint as any round's.
func (g *goKind) skipRound(_ context.Context, r *round) error {
	if g.sink != nil {
		g.sink.record(r.tag.sqn, g.restart, g.leftOf(g.t.ins), r.tag.acks)
		r.tag.acks = nil
	}
	for _, o := range g.outs {
		g.t.skip(o, r.tag)
	}
	return nil
}

// finished: the job called Finish, or wrote the finished bit in an output's head itself (SB-4),
// which ends it just the same.
func (g *goKind) finished() bool {
	if g.t.jctx.Finished() {
		return true
	}
	for _, o := range g.outs {
		if o.fin {
			return true
		}
	}
	return false
}

// newChecker builds the checker of the job's synchronous inputs, or nil when every input is
// async (the job then numbers its blocks as a source does).
func (t *task) newChecker(ins []*input) (*align.Checker, error) {
	inputs := make([]align.Input, len(ins))
	for k, in := range ins {
		c, err := codec.New(in.pipe.Codec, in.pipe.BlockSize)
		if err != nil {
			return nil, fmt.Errorf("%s: input pipe %d: %w", t.label, in.pipe.ID, err)
		}
		inputs[k] = align.Input{
			Pipe: in.pipe.ID, BlockCount: in.pipe.BlockCount, Async: in.pipe.Async, HeadSize: in.pipe.HeadSize,
			Dummy: t.assign.Job.EffectiveDummy(), ZeroPayload: c.Zero(),
			// Every codec has a zero payload (bytes: zero bytes; cbor and json: null before any
			// real block, then the zero value shaped like the last one), so "zero" dummies work on
			// every pipe.
			ZeroLike:  zeroLike(c),
			FixedSize: true,
		}
	}
	chk, err := align.New(inputs, t.headSize)
	if errors.Is(err, align.ErrNoSyncInput) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.label, err)
	}
	return chk, nil
}

// zeroLike shapes the zero dummies of a cbor or json input like its last real block; a bytes
// input's zero dummy is its block of zeros.
func zeroLike(c codec.Codec) func([]byte) ([]byte, error) {
	if c.Name() == codec.Bytes {
		return nil
	}
	return func(prev []byte) ([]byte, error) { return codec.ZeroLike(c, prev) }
}

// syncCheckerStats copies the checker's counters into the job's.
func (t *task) syncCheckerStats(chk *align.Checker, ins []*input) {
	var dummies, stale uint64
	for _, in := range chk.Stats().Inputs {
		dummies += in.Dummies
		stale += in.Stale
	}
	for _, in := range ins {
		stale += in.replays // restarts sent again are stale blocks too
	}
	t.stats.dummies.Store(dummies - t.skippedDummies)
	t.stats.stale.Store(stale)
}

// nextSourceStep numbers the next block of a source, waiting when a reset was asked for a
// future time (sources on several machines restart together).
func nextSourceStep(ctx context.Context, seq *align.SourceSequencer) (align.Step, error) {
	step := seq.NextNow()
	return step, waitStep(ctx, step)
}

// waitStep waits out a step's delay (a reset requested for a later time).
func waitStep(ctx context.Context, step align.Step) error {
	if step.Wait <= 0 {
		return nil
	}
	timer := time.NewTimer(step.Wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeAsync adds the async inputs to a round: the next block(s) of a plain async input, as they
// come, and whatever an optional input holds (it never waits). ended is true when a plain async
// input has ended.
func (t *task) takeAsync(ctx context.Context, ins []*input, opts *optionals, payloads [][][]byte, heads [][]uint32) (bool, error) {
	resetMask := codec.HeadMask(t.headSize, codec.BitReset)
	for k, in := range ins {
		if !in.pipe.Async {
			continue
		}
		payloads[k], heads[k] = payloads[k][:0], heads[k][:0]
		if opt := opts.bufs[k]; opt != nil {
			v, h, _ := opt.Read()
			payload, _ := v.([]byte)
			payloads[k], heads[k] = append(payloads[k], payload), append(heads[k], h)
			continue
		}
		for range max(in.pipe.BlockCount, 1) {
			b, ok, err := in.next(ctx, &t.stats)
			if err != nil || !ok {
				return !ok, err
			}
			payloads[k], heads[k] = append(payloads[k], b.Payload), append(heads[k], b.Head&^resetMask)
		}
	}
	return false, nil
}

// startOptionals starts, for each optional input, a goroutine that keeps its buffer filled so
// that the job never waits for it; they stop with ctx.
func (t *task) startOptionals(ctx context.Context, ins []*input) (*optionals, error) {
	opts := &optionals{bufs: map[int]*align.Optional{}, wake: make(chan struct{}, 1)}
	for k, in := range ins {
		pp := t.optionalOf(in.pipe.ID)
		if pp == nil {
			continue
		}
		c, err := codec.New(in.pipe.Codec, in.pipe.BlockSize)
		if err != nil {
			return nil, fmt.Errorf("%s: input pipe %d: %w", t.label, in.pipe.ID, err)
		}
		cfg := *pp
		def := c.Zero()
		if cfg.Default != nil {
			if def, err = c.Append(nil, cfg.Default); err != nil {
				return nil, fmt.Errorf("%s: input pipe %d: optional default: %w", t.label, in.pipe.ID, err)
			}
		}
		cfg.Default = def
		opt, err := align.NewOptional(in.pipe.ID, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.label, err)
		}
		opt.NotifyOn(opts.wake)
		opts.bufs[k] = opt
		done := make(chan struct{})
		opts.ended = append(opts.ended, done)
		go t.feedOptional(ctx, in, opt, done, opts.wake)
	}
	return opts, nil
}

// optionals are a job's optional inputs: their buffers by input index, a channel closed per
// input when its producer ended it, and one wake signalled by every Push and every end.
type optionals struct {
	bufs  map[int]*align.Optional
	ended []chan struct{}
	wake  chan struct{}
}

// await waits, for a job whose inputs are all optional, for its next round: until a value waits
// in some buffer (true), or every producer has ended and every buffer is empty (false). Such a
// job runs a round per value that arrives, the other inputs giving their stored value or default,
// and spends nothing while none arrives.
func (o *optionals) await(ctx context.Context) (bool, error) {
	for {
		for _, b := range o.bufs {
			if b.Len() > 0 {
				return true, nil
			}
		}
		if allClosed(o.ended) {
			return false, nil
		}
		select {
		case <-o.wake:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

func (t *task) optionalOf(pipe int) *pipeline.Optional {
	for _, b := range t.assign.Inputs {
		if b.ID == pipe {
			return b.Optional
		}
	}
	return nil
}

// feedOptional moves an optional input's blocks into its buffer as they come, acknowledging
// them at once: the buffer, not the stream, is where they wait (or are dropped, and counted).
func (t *task) feedOptional(ctx context.Context, in *input, opt *align.Optional, ended, wake chan struct{}) {
	resetMask := codec.HeadMask(t.headSize, codec.BitReset)
	for {
		b, ok, err := in.next(ctx, &t.stats)
		if err != nil || !ok {
			if err == nil {
				close(ended)
				select {
				case wake <- struct{}{}:
				default:
				}
			}
			return
		}
		if opt.Push(b.Payload, b.Head&^resetMask) {
			t.stats.queueDrops.Add(1)
		}
		for _, m := range in.done {
			if err := m.Ack(); err != nil {
				t.log.Debug("ack failed", "error", err)
			}
		}
		in.done = in.done[:0]
	}
}
