package worker

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A job's data path — its publishes, pulls, acknowledgements and checkpoints — runs on a NATS
// connection of its own, beside the worker's control connection (registration, heartbeats,
// reports, logs). On one connection shared by every job, one read loop in the server parses
// every publish of the worker and one read loop in the client every delivery to it, so a
// worker's jobs took turns on a single core each way; with a connection per job they run in
// parallel, as separate programs do. Measured in one session (marvelo bench linear --sizes
// 4096,16384 --rate 0, three interleaved pairs of --runs 3): 4 KiB 36.6–43.5k → 46.9–50.4k
// blocks/s, 16 KiB 11.5–13.4k → 16.4–18.1k.
//
// The connection is the worker's own in every other respect: the same servers, credentials and
// client name (the broker maps connections to workers by name: one that closes while another of
// the worker is open moves nothing, DESIGN.md §8), without the worker's connection handlers
// (they log, and may end the worker, for the control connection only).

// jobConnFlush bounds the flush of a job connection's last acknowledgements before it closes.
const jobConnFlush = time.Second

// openJobConn opens a job's data connection; release flushes and closes it. Where it cannot be
// opened, the job runs on the worker's connection, and the reason is logged.
func (w *Worker) openJobConn(label string) (js jetstream.JetStream, release func()) {
	o := w.nc.Opts
	o.ClosedCB, o.DisconnectedCB, o.DisconnectedErrCB, o.ConnectedCB = nil, nil, nil, nil
	o.ReconnectedCB, o.DiscoveredServersCB, o.LameDuckModeHandler, o.ReconnectErrCB = nil, nil, nil, nil
	if url := w.nc.ConnectedUrl(); url != "" && len(o.Servers) == 0 {
		o.Url = url
	}
	nc, err := o.Connect()
	if err == nil {
		js, err = jetstream.New(nc)
		if err != nil {
			nc.Close()
		}
	}
	if err != nil {
		w.log.Warn("job runs on the worker's connection: its own could not be opened", "job", label, "error", err)
		return w.js, func() {}
	}
	return js, func() {
		_ = nc.FlushTimeout(jobConnFlush) // the last acknowledgements; any lost are delivered again
		nc.Close()
	}
}
