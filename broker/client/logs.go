package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/backoff"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Reading the log stream (protocol.LogStream) takes no consumer, for a consumer's deliver
// subject can point anywhere and read-only identities may not create one; every reader,
// operators too, reads the same way. History: JetStream direct gets in batches, from a stream
// sequence (or, at first, a start time) on, filtered by subject, in stream order. Following: a
// subscription to the filter's live subjects only wakes the reader, which then gets from the
// last sequence it read + 1, so no line is missed or read twice, whatever the live subscription
// delivers. A live line the stream has not stored yet is read again shortly (a backoff from
// 1 ms); a fallback timer wakes the reader too, for a live line it did not hear (a reconnect).

const (
	logBatch    = 256     // lines a direct get asks for
	logMaxBytes = 1 << 20 // bytes a direct get asks for at most
	// logFallback wakes a following reader that heard nothing: a line whose live copy it missed
	// is read at most this late.
	logFallback = time.Second
	// logLag bounds how long a reader waits for the stream to store the lines it heard live
	// without reading any of them: past it, they are taken as never stored.
	logLag        = 2 * time.Second
	logBackoffMax = 64 * time.Millisecond
	maxHeard      = 1 << 16 // live lines kept track of, not yet read
	// logEndPoll is how often a following ReadLogs asks whether the lines have ended.
	logEndPoll = 500 * time.Millisecond
)

// LogEntry is one line of the log stream.
type LogEntry struct {
	Seq     uint64    // its stream sequence
	Time    time.Time // when the stream stored it
	Subject string
	Data    []byte
}

// Line decodes the entry's log line.
func (e LogEntry) Line() (protocol.LogLine, error) {
	var l protocol.LogLine
	if err := json.Unmarshal(e.Data, &l); err != nil {
		return l, fmt.Errorf("log line %d on %s: %w", e.Seq, e.Subject, err)
	}
	return l, nil
}

// LogQuery selects the lines ReadLogs reads.
type LogQuery struct {
	// Filter selects the subjects: protocol.LogFilter(pipeline) or protocol.LogSubject(pipeline, job).
	Filter string
	// From: the first line read is the first stored at or after From (zero: the stream's first).
	From time.Time
	// Until, when set: reading stops at the first line stored at or after it (a later run's).
	Until time.Time
	// Ended, when set, makes ReadLogs follow: it reads new lines as they come, asking Ended every
	// half second, until Ended reports true and every line stored by then has been read. Without
	// it, ReadLogs returns once it has read every line stored.
	Ended func(context.Context) (bool, error)
}

// ReadLogs calls each for every line of q, in stream order, each once. It creates no consumer:
// it needs the rights to publish to protocol.LogDirectGetSubject and, to follow, to subscribe
// to q.Filter. An error from each ends it with that error.
func (c *Client) ReadLogs(ctx context.Context, q LogQuery, each func(LogEntry) error) error {
	r := c.newLogReader(q.Filter, 0, q.From)
	defer r.close()
	var poll <-chan time.Time
	if q.Ended != nil {
		if err := r.follow(); err != nil {
			return err
		}
		t := time.NewTicker(logEndPoll)
		defer t.Stop()
		poll = t.C
	}
	retry := time.NewTimer(logFallback)
	defer retry.Stop()
	ended := false
	for {
		for more := true; more; {
			entries, m, err := r.read(ctx)
			for _, e := range entries {
				if !q.Until.IsZero() && !e.Time.Before(q.Until) {
					return nil
				}
				if err := each(e); err != nil {
					return err
				}
			}
			if err != nil {
				return err
			}
			more = m
		}
		if q.Ended == nil || (ended && !r.waiting()) {
			return nil
		}
		retry.Reset(r.due())
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.refusedC():
			return r.refusedErr()
		case <-r.wake:
		case <-retry.C:
		case <-poll:
			if !ended {
				var err error
				if ended, err = q.Ended(ctx); err != nil {
					return err
				}
			}
		}
	}
}

// Follower receives a pipeline's log lines and events as they happen. Create it before
// submitting, so nothing is missed: its lines are those the log stream stores after Follow.
type Follower struct {
	c       *Client
	name    string
	logs    *logReader
	evSub   *nats.Subscription
	events  chan protocol.Event
	done    chan struct{} // closed by Close, so a blocked callback returns
	readErr error         // the last failure to read the logs; they are read again at the next wake
}

