package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/marvelo/marvelo/broker"
	"github.com/marvelo/marvelo/broker/client"
	"github.com/marvelo/marvelo/cmd/local"
	"github.com/marvelo/marvelo/worker"
)

// startLocal starts the embedded broker (JetStream in memory) and worker, with the bench-only
// job types, and the bench's temporary folder (the jobs' working directory and the exec
// scenario's script).
func (r *benchRunner) startLocal(progress io.Writer) error {
	return r.startEmbedded(false, 0, progress)
}

// startEmbedded starts what local.Start starts for marvelo run — an embedded broker and one
// worker that takes every group, on real NATS connections — with the bench-only job types, in
// the bench's temporary folder, and with the NATS server's monitoring endpoint on a free
// loopback port: its varz count the bytes through the broker. stored keeps JetStream on disk, in
// a temporary folder of the broker's own, with the sync interval (0: always) instead of in
// memory. r.close stops it all.
func (r *benchRunner) startEmbedded(stored bool, interval time.Duration, progress io.Writer) error {
	dir, err := os.MkdirTemp("", "marvelo-bench-*")
	if err != nil {
		return err
	}
	r.scriptDir = dir
	logger := r.logger(progress)
	b, err := broker.Start(broker.Options{Listen: "127.0.0.1:-1", Memory: !stored, SyncInterval: interval, Logger: logger,
		Monitor: anyLoopbackPort})
	if err != nil {
		return err
	}
	r.closes = append(r.closes, b.Shutdown)
	r.monitors = []string{b.MonitorURL()}
	wnc, err := b.Connect()
	if err != nil {
		return err
	}
	r.closes = append(r.closes, wnc.Close)
	w, err := worker.New(wnc, worker.Options{Name: "local", Any: true, Local: true, SharedWorkDir: true,
		WorkDir: dir, Registry: benchRegistry(), Logger: logger})
	if err != nil {
		return err
	}
	if err := r.runWorker(w, 10*time.Second, "the embedded broker"); err != nil {
		return err
	}
	cnc, err := b.Connect()
	if err != nil {
		return err
	}
	r.closes = append(r.closes, cnc.Close)
	r.env = &local.Env{Broker: b, Client: client.New(cnc), Worker: w}
	return nil
}

// logger is the log of the embedded brokers and worker: discarded, or progress with --verbose.
func (r *benchRunner) logger(progress io.Writer) *slog.Logger {
	if r.opts.verbose {
		return slog.New(slog.NewTextHandler(progress, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// runWorker runs the bench worker until the runner closes, and waits until it has registered
// with the broker (where names it in the error).
func (r *benchRunner) runWorker(w *worker.Worker, wait time.Duration, where string) error {
	ctx, stop := context.WithCancel(context.Background())
	werr := make(chan error, 1)
	go func() { werr <- w.Run(ctx) }()
	// The worker stops before the connections and the brokers started before it.
	r.closes = append(r.closes, func() { stop(); <-werr })
	select {
	case <-w.Ready():
		return nil
	case err := <-werr:
		werr <- err
		return fmt.Errorf("worker: %w", err)
	case <-time.After(wait):
		return fmt.Errorf("the bench worker did not register with %s within %s", where, wait)
	}
}

// anyLoopbackPort is a listen address whose port the server picks as it binds it: no other
// listener can take it first, as one may take a port found free in advance.
const anyLoopbackPort = "127.0.0.1:-1"

// brokerBytes is the bytes the embedded NATS servers have received and sent so far (in_bytes +
// out_bytes of their varz, summed over a cluster's servers, routes included); 0 on a remote
// broker (--broker), whose servers the bench does not see.
func (r *benchRunner) brokerBytes(ctx context.Context) (int64, error) {
	var total int64
	for _, u := range r.monitors {
		v, err := readVarz(ctx, u)
		if err != nil {
			return 0, fmt.Errorf("the bytes through the broker: %w", err)
		}
		total += v.InBytes + v.OutBytes
	}
	return total, nil
}

// varz is what the bench reads of a NATS server's /varz.
type varz struct {
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
}

func readVarz(ctx context.Context, monitor string) (varz, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var v varz
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, monitor+"/varz", nil)
	if err != nil {
		return v, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("%s/varz: %s", monitor, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return v, fmt.Errorf("%s/varz: %w", monitor, err)
	}
	return v, nil
}
