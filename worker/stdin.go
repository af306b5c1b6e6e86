package worker

import (
	"io"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/marvelo/marvelo/codec"
)

// stdinReader is a job's standard input: the lines published on its stdin subject. It subscribes
// when the job is prepared, before the submitter can type anything, so no line is lost.
type stdinReader struct {
	nc      *nats.Conn
	subject string

	pr  *io.PipeReader
	pw  *io.PipeWriter
	sub *nats.Subscription
	mu  sync.Mutex
}

func newStdinReader(nc *nats.Conn, subject string) *stdinReader {
	pr, pw := io.Pipe()
	s := &stdinReader{nc: nc, subject: subject, pr: pr, pw: pw}
	s.subscribe()
	return s
}

func (s *stdinReader) Read(p []byte) (int, error) { return s.pr.Read(p) }

func (s *stdinReader) subscribe() {
	sub, err := s.nc.Subscribe(s.subject, func(m *nats.Msg) {
		if m.Header.Get(codec.EndHeader) != "" {
			_ = s.pw.Close()
			return
		}
		// Write blocks until the job reads: lines are typed slowly, and a job that does not keep
		// up only delays this subscription's own goroutine.
		_, _ = s.pw.Write(m.Data)
	})
	if err != nil {
		_ = s.pw.CloseWithError(err)
		return
	}
	s.mu.Lock()
	s.sub = sub
	s.mu.Unlock()
}

// Close ends the input: the job's reads return io.EOF.
func (s *stdinReader) Close() {
	_ = s.pw.Close()
	_ = s.pr.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sub != nil {
		_ = s.sub.Unsubscribe()
	}
}
