package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/worker/align"
	"github.com/marvelo/marvelo/worker/execjob"
)

// An executable job runs as a process the adapter (package execjob) connects to the job's pipes.
// With inputs it is a kind of the round engine (engine.go): each round is written to the
// program's inputs, and the program answers every round on every output, in order (DESIGN.md §5,
// "The executable protocol"). The n-th block read from an output is the answer to the n-th
// round written: it carries that round's SQN and head — the finished bit included, whether or
// not the program has a head — and releases the round's input messages once stored. A program
// with a head that answers with the corrupted bit skips the round: nothing is published, and
// downstream makes a dummy there as for a lost block. A program that answers a round it was not
// given, or ends an output with rounds unanswered after its inputs ended, fails the job with
// both counts. A source program's blocks are numbered as a Go source's.

// execKind is an executable job in the round engine.
type execKind struct {
	t    *task
	proc *execjob.Process
	ins  []*input
	outs []*execOutput
	// written: a sink program's rounds buffered, acknowledged once written to it.
	written []*roundAcks
	given   atomic.Uint64 // rounds written to the program
	answers atomic.Uint64 // answers read, on all outputs (watchStall)
	// closed: the program stopped reading its inputs before they ended (it exited or closed
	// one); the rounds it did not answer are then consumed all the same.
	closed bool
	// endsEarly: the program may end, exit status 0, before answering every round it was given:
	// a Python job raising marvelo.End. The rounds it did not answer are consumed, as when it
	// stops reading; a shell or C program that does so is still an error (a lost answer).
	endsEarly bool
	// sqn: "exec": {"sqn": true}; the program answers only the rounds it means to, each answer
	// naming its round by SQN (see give and takeAnswer).
	sqn bool
	// window: the input messages an output may hold given and unanswered before the oldest of
	// them are released unanswered (half the input consumer's MaxAckPending).
	window int
	// finishedByProgram: an answer carried a finished bit the program set (head: true) on a
	// round whose head did not: the job ends with that round, as a Go connector calling Finish
	// does. stopRounds stops the round loop then.
	finishedByProgram atomic.Bool
	stopRounds        func(error)
	// writeCtx bounds the writes to the program: the pipes' context, not the round loop's, so
	// that the rounds stopping after a finish never cut a round written halfway.
	writeCtx context.Context
	// steps numbers a source program's blocks, alike on every output.
	steps *programSteps
}

// programSteps numbers the blocks of a source program: the n-th block of every output carries
// the n-th step of the job's sequencer, drawn by whichever output reaches it first, so outputs
// joined downstream stay aligned (one draw per output would number them apart).
type programSteps struct {
	seq *align.SourceSequencer

	mu     sync.Mutex
	base   uint64       // the index of steps[0]
	steps  []align.Step // drawn and not yet taken by every output
	cursor []uint64     // per output: the index of its next block
}

func newProgramSteps(seq *align.SourceSequencer, outputs int) *programSteps {
	return &programSteps{seq: seq, cursor: make([]uint64, outputs)}
}

// next returns the step of output k's next block. The output that draws a step waits out its
// delay (a reset requested for a later time); the others take it as drawn.
func (p *programSteps) next(ctx context.Context, k int) (align.Step, error) {
	p.mu.Lock()
	i := p.cursor[k]
	p.cursor[k]++
	if i < p.base+uint64(len(p.steps)) {
		step := p.steps[i-p.base]
		p.prune()
		p.mu.Unlock()
		return step, nil
	}
	step := p.seq.NextNow()
	p.steps = append(p.steps, step)
	p.prune()
	p.mu.Unlock()
	return step, waitStep(ctx, step)
}

// prune forgets the steps every output has taken.
func (p *programSteps) prune() {
	low := slices.Min(p.cursor)
	if n := low - p.base; n > 0 {
		p.steps = p.steps[n:]
		p.base = low
	}
}

// errProgramFinished stops the rounds of an executable that set the finished bit itself.
var errProgramFinished = errors.New("the program set the finished bit")

