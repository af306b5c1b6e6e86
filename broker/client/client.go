// Package client is the marvelo command's side of the broker API: submit, status, stop, workers,
// and following a pipeline's logs and events to its end.
package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
	"github.com/marvelo/marvelo/pipeline/deps"
	"github.com/marvelo/marvelo/pipeline/protocol"
)

// Client talks to a broker over an open NATS connection.
type Client struct {
	nc      *nats.Conn
	Timeout time.Duration
	// Identity is who the connection is, as its credentials file says (the zero Identity: a
	// shared token); the permission errors name it. Set it before the first request.
	Identity Identity

	mu     sync.Mutex
	guards map[*guard]struct{} // the requests and subscriptions under way (request.go)
}

// New returns a client on nc. It takes over nc's error handler to learn at once when the server
// refuses a request or a subscription for lack of permission, instead of waiting for a timeout.
func New(nc *nats.Conn) *Client {
	c := &Client{nc: nc, Timeout: 30 * time.Second, guards: map[*guard]struct{}{}}
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.refused(err) })
	return c
}

// ErrInvalid marks a submission the broker rejected because the document is wrong.
var ErrInvalid = errors.New("invalid pipeline")

// Call sends req as JSON on subject, within the client's Timeout, and decodes the broker's reply
// into out: the marvelo commands' one way to ask the broker (see Request).
func (c *Client) Call(ctx context.Context, subject string, req, out any) error {
	return c.callWithin(ctx, c.Timeout, subject, req, out)
}

func (c *Client) call(ctx context.Context, subject string, req, out any) error {
	return c.Call(ctx, subject, req, out)
}

// callWithin is Call with its own timeout.
func (c *Client) callWithin(ctx context.Context, timeout time.Duration, subject string, req, out any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	m, err := c.Request(ctx, timeout, subject, data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("%s: bad reply: %w", subject, err)
	}
	return nil
}

// Submit sends a pipeline document (JSON or CBOR) to the broker. The dependencies folders of its
// executable jobs, relative to baseDir (the document's folder), are packed and uploaded first.
func (c *Client) Submit(ctx context.Context, doc []byte, baseDir string) (protocol.SubmitReply, error) {
	var r protocol.SubmitReply
	req := protocol.SubmitRequest{Document: doc}
	p, err := pipeline.Parse(doc)
	if err != nil {
		return r, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if req.Dependencies, err = c.uploadDependencies(ctx, p, baseDir); err != nil {
		return r, err
	}
	if err := c.call(ctx, protocol.SubjSubmit, req, &r); err != nil {
		return r, err
	}
	if !r.OK {
		if r.Invalid {
			return r, fmt.Errorf("%w: %s", ErrInvalid, r.Error)
		}
		return r, r.Err()
	}
	return r, nil
}

// uploadDependencies packs each executable or Python job's dependencies folder and stores it in the
// broker's object store, once per content. A folder that is missing is an invalid document.
func (c *Client) uploadDependencies(ctx context.Context, p *pipeline.Pipeline, baseDir string) (map[int]string, error) {
	var out map[int]string
	var store jetstream.ObjectStore
	for _, j := range p.Jobs {
		dir := j.DependenciesFolder()
		if dir == "" {
			continue
		}
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(baseDir, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w: %s: dependencies %s can't be found or isn't a directory", ErrInvalid, j.Label(), dir)
		}
		archive, digest, err := deps.Pack(dir)
		if err != nil {
			return nil, fmt.Errorf("%s: dependencies %s: %w", j.Label(), dir, err)
		}
		if store == nil {
			js, err := jetstream.New(c.nc)
			if err != nil {
				return nil, err
			}
			if store, err = js.ObjectStore(ctx, protocol.DepsBucket); err != nil {
				return nil, fmt.Errorf("dependencies store: %w", err)
			}
		}
		// The name is the archive's digest: an object stored under it whose digest (nats.go's
		// "SHA-256=<base64url>" in its metadata) or size is another's, replaced or cut short, is
		// uploaded again, so the next submission heals the store. The workers check the bytes.
		info, err := store.GetInfo(ctx, digest)
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, fmt.Errorf("%s: dependencies store: %w", j.Label(), err)
		}
		stored := false
		if err == nil {
			sum, err := jetstream.DecodeObjectDigest(info.Digest)
			stored = err == nil && fmt.Sprintf("%x", sum) == digest && info.Size == uint64(len(archive))
		}
		if !stored {
			if _, err := store.PutBytes(ctx, digest, archive); err != nil {
				return nil, fmt.Errorf("%s: upload dependencies: %w", j.Label(), err)
			}
		}
		if out == nil {
			out = map[int]string{}
		}
		out[j.ID] = digest
	}
	return out, nil
}

// Status returns the status of one pipeline, or of all when name is empty.
func (c *Client) Status(ctx context.Context, name string) ([]protocol.PipelineStatus, error) {
	return c.status(ctx, protocol.NameRequest{Pipeline: name})
}

// StatusWithPipes is Status with each running pipeline's pipe statistics (its streams and
// consumers as JetStream reports them, a request per pipe on the broker): for marvelo top.
func (c *Client) StatusWithPipes(ctx context.Context, name string) ([]protocol.PipelineStatus, error) {
	return c.status(ctx, protocol.NameRequest{Pipeline: name, Pipes: true})
}

