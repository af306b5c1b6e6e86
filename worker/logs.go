package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// jobLog publishes a job's log lines on its log subject, where the broker's log stream keeps them
// for `marvelo logs` and `marvelo run` prints them.
type jobLog struct {
	nc      *nats.Conn
	subject string
	base    protocol.LogLine
	local   *slog.Logger // the worker's own log, for when publishing fails
}

func newJobLog(nc *nats.Conn, a *protocol.Assignment, worker string, local *slog.Logger) *jobLog {
	return &jobLog{
		nc:      nc,
		subject: protocol.LogSubject(a.Pipeline, a.Job.ID),
		base:    protocol.LogLine{Pipeline: a.Pipeline, Job: a.Job.ID, Name: a.Job.DisplayName(), Worker: worker},
		local:   local,
	}
}

func (l *jobLog) publish(level, text string) {
	line := l.base
	line.Time, line.Level, line.Text = time.Now(), level, text
	data, err := json.Marshal(line)
	if err == nil {
		err = l.nc.Publish(l.subject, data)
	}
	if err != nil {
		l.local.Warn("job log line not published", "job", line.Job, "text", text, "error", err)
	}
}

// writer returns an io.Writer whose lines become log lines of the given level.
func (l *jobLog) writer(level string) *lineWriter {
	return &lineWriter{emit: func(s string) { l.publish(level, s) }}
}

// handler returns a slog.Handler that publishes records as log lines.
func (l *jobLog) handler() slog.Handler { return &logHandler{log: l} }

// lineWriter splits what is written into lines.
type lineWriter struct {
	mu   sync.Mutex
	buf  []byte
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(strings.TrimRight(string(w.buf[:i]), "\r"))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

// Flush emits a last line that has no newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

// logHandler is a slog.Handler that renders a record as "msg key=value ..." and publishes it.
type logHandler struct {
	log   *jobLog
	attrs []slog.Attr
	group string
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool {
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		fmt.Fprintf(&b, " %s=%v", key, a.Value.Resolve())
		return true
	}
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	h.log.publish(strings.ToLower(r.Level.String()), b.String())
	return nil
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &logHandler{log: h.log, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...), group: h.group}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	g := name
	if h.group != "" {
		g = h.group + "." + name
	}
	return &logHandler{log: h.log, attrs: h.attrs, group: g}
}