// execOutput is one output of a running executable.
type execOutput struct {
	port     *outPort
	tags     chan roundTag // rounds written to the program and not answered yet, oldest first
	answered uint64
	// ended: the output's answer carrying the finished bit is written; the program's later
	// answers on it are read, checked and dropped.
	ended bool
	// sequence names the restarts of a source program's blocks on this output; its pump owns it.
	sequence sequenceName

	// With sqn: the rounds given and not answered, oldest first, guarded by mu (step gives,
	// pump takes). The first released of them are released already (the window); unreleased
	// counts the input messages of the others.
	mu         sync.Mutex
	pending    []roundTag
	released   int
	unreleased int
	lastGiven  uint64
	lastAnswer uint64
	anyAnswer  bool
}

// sqnAckWindow is half the MaxAckPending of an input's consumer (64, broker consumerConfig): a
// program that stays silent for long never stalls its inputs (a max_queue input has 1, and a
// window of 0).
const sqnAckWindow = 32

// give records round tag as given to the program on output o, and releases the oldest rounds
// given while more than window input messages wait unanswered: they are acknowledged before
// they are answered (DESIGN.md §5). Beyond execTagQueue rounds the oldest is forgotten (a later
// answer to it fails as an SQN never given).
func (o *execOutput) give(tag roundTag, window int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pending = append(o.pending, tag)
	o.lastGiven = tag.sqn
	if tag.acks != nil {
		o.unreleased += len(tag.acks.msgs)
	}
	for o.unreleased > window && o.released < len(o.pending) {
		if a := o.pending[o.released].acks; a != nil {
			o.unreleased -= len(a.msgs)
			a.release()
			o.pending[o.released].acks = nil
		}
		o.released++
	}
	if len(o.pending) > execTagQueue {
		o.pending = o.pending[1:]
		o.released = max(o.released-1, 0)
	}
}

// takeAnswer matches an answer carrying sqn with the round it answers: it returns the rounds
// given before it, skipped, and its tag; an SQN not increasing or never given is an error.
func (e *execKind) takeAnswer(o *execOutput, sqn uint64) (skipped []roundTag, tag roundTag, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	pipe := o.port.pub.pipe.ID
	if o.anyAnswer && sqn <= o.lastAnswer {
		return nil, tag, fmt.Errorf("%s: output pipe %d: the program answered SQN %d after SQN %d (answers must carry increasing SQNs)",
			e.t.label, pipe, sqn, o.lastAnswer)
	}
	i := 0
	for i < len(o.pending) && o.pending[i].sqn < sqn {
		i++
	}
	if i == len(o.pending) || o.pending[i].sqn != sqn {
		last := "none"
		if o.anyAnswer {
			last = fmt.Sprint(o.lastAnswer)
		}
		return nil, tag, fmt.Errorf("%s: output pipe %d: the program answered SQN %d, which it was never given (last SQN given %d, last answered %s)",
			e.t.label, pipe, sqn, o.lastGiven, last)
	}
	skipped = append(skipped, o.pending[:i]...)
	tag = o.pending[i]
	o.pending = o.pending[i+1:]
	for _, tg := range append(skipped, tag) {
		if tg.acks != nil {
			o.unreleased -= len(tg.acks.msgs)
		}
	}
	o.released = max(o.released-(i+1), 0)
	o.lastAnswer, o.anyAnswer = sqn, true
	return skipped, tag, nil
}

// takeRest returns the rounds given on o and never answered.
func (o *execOutput) takeRest() []roundTag {
	o.mu.Lock()
	defer o.mu.Unlock()
	rest := o.pending
	o.pending, o.released, o.unreleased = nil, 0, 0
	return rest
}

// execTagQueue bounds the rounds a program may hold unanswered on an output: beyond, writing the
// next round waits for an answer (backpressure, as a Go job gets).
const execTagQueue = 1 << 14