// Follow subscribes to the events of a pipeline, and to its log lines as a wake-up for reading
// them from the log stream.
func (c *Client) Follow(name string) (*Follower, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	f := &Follower{c: c, name: name, events: make(chan protocol.Event, 256), done: make(chan struct{}),
		logs: c.newLogReader(protocol.LogFilter(name), 0, time.Time{})}
	evSub, err := c.nc.Subscribe(protocol.EventSubject(name), func(m *nats.Msg) {
		var e protocol.Event
		if json.Unmarshal(m.Data, &e) == nil {
			select {
			case f.events <- e:
			case <-f.done:
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", name, err)
	}
	f.evSub = evSub
	// The live subscription before the stream's end: a line stored after that end is this
	// follower's, one stored before it an earlier run's of the same name.
	if err := f.logs.follow(); err != nil {
		f.Close()
		return nil, fmt.Errorf("follow %s: %w", name, err)
	}
	last, err := c.logStreamLastSeq(ctx)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("follow %s: %w", name, err)
	}
	f.logs.next = last + 1
	if err := c.nc.Flush(); err != nil {
		f.Close()
		return nil, fmt.Errorf("follow %s: %w", name, err)
	}
	return f, nil
}

// Close ends the subscriptions.
func (f *Follower) Close() {
	close(f.done)
	if f.evSub != nil {
		_ = f.evSub.Unsubscribe()
	}
	f.logs.close()
}

// Wait calls onLine for each log line and onEvent for each event until the pipeline reaches a
// final state, which it returns. Events travel as plain NATS messages; a status poll every
// second covers one that was lost. With onLine nil the logs are not read.
func (f *Follower) Wait(ctx context.Context, onLine func(protocol.LogLine), onEvent func(protocol.Event)) (protocol.PipelineStatus, error) {
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	retry := time.NewTimer(logFallback)
	defer retry.Stop()
	for {
		var wake <-chan struct{}
		var again <-chan time.Time
		if onLine != nil {
			if err := f.readLines(ctx, onLine); err != nil {
				return protocol.PipelineStatus{}, err
			}
			wake, again = f.logs.wake, retry.C
			retry.Reset(f.logs.due())
		}
		select {
		case <-ctx.Done():
			return protocol.PipelineStatus{}, ctx.Err()
		case <-f.logs.refusedC():
			return protocol.PipelineStatus{}, fmt.Errorf("follow %s: %w", f.name, f.logs.refusedErr())
		case <-wake:
		case <-again:
		case e := <-f.events:
			if onEvent != nil {
				onEvent(e)
			}
			if e.Job == 0 && protocol.Terminal(e.State) {
				return f.final(ctx, onLine)
			}
		case <-poll.C:
			st, err := f.c.Status(ctx, f.name)
			if err == nil && len(st) == 1 && protocol.Terminal(st[0].State) {
				return f.final(ctx, onLine)
			}
		}
	}
}

// readLines hands onLine every line stored since the last read, but the events (they come as
// events too). A refusal is returned; any other failure is kept in readErr and the lines are read
// again at the next wake, from where the last read ended, so none is lost.
func (f *Follower) readLines(ctx context.Context, onLine func(protocol.LogLine)) error {
	for {
		entries, more, err := f.logs.read(ctx)
		for _, e := range entries {
			if l, lerr := e.Line(); lerr == nil && l.Level != protocol.LevelEvent {
				onLine(l)
			}
		}
		var pe *PermissionError
		if errors.As(err, &pe) || (err != nil && ctx.Err() != nil) {
			return fmt.Errorf("logs of pipeline %s: %w", f.name, err)
		}
		if f.readErr = err; err != nil || !more {
			return nil
		}
	}
}

// final reads the lines up to the end and returns the final status. The lines heard live and
// not read yet are waited for (the stream may store one after the end's event reached us), at
// most logLag, and so is a failing read.
func (f *Follower) final(ctx context.Context, onLine func(protocol.LogLine)) (protocol.PipelineStatus, error) {
	if onLine != nil {
		_ = f.c.nc.Flush() // the live lines sent before the end are heard
		deadline := time.Now().Add(logLag)
		again := time.NewTimer(0)
		defer again.Stop()
		for {
			if err := f.readLines(ctx, onLine); err != nil {
				return protocol.PipelineStatus{}, err
			}
			if f.readErr == nil && !f.logs.waiting() {
				break
			}
			if time.Now().After(deadline) {
				if f.readErr != nil {
					return protocol.PipelineStatus{}, fmt.Errorf("logs of pipeline %s: %w", f.name, f.readErr)
				}
				break
			}
			again.Reset(min(f.logs.due(), time.Until(deadline)))
			select {
			case <-ctx.Done():
				return protocol.PipelineStatus{}, ctx.Err()
			case <-f.logs.wake:
			case <-again.C:
			}
		}
	}
	st, err := f.c.Status(ctx, f.name)
	if err != nil {
		return protocol.PipelineStatus{}, err
	}
	if len(st) != 1 {
		return protocol.PipelineStatus{}, fmt.Errorf("pipeline %s: no status", f.name)
	}
	return st[0], nil
}

// logStreamLastSeq returns the sequence of the last line the log stream holds (0: none yet).
func (c *Client) logStreamLastSeq(ctx context.Context) (uint64, error) {
	var info struct {
		State struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := c.call(ctx, protocol.LogStreamInfoSubject, struct{}{}, &info); err != nil {
		return 0, fmt.Errorf("the log stream's end: %w", err)
	}
	if info.Error != nil {
		return 0, fmt.Errorf("the log stream's end: %s: %d %s", protocol.LogStreamInfoSubject, info.Error.Code, info.Error.Description)
	}
	return info.State.LastSeq, nil
}

// directGetRequest is JetStream's direct get request, in its batch form.
type directGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	MaxBytes  int        `json:"max_bytes,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
}

// directGetLogs asks the log stream for the lines of req and hands each to onMsg, in stream
// order; more reports that the stream holds more lines of the filter past the last one handed.
func (c *Client) directGetLogs(ctx context.Context, req directGetRequest, onMsg func(*nats.Msg) error) (more bool, err error) {
	subject := protocol.LogDirectGetSubject
	data, err := json.Marshal(req)
	if err != nil {
		return false, fmt.Errorf("%s: %w", subject, err)
	}
	err = c.exchange(ctx, c.Timeout, subject, data, func(m *nats.Msg) (bool, error) {
		switch status := m.Header.Get("Status"); status {
		case "": // a line
			return false, onMsg(m)
		case "204": // the batch's end, with how many more lines there are
			n := m.Header.Get("Nats-Num-Pending")
			more = n != "" && n != "0"
			return true, nil
		case "404": // no line (left)
			return true, nil
		default:
			return true, fmt.Errorf("%s: %s %s", subject, status, m.Header.Get("Description"))
		}
	})
	if errors.Is(err, nats.ErrNoResponders) {
		return false, fmt.Errorf("the log stream %s answers no direct gets on %s (no broker, or one older than this marvelo): %w",
			protocol.LogStream, c.nc.ConnectedUrlRedacted(), err)
	}
	return more, err
}

// logEntryOf reads a line of a direct get's reply.
func logEntryOf(m *nats.Msg) (LogEntry, error) {
	seq, err := strconv.ParseUint(m.Header.Get(nats.JSSequence), 10, 64)
	if err != nil {
		return LogEntry{}, fmt.Errorf("%s: a line without its sequence: %w", protocol.LogDirectGetSubject, err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(nats.JSTimeStamp))
	if err != nil {
		return LogEntry{}, fmt.Errorf("%s: line %d without its time: %w", protocol.LogDirectGetSubject, seq, err)
	}
	return LogEntry{Seq: seq, Time: ts, Subject: m.Header.Get(nats.JSSubject), Data: m.Data}, nil
}

// logReader reads the lines of one filter from the log stream, from next on (or, while next is
// 0, from the first line stored at or after from).
type logReader struct {
	c      *Client
	filter string
	next   uint64
	from   time.Time

	// While following: the live subscription, its wake-ups, and its guard, ended when the
	// server refuses the subscription.
	sub     *nats.Subscription
	wake    chan struct{}
	guarded context.Context
	release func()

	mu     sync.Mutex
	heard  map[uint64]int // live lines heard and not read yet, by lineKey
	nheard int
	since  time.Time       // when the reading last caught up with a line heard (or the first was heard)
	reread backoff.Backoff // the wait before reading again for a line heard live, not yet read
}

func (c *Client) newLogReader(filter string, next uint64, from time.Time) *logReader {
	return &logReader{c: c, filter: filter, next: next, from: from, wake: make(chan struct{}, 1), heard: map[uint64]int{},
		reread: backoff.Backoff{First: time.Millisecond, Max: logBackoffMax}}
}

// follow subscribes to the filter's live subjects: each line published wakes the reader. Call
// it before the first read, so that a line published meanwhile is read.
func (r *logReader) follow() error {
	guarded, release := r.c.guard(context.Background(), OpSubscribe, r.filter)
	sub, err := r.c.nc.Subscribe(r.filter, r.onLive)
	if err != nil {
		release()
		return fmt.Errorf("follow %s: %w", r.filter, err)
	}
	r.sub, r.guarded, r.release = sub, guarded, release
	if err := r.c.nc.Flush(); err != nil {
		return fmt.Errorf("follow %s: %w", r.filter, err)
	}
	return nil
}

func (r *logReader) close() {
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
		r.release()
	}
}

// refusedC is closed when the server refuses the live subscription (nil when not following).
func (r *logReader) refusedC() <-chan struct{} {
	if r.guarded == nil {
		return nil
	}
	return r.guarded.Done()
}

// refusedErr is the server's refusal of the live subscription, or nil.
func (r *logReader) refusedErr() error {
	if r.guarded == nil {
		return nil
	}
	return refusal(r.guarded)
}

func (r *logReader) onLive(m *nats.Msg) {
	k := lineKey(m.Subject, m.Data)
	r.mu.Lock()
	if r.nheard < maxHeard {
		if r.nheard == 0 {
			r.since = time.Now()
		}
		r.heard[k]++
		r.nheard++
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// read reads the next batch of lines; more reports that the stream holds more. The lines read
// before a failure come with it.
func (r *logReader) read(ctx context.Context) (entries []LogEntry, more bool, err error) {
	if err := r.refusedErr(); err != nil {
		return nil, false, err
	}
	req := directGetRequest{Seq: r.next, NextFor: r.filter, Batch: logBatch, MaxBytes: logMaxBytes}
	if r.next == 0 && !r.from.IsZero() {
		from := r.from
		req.StartTime = &from
	}
	more, err = r.c.directGetLogs(ctx, req, func(m *nats.Msg) error {
		e, err := logEntryOf(m)
		if err != nil {
			return err
		}
		if e.Seq >= r.next { // never one read before, whoever answered
			entries = append(entries, e)
			r.next = e.Seq + 1
		}
		return nil
	})
	r.readHeard(entries)
	return entries, more, err
}

// readHeard strikes the lines read off the live lines heard.
func (r *logReader) readHeard(entries []LogEntry) {
	if r.sub == nil || len(entries) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range entries {
		k := lineKey(e.Subject, e.Data)
		if n := r.heard[k]; n > 0 {
			if n == 1 {
				delete(r.heard, k)
			} else {
				r.heard[k] = n - 1
			}
			r.nheard--
			r.since = time.Now()
			r.reread.Reset()
		}
	}
}

// waiting reports whether a line heard live has not been read yet (and logLag has not passed
// since the reading last caught up with one).
func (r *logReader) waiting() bool {
	if r.sub == nil {
		return false
	}
	if n, _, err := r.sub.Pending(); err == nil && n > 0 {
		return true // heard, not yet handed to onLive
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nheard > 0 && time.Since(r.since) <= logLag
}

// due returns how long to wait for a wake-up before reading again: briefly, with a backoff from
// 1 ms, while a line heard live has not been read (the stream has not stored it yet), else
// logFallback. Lines heard and not read within logLag are forgotten: never stored.
func (r *logReader) due() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nheard == 0 {
		r.reread.Reset()
		return logFallback
	}
	if time.Since(r.since) > logLag {
		clear(r.heard)
		r.nheard = 0
		r.reread.Reset()
		return logFallback
	}
	return r.reread.Next()
}

// lineKey identifies a line by its subject and content, to strike a line read off those heard.
func lineKey(subject string, data []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(subject))
	h.Write([]byte{0})
	h.Write(data)
	return h.Sum64()
}
