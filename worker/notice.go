package worker

import (
	"context"
	"time"

	"github.com/marvelo/marvelo/pipeline/protocol"
)

// noticeTimeout bounds the report of one notice: the job waits for it (a sink's Setup), and a
// broker that does not answer in time costs the event, not the job.
const noticeTimeout = 5 * time.Second

// notice reports what a running job tells its operator (job.Context.Notify) to the broker, which
// makes it an event of the pipeline. The job's log has the line already; a notice the broker
// does not take is logged here and not retried.
func (w *Worker) notice(t *task, msg string) {
	js := protocol.JobState{
		Pipeline: t.assign.Pipeline, Job: t.assign.Job.ID, Epoch: t.assign.Epoch, Worker: w.opts.Name,
		State: protocol.StateRunning, Stats: t.stats.snapshot(), Time: time.Now(), Notice: msg,
	}
	ctx, cancel := context.WithTimeout(w.runCtx, noticeTimeout)
	defer cancel()
	if err := w.request(ctx, protocol.From(protocol.SubjJobState, w.opts.Name), js, nil); err != nil {
		w.log.Warn("job notice not reported", "pipeline", js.Pipeline, "job", js.Job, "notice", msg, "error", err)
	}
}