func (c *Client) status(ctx context.Context, req protocol.NameRequest) ([]protocol.PipelineStatus, error) {
	var r protocol.StatusReply
	if err := c.call(ctx, protocol.SubjStatus, req, &r); err != nil {
		return nil, err
	}
	return r.Pipelines, r.Err()
}

// Stop stops a pipeline with the default grace and waits for its end: an error unless it ended
// stopped.
func (c *Client) Stop(ctx context.Context, name string) error {
	r, err := c.StopWith(ctx, protocol.StopRequest{Pipeline: name})
	if err != nil {
		return err
	}
	if r.State != protocol.StateStopped {
		return fmt.Errorf("pipeline %s ended %s, not stopped", name, r.State)
	}
	return nil
}

// StopWith stops a pipeline (drained for at most req.Grace, or outright with req.Force) and
// returns once the broker reports its end state, with the jobs it had to stop outright.
func (c *Client) StopWith(ctx context.Context, req protocol.StopRequest) (protocol.StopReply, error) {
	var r protocol.StopReply
	grace := req.Grace
	if grace <= 0 {
		grace = protocol.DefaultStopGrace
	}
	// The broker answers within grace + StopKillWait; the usual timeout comes on top.
	if err := c.callWithin(ctx, grace+protocol.StopKillWait+c.Timeout, protocol.SubjStop, req, &r); err != nil {
		return r, err
	}
	return r, r.Err()
}

// Reset makes a pipeline's sources restart their numbering with the reset bit, at a given time
// (the zero time: at once).
func (c *Client) Reset(ctx context.Context, name string, at time.Time) error {
	var r protocol.Reply
	if err := c.call(ctx, protocol.SubjReset, protocol.ResetRequest{Pipeline: name, At: at}, &r); err != nil {
		return err
	}
	return r.Err()
}

// Drain cordons a worker and moves its jobs to other workers; once the moves are over it returns
// the jobs moved and those pending (no worker took them), with why. The worker keeps running and
// takes no new job until Uncordon.
func (c *Client) Drain(ctx context.Context, worker string) (protocol.DrainReply, error) {
	var r protocol.DrainReply
	if err := c.callWithin(ctx, protocol.LeaveGrace+c.Timeout, protocol.SubjDrain, protocol.WorkerRequest{Worker: worker}, &r); err != nil {
		return r, err
	}
	return r, r.Err()
}

// DrainGroup drains every worker of a group at once (told on the group's subject); with shutdown
// the workers then exit as on SIGTERM. It returns the jobs moved and those pending, as Drain.
func (c *Client) DrainGroup(ctx context.Context, group string, shutdown bool) (protocol.DrainReply, error) {
	var r protocol.DrainReply
	req := protocol.WorkerRequest{Group: group, Shutdown: shutdown}
	if err := c.callWithin(ctx, protocol.LeaveGrace+10*time.Second+c.Timeout, protocol.SubjDrain, req, &r); err != nil {
		return r, err
	}
	return r, r.Err()
}

// Remove forgets ended pipelines: the ones named, and with ended every pipeline that has ended.
// It returns those removed, and an error naming those refused (not ended, unknown).
func (c *Client) Remove(ctx context.Context, names []string, ended bool) ([]string, error) {
	var r protocol.RemoveReply
	if err := c.call(ctx, protocol.SubjRemove, protocol.RemoveRequest{Pipelines: names, Ended: ended}, &r); err != nil {
		return nil, err
	}
	return r.Removed, r.Err()
}

// Uncordon lets a drained worker take jobs again.
func (c *Client) Uncordon(ctx context.Context, worker string) error {
	var r protocol.Reply
	if err := c.call(ctx, protocol.SubjUncordon, protocol.WorkerRequest{Worker: worker}, &r); err != nil {
		return err
	}
	return r.Err()
}

// Workers lists the workers the broker knows.
func (c *Client) Workers(ctx context.Context) ([]protocol.WorkerStatus, error) {
	var r protocol.WorkersReply
	if err := c.call(ctx, protocol.SubjWorkers, struct{}{}, &r); err != nil {
		return nil, err
	}
	return r.Workers, r.Err()
}

// ForwardInput sends each line read from r to the standard input of the given jobs (the
// interactive job reads it), and ends their input at the end of r. It returns when r ends or
// fails; a reader that blocks (a terminal) keeps it running until the process exits.
func (c *Client) ForwardInput(pipelineName string, jobs []int, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := append(sc.Bytes(), '\n')
		for _, j := range jobs {
			if err := c.nc.Publish(protocol.StdinSubject(pipelineName, j), line); err != nil {
				return fmt.Errorf("input for job %d: %w", j, err)
			}
		}
	}
	end := &nats.Msg{Header: nats.Header{codec.EndHeader: []string{"input"}}}
	for _, j := range jobs {
		end.Subject = protocol.StdinSubject(pipelineName, j)
		if err := c.nc.PublishMsg(end); err != nil {
			return fmt.Errorf("end of input for job %d: %w", j, err)
		}
	}
	if err := c.nc.Flush(); err != nil {
		return err
	}
	return sc.Err()
}

// InteractiveJobs lists the jobs of a pipeline that read typed input.
func InteractiveJobs(p *pipeline.Pipeline) []int {
	var ids []int
	for _, j := range p.Jobs {
		if j.Type == "interactive" {
			ids = append(ids, j.ID)
		}
	}
	return ids
}