// step queues the round for each output's answer, then writes it to the program: an answer can
// never come before its round is queued. A round is written whole (writeCtx) or not at all.
func (e *execKind) step(ctx context.Context, r *round) (bool, error) {
	for _, o := range e.outs {
		if e.sqn {
			o.give(r.tag, e.window)
			continue
		}
		select {
		case o.tags <- r.tag:
		case <-e.proc.Exited():
			// The program ended without reading this far (a Python job's End, a program that
			// exits early): its queue of unanswered rounds is full and nobody answers them any
			// more. It stopped reading: the rounds end here, as when a write finds it gone.
			e.closed = true
			return true, nil
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	e.given.Add(1)
	maxQueue := e.t.assign.Job.MaxQueue > 0
	if maxQueue {
		// The queue is the stream's, where the oldest blocks are dropped: the program is handed
		// a round once it has read the one before, not a pipe full of old ones.
		if err := e.proc.WaitInputsRead(e.writeCtx); err != nil {
			return false, err
		}
	}
	if err := e.proc.BufferRoundSQN(r.tag.sqn, r.payloads, r.heads); err != nil {
		return false, err
	}
	if len(e.outs) == 0 && r.tag.acks != nil {
		// A sink program: the round is done once written to it, not once buffered.
		e.written = append(e.written, r.tag.acks)
		r.tag.acks = nil
	}
	// Rounds that are ready one after the other go to the program with one write; the rounds
	// are written before the engine could wait for an input.
	if !maxQueue && e.proc.Buffered() < execFlushBytes && e.nextReady() {
		return false, nil
	}
	return e.flush(e.writeCtx)
}

// skipRound queues a poison round on every output without writing it to the program: the
// output answers it with nothing (a dummy downstream) in its place, after the answers to the
// rounds before it (nextTag); with "sqn" it is a round given and never answered, skipped by the
// next answer as any such round. A sink program has nothing to answer: the engine releases it.
func (e *execKind) skipRound(ctx context.Context, r *round) error {
	tag := r.tag
	tag.poison = true
	for _, o := range e.outs {
		if e.sqn {
			o.give(tag, e.window)
			continue
		}
		select {
		case o.tags <- tag:
		case <-e.proc.Exited():
			e.closed = true // gone without reading this far: the rounds end at the next step
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// nextTag takes the round the next answer on output o answers, first answering with nothing the
// poison rounds queued before it (skipRound); false when no round is left.
func (e *execKind) nextTag(o *execOutput) (roundTag, bool) {
	for {
		select {
		case tag := <-o.tags:
			if tag.poison {
				e.t.skip(o.port, tag)
				continue
			}
			return tag, true
		default:
			return roundTag{}, false
		}
	}
}

// failedRound is the round a program that failed (err) failed at, when it can be told: the last
// "at SQN n" its stderr names (the Python runner's "run failed at SQN n", a malformed frame at
// SQN n), else the oldest round an output was given and left unanswered; 0 for neither. Called
// once the outputs have been read to their end.
func (e *execKind) failedRound(err error) uint64 {
	var exit *execjob.ExitError
	if errors.As(err, &exit) {
		for i := len(exit.Stderr) - 1; i >= 0; i-- {
			if m := atSQN.FindStringSubmatch(exit.Stderr[i]); m != nil {
				if n, perr := strconv.ParseUint(m[1], 10, 64); perr == nil {
					return n
				}
			}
		}
	}
	for _, o := range e.outs {
		if e.sqn {
			o.mu.Lock()
			var sqn uint64
			for _, tag := range o.pending {
				if !tag.poison {
					sqn = tag.sqn
					break
				}
			}
			o.mu.Unlock()
			if sqn != 0 {
				return sqn
			}
			continue
		}
		if tag, ok := e.nextTag(o); ok {
			return tag.sqn
		}
	}
	return 0
}

// atSQN finds the round a program's error names.
var atSQN = regexp.MustCompile(`\bat SQN (\d+)\b`)

// execFlushBytes bounds the rounds buffered for a program before they are written.
const execFlushBytes = 64 << 10

// nextReady reports whether the next round can be assembled without waiting: every input the
// round takes from holds enough blocks, or has a message waiting.
func (e *execKind) nextReady() bool {
	for _, in := range e.ins {
		if in.pipe.Optional != nil || in.ended {
			continue
		}
		if len(in.cur.blocks)-in.pos < max(in.pipe.BlockCount, 1) && len(in.ch) == 0 {
			return false
		}
	}
	return true
}

// flush writes the buffered rounds; ended is true when the program no longer reads.
func (e *execKind) flush(ctx context.Context) (ended bool, err error) {
	err = e.proc.Flush(ctx)
	if err == nil || errors.Is(err, execjob.ErrInputClosed) { // a program that stopped reading consumed them

		for _, a := range e.written {
			a.release()
		}
	}
	e.written = e.written[:0]
	if err != nil {
		if errors.Is(err, execjob.ErrInputClosed) {
			e.closed = true
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// finished: the program set the finished bit on an answer (give); the rounds may have stopped
// already, wherever they waited.
func (e *execKind) finished() bool { return e.finishedByProgram.Load() }

// runExec runs the executable to its end: inputs closed when the rounds end, outputs read until
// the program closes them, the exit status as the job's result. procCtx bounds the program (a
// drained source's ends first); ctx bounds the pipes, which still flush after a drain. A failed
// output (a malformed frame, an answer too many) stops the rounds and the program at once.
func (t *task) runExec(procCtx, ctx context.Context, ins []*input, outs []*outPort) error {
	if len(ins) > 0 && !hasSyncInput(ins) {
		return fmt.Errorf("%s: an executable job needs at least one synchronous input", t.label)
	}
	proc, err := execjob.Start(procCtx, *t.execSpec, func(stream, line string) {
		if stream == execjob.Stderr {
			t.log.Warn(line)
			return
		}
		fmt.Fprintln(t.jctx.Out, line)
	})
	if err != nil {
		return err
	}
	defer proc.Stop(execjob.DefaultGrace) // releases everything once it has exited
	t.stats.usage.setPid(proc.Pid())      // the job's CPU and memory are its program's (metrics.go)
	e := &execKind{t: t, proc: proc, ins: ins, outs: make([]*execOutput, len(outs)), sqn: t.execSpec.Exec.SQN, window: sqnAckWindow,
		endsEarly: t.assign.Job.Python != nil}
	if t.assign.Job.MaxQueue > 0 {
		e.window = 0 // the input's consumer lets one message out at a time
	}
	for k, o := range outs {
		e.outs[k] = &execOutput{port: o, tags: make(chan roundTag, execTagQueue)}
	}
	if len(ins) == 0 {
		e.steps = newProgramSteps(t.sequencer, len(outs))
	}
	loopCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	e.stopRounds, e.writeCtx = cancel, ctx
	var wg sync.WaitGroup
	outErrs := make([]error, len(e.outs))
	for k, o := range e.outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if outErrs[k] = e.pump(ctx, o, len(ins) == 0); outErrs[k] != nil {
				cancel(outErrs[k]) // the rounds stop at once, wherever they wait
				proc.Stop(0)       // the program has nothing more to say
			}
		}()
	}
	if len(ins) > 0 && len(outs) > 0 && !e.sqn && !e.endsEarly {
		wg.Go(func() { e.watchStall(loopCtx) })
	}
	var loopErr error
	if len(ins) > 0 {
		loopErr = t.runRounds(loopCtx, ins, outs, e)
		switch {
		case e.finishedByProgram.Load():
			loopErr = nil // the job ended with the round the program finished; nothing more is written
		case loopErr == nil && !e.closed:
			_, loopErr = e.flush(ctx) // the last rounds buffered
		}
	}
	if cerr := proc.CloseInputs(); cerr != nil && loopErr == nil {
		loopErr = cerr
	}
	wg.Wait()
	waitErr := proc.Wait()
	if err := errors.Join(outErrs...); err != nil {
		return t.defaultCodecNote(err)
	}
	drained := procCtx.Err() != nil && ctx.Err() == nil
	if waitErr != nil && !drained {
		if len(ins) > 0 && ctx.Err() == nil {
			t.failedSQN = e.failedRound(waitErr) // for its report (a poison round?)
		}
		return t.defaultCodecNote(waitErr)
	}
	if loopErr != nil {
		return loopErr
	}
	return t.defaultCodecNote(e.settle())
}

// settle checks, once the program has closed its outputs, that it answered every round it was
// given; rounds left unanswered by a program that stopped reading on its own are consumed.
func (e *execKind) settle() error {
	given := e.given.Load()
	for _, o := range e.outs {
		if o.ended {
			continue // its last block carried the finished bit; later rounds were never its
		}
		if e.sqn {
			// The program exited 0 after its input: the rounds it did not answer are skipped
			// (the stream's end marker names the last, should it be the last).
			for _, tag := range o.takeRest() {
				e.t.skip(o.port, tag)
			}
			continue
		}
		var rest []roundTag
		unanswered := 0
		for len(o.tags) > 0 {
			tag := <-o.tags
			rest = append(rest, tag)
			if !tag.poison {
				unanswered++
			}
		}
		if unanswered == 0 {
			for _, tag := range rest {
				e.t.skip(o.port, tag) // poison rounds after the last answer (skipRound)
			}
			continue
		}
		if !e.closed && !e.finishedByProgram.Load() && !e.endsEarly {
			return fmt.Errorf("%s: output pipe %d: the program answered %d of the %d rounds it was given (every round needs one answer on every output; a program with head: true skips one by answering with the corrupted bit)%s",
				e.t.label, o.port.pub.pipe.ID, o.answered, given, e.mismatch(o))
		}
		for _, tag := range rest {
			if e.endsEarly {
				e.t.consume(o.port, tag) // the job ended (End) before this round: its output ends before it
				continue
			}
			e.t.skip(o.port, tag)
		}
	}
	return nil
}

// pump publishes every block the program writes to one output, as the answer to the oldest
// round it has not answered (a source's: numbered as it comes).
func (e *execKind) pump(ctx context.Context, o *execOutput, source bool) error {
	t := e.t
	var buf []byte
	for {
		payload, head, sqn, err := e.proc.ReadOutputSQN(o.port.k, buf[:0])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, execjob.ErrStopped) {
				return nil // stopped by the worker (a stop, a drain, or another output's error)
			}
			return err
		}
		buf = payload
		if source {
			step, err := e.steps.next(ctx, o.port.k)
			if err != nil {
				return err
			}
			if err := t.answer(ctx, o.port, t.sourceTag(step, &o.sequence), head, payload, false, false); err != nil {
				return err
			}
			continue
		}
		if e.sqn {
			skipped, tg, err := e.takeAnswer(o, sqn)
			if err != nil {
				return err
			}
			for _, s := range skipped {
				t.skip(o.port, s) // not answered before a later round: downstream makes a dummy
			}
			o.answered++
			e.answers.Add(1)
			if err := e.give(ctx, o, tg, head, payload); err != nil {
				return err
			}
			continue
		}
		tag, ok := e.nextTag(o)
		if !ok {
			return fmt.Errorf("%s: output pipe %d: the program answered %d times, more than the %d rounds it was given (every round needs exactly one answer on every output)%s",
				t.label, o.port.pub.pipe.ID, o.answered+1, e.given.Load(), e.mismatch(o))
		}
		o.answered++
		e.answers.Add(1)
		if err := e.give(ctx, o, tag, head, payload); err != nil {
			return err
		}
	}
}

// give writes the program's answer to the round tag on output o: nothing (downstream makes a
// dummy) when a program with a head set the corrupted bit, nothing at all once the output has
// ended. An answer with the finished bit ends the output; one whose finished bit the program set
// (the round's head did not carry it) ends the job with that round, as Finish ends a Go
// connector: no more rounds are written, the inputs close, and the program's answers to the
// rounds it was given after that one are dropped. A program that finishes sets the bit on the
// same round of every output.
func (e *execKind) give(ctx context.Context, o *execOutput, tag roundTag, head uint32, payload []byte) error {
	t := e.t
	if o.ended {
		return nil
	}
	if t.assign.Job.Head && head&codec.HeadMask(t.headSize, codec.BitCorrupted) != 0 {
		t.skip(o.port, tag) // the program skips this round: downstream makes a dummy
		return nil
	}
	if err := t.answer(ctx, o.port, tag, head, payload, true, false); err != nil {
		return err
	}
	if o.port.fin {
		o.ended = true
		fin := codec.HeadMask(t.headSize, codec.BitFinished)
		if tag.head&fin == 0 && !e.finishedByProgram.Swap(true) {
			e.stopRounds(errProgramFinished)
		}
	}
	return nil
}

// stallAfter is how long a program may hold rounds it has read without answering any before
// its job reports it, once (a variable: tests shorten it).
var stallAfter = 5 * time.Second

// watchStall reports, once, a program that has read the rounds it was given and answered none
// of them for stallAfter: most often its output is block-buffered (a Python file opened without
// buffering=1, C stdio without fflush), and the pipeline stalls without a word. A program whose
// inputs still hold rounds it has not read is busy, not stalled, and is not reported. It is a
// notice (the job's log and a "job notice" event in marvelo status and logs), not an error: a
// program may also be slow. It returns when ctx ends or the program exits.
func (e *execKind) watchStall(ctx context.Context) {
	tick := time.NewTicker(stallAfter)
	defer tick.Stop()
	answers, since := e.answers.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.proc.Exited():
			return
		case <-tick.C:
		}
		now := e.answers.Load()
		if now != answers {
			answers, since = now, time.Now()
			continue
		}
		given, answered := e.given.Load(), now/uint64(len(e.outs))
		if given < answered+2 || !e.proc.InputsRead() {
			continue // at most one round in hand, or rounds not read yet: the program is busy
		}
		quiet := time.Since(since).Round(100 * time.Millisecond)
		what := fmt.Sprintf("read %d rounds, answered %d in %s", given, answered, quiet)
		if answered > 0 {
			what = fmt.Sprintf("read %d rounds, answered %d, none in the last %s", given, answered, quiet)
		}
		e.t.jctx.Notify(what + ": is its output buffered? A program writes each answer when it has it " +
			"(Python: print(..., flush=True) or open(out, \"w\", buffering=1); C: fflush after each block)")
		return
	}
}

// defaultCodecNote adds to a program's failure the input pipes it read as cbor because the
// document declares no codec for them: a program that reads JSON lines fails on CBOR bytes (or
// waits for a newline), and nothing else would name the codec.
func (t *task) defaultCodecNote(err error) error {
	if err == nil || t.assign.Job.Python != nil {
		return err // the runner reads every codec
	}
	var notes []string
	for _, b := range t.assign.Inputs {
		if b.CodecDefault {
			notes = append(notes, fmt.Sprintf(`input pipe %d is cbor, the default, as the document declares no codec for it (a program that reads JSON lines needs {"id": %d, "codec": "json"} in "pipes")`, b.ID, b.ID))
		}
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%w\nnote: %s", err, strings.Join(notes, "; "))
}

// mismatch is "; " and what the program's first bytes on output o look like when they do not
// fit its pipe's codec (a count of answers is off when the frames are cut wrong), else "".
func (e *execKind) mismatch(o *execOutput) string {
	if hint := e.proc.OutputMismatch(o.port.k); hint != "" {
		return "; " + hint
	}
	return ""
}

// hasSyncInput reports whether a job has an input the checker aligns.
func hasSyncInput(ins []*input) bool {
	for _, in := range ins {
		if !in.pipe.Async {
			return true
		}
	}
	return false
}
