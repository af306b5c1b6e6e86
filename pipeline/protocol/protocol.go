// Package protocol is the one definition of how the broker, the workers and the marvelo command
// talk over NATS: subject names, stream names and the messages of the control plane. The broker
// and worker packages never import each other; both import this.
//
// Control messages are JSON (easy to watch with `nats sub 'marvelo.>'`); blocks on pipes use the
// binary wire format of package codec.
package protocol

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/marvelo/marvelo/pipeline"
)

// Version is the protocol and software version a worker reports.
const Version = "0.1.0"

// Control-plane subjects.
const (
	// SubjRegister: request, worker → broker, WorkerInfo → Reply.
	SubjRegister = "marvelo.ctl.register"
	// SubjDeregister: request, worker → broker, WorkerInfo → Reply, on a clean shutdown.
	SubjDeregister = "marvelo.ctl.deregister"
	// SubjHeartbeatPrefix + worker name: publish, worker → broker, Heartbeat.
	SubjHeartbeatPrefix = "marvelo.ctl.heartbeat."
	// SubjJobState: request, worker → broker, JobState → Reply.
	SubjJobState = "marvelo.ctl.jobstate"
	// SubjLeave: request, worker → broker on From(SubjLeave, worker), WorkerRequest → DrainReply,
	// when a worker is told to stop (SIGTERM): the broker drains it and answers once its jobs
	// have moved.
	SubjLeave = "marvelo.ctl.leave"

	// API subjects: requests from the marvelo command to the broker.
	SubjSubmit  = "marvelo.api.submit"
	SubjStatus  = "marvelo.api.status"
	SubjStop    = "marvelo.api.stop"
	SubjWorkers = "marvelo.api.workers"
	SubjReset   = "marvelo.api.reset"
	// SubjDrain: WorkerRequest → DrainReply. The worker is cordoned (takes no new job) and its
	// jobs move elsewhere, as a dead worker's do; it keeps running.
	SubjDrain = "marvelo.api.drain"
	// SubjUncordon: WorkerRequest → Reply. A drained worker takes jobs again.
	SubjUncordon = "marvelo.api.uncordon"
	// SubjRemove: RemoveRequest → RemoveReply. Ended pipelines are forgotten: their state,
	// events, checkpoints and logs.
	SubjRemove = "marvelo.api.remove"
	// APISubjects matches every API subject: the operator's alone.
	APISubjects = "marvelo.api.>"

	// LogStream keeps the logs of all pipelines for `marvelo logs`.
	LogStream = "MARVELO_LOGS"
	// LogSubjects is the filter of LogStream.
	LogSubjects = "marvelo.*.log.>"
)

// Verbs the broker sends to one worker on WorkerSubject.
const (
	VerbPrepare = "prepare" // Assignment → Reply: build the job, check its args; do not start
	VerbStart   = "start"   // JobRef → Reply: start a prepared job
	VerbStop    = "stop"    // JobRef → Reply: stop a job (or every job of a pipeline when Job is 0)
	VerbReset   = "reset"   // ResetRequest → Reply: restart the numbering of a pipeline's sources
	// VerbLeave: LeaveRequest → Reply: end every job here without reporting it ended (the broker
	// moves them), waiting at most Grace for them to end.
	VerbLeave = "leave"
)

// WorkerSubject is the subject on which the broker reaches one worker.
func WorkerSubject(worker, verb string) string { return "marvelo.worker." + worker + "." + verb }

// GroupSubject is the subject on which the broker reaches every worker of a group.
func GroupSubject(group, verb string) string { return "marvelo.group." + group + "." + verb }

// PipeSubject is the subject that carries the blocks of one pipe.
func PipeSubject(pipelineName string, pipe int) string {
	return "marvelo." + pipelineName + ".pipe." + strconv.Itoa(pipe)
}

// PipeSubjects matches the subjects of every pipe of every pipeline (PipeSubject, PipeEndSubject).
const PipeSubjects = "marvelo.*.pipe.>"

// RealtimeRelayPrefix starts the subjects on which a worker with an identity of its own hears
// the pipe blocks published by another worker identity: RealtimeRelayPrefix.<account>.<pipe
// subject>. Each identity is a NATS account of its own (DESIGN.md §10), and what one isolated
// account publishes reaches another only through an import from the publisher's account, which
// names it. A realtime input is subscribed on its subject and on RealtimeRelaySubject.
const RealtimeRelayPrefix = "marvelo-rt"

// RealtimeRelaySubject is where a worker identity hears a realtime pipe's blocks published by
// other worker identities (RealtimeRelayPrefix).
func RealtimeRelaySubject(pipeSubject string) string {
	return RealtimeRelayPrefix + ".*." + pipeSubject
}

// PipeEndSubject carries the end-of-stream marker of a max_queue pipe, beside its blocks' subject
// in the same stream: the queue's limit counts the blocks' subject only, so the marker never
// takes a block's place.
func PipeEndSubject(pipeSubject string) string { return pipeSubject + ".end" }

// PipeStream is the JetStream stream holding one pipe. A stream per pipe, rather than one per
// pipeline, lets every pipe have its own limit and discard policy: a max_queue pipe drops its
// oldest block, every other pipe pushes back on its writer.
func PipeStream(pipelineName string, pipe int) string {
	return "MARVELO_" + pipelineName + "_" + strconv.Itoa(pipe)
}

// PipeConsumer names the durable consumer of a pipe's stream: one per pipe, since a pipe has
// exactly one destination, named for the destination job's assignment epoch. When the job moves,
// the broker replaces the consumer by one of the new epoch: the new instance is delivered at once
// every block not yet acknowledged, and a stale instance's late acknowledgements reach a consumer
// that no longer exists instead of removing blocks the new instance has not processed.
func PipeConsumer(job int, epoch uint64) string {
	return "job" + strconv.Itoa(job) + "-e" + strconv.FormatUint(epoch, 10)
}

// CheckpointBucket is the JetStream KV bucket of source checkpoints; CheckpointKey names one.
const CheckpointBucket = "marvelo_checkpoints"

// CheckpointKey is the key of a job's checkpoint.
func CheckpointKey(pipelineName string, job int) string {
	return pipelineName + "." + strconv.Itoa(job)
}

// Checkpoint is what a source saves once the blocks up to SQN are stored: it resumes from here.
type Checkpoint struct {
	SQN   uint64 `json:"sqn"`
	State []byte `json:"state"`
	// Restart is a sink's: the name of the restart its SQN counts from (codec.RestartHeader),
	// so that the sink restored does not take that restart, sent again, for a new one.
	Restart string `json:"restart,omitempty"`
	// Left is a sink's too: per input, in the job's order, the names of the restarts that input
	// had left (newest last), so that the sink restored drops a replay of an older sequence as
	// the input it replaces did.
	Left [][]string `json:"left,omitempty"`
}

// LogSubject carries the log lines of one job.
func LogSubject(pipelineName string, job int) string {
	return "marvelo." + pipelineName + ".log." + strconv.Itoa(job)
}

// LogFilter selects every log line of a pipeline.
func LogFilter(pipelineName string) string { return "marvelo." + pipelineName + ".log.>" }

// StdinSubject carries the lines typed for one job (the interactive job). A message with the
// header codec.EndHeader ends the input.
func StdinSubject(pipelineName string, job int) string {
	return "marvelo." + pipelineName + ".stdin." + strconv.Itoa(job)
}

// EventSubject carries the events of a pipeline (job state changes, moves, the end).
func EventSubject(pipelineName string) string { return "marvelo." + pipelineName + ".event" }

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// CheckName reports whether s may be used as a pipeline or worker name: it becomes a NATS subject
// token and part of stream names.
func CheckName(kind, s string) error {
	if !tokenRE.MatchString(s) {
		return fmt.Errorf("%s name %q: use 1 to 64 letters, digits, '-' or '_'", kind, s)
	}
	return nil
}

// Reply answers every control request.
type Reply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Err turns a Reply into an error.
func (r Reply) Err() error {
	if r.OK {
		return nil
	}
	if r.Error == "" {
		return fmt.Errorf("request failed")
	}
	return fmt.Errorf("%s", r.Error)
}

// WorkerInfo is what a worker says about itself when it registers.
type WorkerInfo struct {
	Name   string   `json:"name"`
	Groups []string `json:"groups"`
	Slots  int      `json:"slots"`
	Types  []string `json:"types"`
	// Specs describe the Go job types with their args, for checking a submission's args
	// before it is placed (SpecLookup).
	Specs   []pipeline.TypeSpec `json:"specs,omitempty"`
	Local   bool                `json:"local,omitempty"` // the head node's worker: runs LOCAL jobs
	Any     bool                `json:"any,omitempty"`   // accepts every group (marvelo run's single worker)
	Version string              `json:"version"`
	Host    string              `json:"host,omitempty"`
	PID     int                 `json:"pid,omitempty"`
	Started time.Time           `json:"started"`
}

// Metrics are read from the worker's OS with each heartbeat.
type Metrics struct {
	CPUFree  float64 `json:"cpu_free"`  // percent of all CPUs idle
	MemFree  float64 `json:"mem_free"`  // percent of memory available
	SwapUsed float64 `json:"swap_used"` // percent of swap used
	DiskFree float64 `json:"disk_free"` // percent of the workdir's file system free
	Load1    float64 `json:"load1"`
}

// JobRef names one job of one pipeline.
type JobRef struct {
	Pipeline string `json:"pipeline"`
	Job      int    `json:"job"`
	Epoch    uint64 `json:"epoch,omitempty"`
	// Drain, in a stop request, ends sources gracefully (their streams end) and leaves the
	// other jobs to finish what is in flight.
	Drain bool `json:"drain,omitempty"`
}

// Heartbeat is published by every worker every heartbeat interval.
type Heartbeat struct {
	Worker  string     `json:"worker"`
	Time    time.Time  `json:"time"`
	Metrics Metrics    `json:"metrics"`
	Stats   []JobState `json:"stats,omitempty"`
}

// PipeBinding is one pipe as a job's runtime needs it.
type PipeBinding struct {
	ID         int    `json:"id"`
	Subject    string `json:"subject"`
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	Codec      string `json:"codec"`
	BlockSize  int    `json:"block_size,omitempty"`
	BlockCount int    `json:"block_count"`
	Async      bool   `json:"async,omitempty"`
	// Optional is the pipe's optional settings (an optional pipe is async and never blocks).
	Optional *pipeline.Optional `json:"optional,omitempty"`
	MaxQueue int                `json:"max_queue,omitempty"` // of the destination job; 0 = backpressure
	// Realtime pipes travel on core NATS (subject only, no stream): nothing is stored, and a
	// receiver that falls behind drops the oldest blocks.
	Realtime bool `json:"realtime,omitempty"`
	// Chain, when not 0, says the pipe is chained (issue 25, DESIGN.md §8 "Chains"): the broker
	// placed both its ends on this worker together, at this epoch, and the worker passes its blocks
	// from one to the other in process. Both ends' bindings carry the same value.
	Chain    uint64 `json:"chain,omitempty"`
	HeadSize int    `json:"head_size"`
	// Dtype is a bytes pipe's element type, for Python jobs (pipeline.Pipe.Dtype).
	Dtype string `json:"dtype,omitempty"`
	// CodecDefault: the document declares no codec for the pipe; Codec is the default (cbor).
	// An executable's output that does not fit says so.
	CodecDefault bool `json:"codec_default,omitempty"`
}

// PipeMaxMsgs is the most messages a pipe's stream holds unread (a pipe without max_queue); its
// writer then waits (backpressure). With the publisher's batch bound it also bounds how far ahead
// of the last SQN of a pipe the next one may be (worker: maxSQNJump, DESIGN §7).
const PipeMaxMsgs = 4096

// Assignment tells a worker to run one job.
type Assignment struct {
	Pipeline string        `json:"pipeline"`
	Epoch    uint64        `json:"epoch"`
	Job      pipeline.Job  `json:"job"`
	Inputs   []PipeBinding `json:"inputs"`
	Outputs  []PipeBinding `json:"outputs"`
	// Dependencies names the object in DepsBucket to unpack into the job's working directory.
	Dependencies string `json:"dependencies,omitempty"`
	// SkipSQN is a round the job is not handed (a poison round: it failed the job twice in a
	// row, and its restart policy skips it): its outputs get a dummy for it, as for a lost
	// block. 0: none.
	SkipSQN uint64 `json:"skip_sqn,omitempty"`
}

// Ref returns the assignment's JobRef.
func (a *Assignment) Ref() JobRef { return JobRef{Pipeline: a.Pipeline, Job: a.Job.ID, Epoch: a.Epoch} }

// Job and pipeline states.
const (
	StatePending  = "pending"
	StateStarting = "starting"
	StateRunning  = "running"
	StateFinished = "finished"
	StateFailed   = "failed"
	StateStopped  = "stopped"
	StateDegraded = "degraded"
	StateStopping = "stopping" // sources drained, the rest finishing what is in flight
)

// Terminal reports whether a state is final.
func Terminal(state string) bool {
	return state == StateFinished || state == StateFailed || state == StateStopped
}

// JobStats are a job's counters.
type JobStats struct {
	BlocksIn   uint64 `json:"blocks_in"`
	BlocksOut  uint64 `json:"blocks_out"`
	Rounds     uint64 `json:"rounds"`
	Stale      uint64 `json:"stale,omitempty"`       // blocks dropped as late or duplicate
	Dummies    uint64 `json:"dummies,omitempty"`     // blocks made up for missing ones
	QueueDrops uint64 `json:"queue_drops,omitempty"` // blocks dropped by max_queue
	BytesIn    uint64 `json:"bytes_in,omitempty"`    // payload bytes of the blocks read
	BytesOut   uint64 `json:"bytes_out,omitempty"`   // payload bytes of the blocks written
	// Redeliveries counts the messages JetStream delivered again (not acknowledged in time).
	Redeliveries uint64 `json:"redeliveries,omitempty"`
	// CPUSeconds and MemBytes are the CPU time used and the resident memory of the job's process:
	// an executable's own program, a Go job's worker process (shared by its Go jobs).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	MemBytes   uint64  `json:"mem_bytes,omitempty"`
	// Links are the job's chained outputs (issue 25): a chained pipe has no stream, so its
	// producer counts what passes on it, for status, top and /metrics.
	Links []LinkStats `json:"links,omitempty"`
}

// LinkStats is one chained pipe as its producer's worker sees it.
type LinkStats struct {
	Pipe     int    `json:"pipe"`
	Messages uint64 `json:"messages"` // messages put on the link (each one block or a batch)
	Unacked  uint64 `json:"unacked"`  // put, not yet acknowledged by the consumer (in the pipe now)
	Waiting  uint64 `json:"waiting"`  // put, not yet taken by the consumer (its lag)
}

// Plus returns the counts of s and o together: s an instance of a job, o its instances before
// (the job moved). The resident memory is a gauge: s's own.
func (s JobStats) Plus(o JobStats) JobStats {
	s.BlocksIn += o.BlocksIn
	s.BlocksOut += o.BlocksOut
	s.Rounds += o.Rounds
	s.Stale += o.Stale
	s.Dummies += o.Dummies
	s.QueueDrops += o.QueueDrops
	s.BytesIn += o.BytesIn
	s.BytesOut += o.BytesOut
	s.Redeliveries += o.Redeliveries
	s.CPUSeconds += o.CPUSeconds
	// A link's messages count on across instances; what is in it now is the current one's.
	links := append([]LinkStats(nil), s.Links...)
	for _, ol := range o.Links {
		found := false
		for i := range links {
			if links[i].Pipe == ol.Pipe {
				links[i].Messages += ol.Messages
				found = true
			}
		}
		if !found {
			links = append(links, LinkStats{Pipe: ol.Pipe, Messages: ol.Messages})
		}
	}
	s.Links = links
	return s
}

// PipeStats is one pipe's stream and its consumer as JetStream reports them (marvelo top and
// the broker's /metrics); a realtime pipe has no stream and none.
type PipeStats struct {
	ID  int `json:"id"`
	Job int `json:"job"` // the job that reads the pipe
	// Messages counts the messages written to the pipe in this run (the stream's last sequence);
	// a message carries one block or a batch of them.
	Messages    uint64 `json:"messages"`
	Stored      uint64 `json:"stored"`       // messages in the stream now
	StoredBytes uint64 `json:"stored_bytes"` // their bytes
	Pending     uint64 `json:"pending"`      // the consumer's lag: stored, not yet delivered
	AckPending  uint64 `json:"ack_pending"`  // delivered, not yet acknowledged
	Redelivered uint64 `json:"redelivered"`  // delivered more than once, not yet acknowledged
	// Chained: the pipe passes its blocks in its worker's process (issue 25); the figures are its
	// link's, as its producer reported them last: Stored and StoredBytes are what it holds unacknowledged
	// (bytes unknown: 0), Pending what the consumer has not taken.
	Chained bool `json:"chained,omitempty"`
}

// JobState reports a job's state change (and, in heartbeats, its counters).
type JobState struct {
	Pipeline string    `json:"pipeline"`
	Job      int       `json:"job"`
	Epoch    uint64    `json:"epoch,omitempty"`
	Worker   string    `json:"worker"`
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	Stats    JobStats  `json:"stats"`
	Time     time.Time `json:"time"`
	// Notice, when set, is something the running job reports without changing state (a file
	// sink that started its file again, job.Context.Notify): the broker records it as an event
	// of kind EventJobNotice and leaves the job's state as it is.
	Notice string `json:"notice,omitempty"`
	// SQN is the round a failed job failed at, when the worker knows it (a Go job's round, the
	// "at SQN n" of a program's error, else the oldest round a program left unanswered); 0
	// otherwise. The broker's restart policy counts a round that fails again and again (a
	// poison round).
	SQN uint64 `json:"sqn,omitempty"`
}

// EventJobNotice is the kind of the event a JobState's Notice becomes.
const EventJobNotice = "job notice"

// SubmitRequest carries a pipeline document (CBOR) to the broker.
type SubmitRequest struct {
	Document []byte `json:"document"`
	// Dependencies maps the id of an executable job to the object (in DepsBucket) holding its
	// packed dependencies folder.
	Dependencies map[int]string `json:"dependencies,omitempty"`
}

// DepsBucket is the JetStream object store bucket of packed dependency folders, named by the
// sha256 of their archive: an unchanged folder is uploaded and fetched once.
const DepsBucket = "marvelo_deps"

// SubmitReply answers a submit.
type SubmitReply struct {
	Reply
	Pipeline string `json:"pipeline,omitempty"`
	State    string `json:"state,omitempty"`
	// Invalid says the document itself is wrong (exit code 2), not the system.
	Invalid bool `json:"invalid,omitempty"`
}

// NameRequest names a pipeline (status, stop); an empty name in a status request means all.
type NameRequest struct {
	Pipeline string `json:"pipeline"`
	// Pipes asks a status request for each pipeline's PipeStats too (a JetStream request per
	// pipe: marvelo top asks, marvelo status does not).
	Pipes bool `json:"pipes,omitempty"`
}

// StopRequest asks the broker to stop a pipeline: its sources end and the other jobs finish
// what is in flight, for at most Grace (0: DefaultStopGrace); what still runs then is stopped
// outright. Force skips the drain. The reply comes once the pipeline has ended.
type StopRequest struct {
	Pipeline string        `json:"pipeline"`
	Grace    time.Duration `json:"grace,omitempty"`
	Force    bool          `json:"force,omitempty"`
}

// DefaultStopGrace bounds the drain of a stop when the request names no grace.
const DefaultStopGrace = 10 * time.Second

// StopKillWait bounds how long, after the grace, the broker waits for the workers to report the
// jobs it stopped outright; a job still unreported then is recorded stopped by the broker. A
// stop therefore ends within Grace + StopKillWait.
const StopKillWait = 5 * time.Second

// RemoveRequest names the ended pipelines to forget (marvelo rm); Ended names every pipeline
// that has ended. A pipeline that has not ended is refused.
type RemoveRequest struct {
	Pipelines []string `json:"pipelines,omitempty"`
	Ended     bool     `json:"ended,omitempty"`
}

// RemoveReply lists the pipelines removed; Error names those refused (not ended, unknown).
type RemoveReply struct {
	Reply
	Removed []string `json:"removed,omitempty"`
}

// StopReply answers a stop with the pipeline's end state and the jobs that had to be stopped
// outright because they did not drain within the grace.
type StopReply struct {
	Reply
	State  string   `json:"state,omitempty"`
	Forced []string `json:"forced,omitempty"`
}

// WorkerRequest names a worker (drain, uncordon, leave).
type WorkerRequest struct {
	Worker string `json:"worker"`
	// Group, in a drain instead of Worker: every worker of the group is drained at once, told on
	// the group's subject (VerbGroupLeave); with Shutdown they then exit as on SIGTERM
	// (VerbGroupShutdown).
	Group    string `json:"group,omitempty"`
	Shutdown bool   `json:"shutdown,omitempty"`
}

// DrainReply answers a drain with what happened to each job the drained workers ran: Moved
// ("PIPELINE: JOB to worker W"), or Pending ("PIPELINE: JOB: why"), still waiting for a worker
// or failed to move; a job that ended meanwhile is in neither. A drain with jobs pending is not
// a failure of the request (the worker is cordoned all the same), but marvelo drain exits 1.
type DrainReply struct {
	Reply
	Moved   []string `json:"moved,omitempty"`
	Pending []string `json:"pending,omitempty"`
}

// LeaveRequest asks a worker to end its jobs so that they move elsewhere.
type LeaveRequest struct {
	Grace time.Duration `json:"grace"`
}

// LeaveGrace bounds how long a leaving worker waits for its jobs to end before the broker moves
// them anyway.
const LeaveGrace = 5 * time.Second

// ResetRequest asks every source (and all-async job) of a pipeline to restart its numbering
// with the reset bit, at At if it is set (so sources on several machines restart together).
type ResetRequest struct {
	Pipeline string    `json:"pipeline"`
	At       time.Time `json:"at,omitempty"`
}

// Event is one thing that happened to a pipeline.
type Event struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	Job      int       `json:"job,omitempty"`
	Kind     string    `json:"kind"`
	Message  string    `json:"message"`
	State    string    `json:"state,omitempty"` // the pipeline's state after the event
}

// JobStatus is one job as `marvelo status` shows it.
type JobStatus struct {
	ID     int      `json:"id"`
	Name   string   `json:"name"`
	Worker string   `json:"worker,omitempty"`
	State  string   `json:"state"`
	Error  string   `json:"error,omitempty"`
	Stats  JobStats `json:"stats"`
	// Restarts counts the job's new instances in this run: moves and restarts after failures.
	Restarts int `json:"restarts,omitempty"`
	// FailureRestarts counts the restarts after a failure its restart policy allowed (each is
	// in Restarts too); RestartMax is what the policy allows (0: "never").
	FailureRestarts int `json:"failure_restarts,omitempty"`
	RestartMax      int `json:"restart_max,omitempty"`
}

// Run is one submission of a pipeline: `marvelo logs --run ID` shows its lines.
type Run struct {
	ID        int       `json:"id"`
	State     string    `json:"state"`
	Submitted time.Time `json:"submitted"`
	Ended     time.Time `json:"ended,omitempty"`
}

// PipelineStatus is one pipeline as `marvelo status` shows it: its latest run, and the runs
// of the same name before it in Runs (the latest last).
type PipelineStatus struct {
	Name      string      `json:"name"`
	Run       int         `json:"run"`
	Runs      []Run       `json:"runs,omitempty"`
	State     string      `json:"state"`
	Reason    string      `json:"reason,omitempty"`
	Error     string      `json:"error,omitempty"`
	Submitted time.Time   `json:"submitted"`
	Ended     time.Time   `json:"ended,omitempty"`
	Jobs      []JobStatus `json:"jobs"`
	Events    []Event     `json:"events,omitempty"`
	Pipes     []PipeStats `json:"pipes,omitempty"` // only when the request asked for them
	// Chained lists the pipes whose blocks pass in a worker's process (issue 25): both ends run
	// on one worker, placed there together. Empty once the pipeline has ended.
	Chained []int `json:"chained,omitempty"`
}

// StatusReply answers a status request.
type StatusReply struct {
	Reply
	Pipelines []PipelineStatus `json:"pipelines"`
}

// WorkerStatus is one worker as `marvelo workers` shows it.
type WorkerStatus struct {
	WorkerInfo
	Alive bool `json:"alive"`
	// LastHeartbeat is when the worker was last heard; zero when unknown: it was alive when the
	// broker restarted and has not spoken since.
	LastHeartbeat time.Time `json:"last_heartbeat"`
	Metrics       Metrics   `json:"metrics"`
	SlotsUsed     int       `json:"slots_used"`
	// Refused counts the publishes and subscriptions the broker refused this worker's identity.
	Refused  uint64 `json:"refused,omitempty"`
	Cordoned bool   `json:"cordoned,omitempty"` // drained: takes no new job
}

// WorkersReply answers a workers request.
type WorkersReply struct {
	Reply
	Workers []WorkerStatus `json:"workers"`
}

// LogLine is one line of a job's output or log. The broker also writes each event of a pipeline
// into its log (level LevelEvent, Kind the event's kind, Text its message; job 0 for the
// pipeline's own), so marvelo logs shows a job's lifecycle among its lines.
type LogLine struct {
	Time     time.Time `json:"time"`
	Pipeline string    `json:"pipeline"`
	Job      int       `json:"job"`
	Name     string    `json:"name"`
	Worker   string    `json:"worker"`
	Level    string    `json:"level"`
	Text     string    `json:"text"`
	Kind     string    `json:"kind,omitempty"`
}

// LevelEvent is the level of a log line that is an event of the pipeline (LogLine).
const LevelEvent = "event"

// ---- Placement by offer (DESIGN.md §8, "Placement by offer") ----

// Verbs of placement. An offer goes to every worker of a group at once on
// GroupSubject(group, VerbOffer) (or to a job's `node` on WorkerSubject(node, VerbOffer)); each
// worker answers with a Bid. The broker picks one bidder and reserves its slot with VerbReserve
// on WorkerSubject: the reservation holds the slot until the job is prepared there, released (a
// VerbStop naming it) or ReserveTTL has passed.
const (
	VerbOffer   = "offer"   // Offer → Bid
	VerbReserve = "reserve" // JobRef → Reply: refused when no slot is free any more
)

// Announcements to every worker of a group, on GroupSubject(group, verb), answered like a
// request to each worker (a Reply from every one).
const (
	// VerbGroupLeave: LeaveRequest → GroupReply from each worker: end every job here without
	// reporting it ended (the broker moves them), as VerbLeave does for one worker.
	VerbGroupLeave = "leave"
	// VerbGroupShutdown: nothing → GroupReply from each worker, which then stops as on SIGTERM
	// (drained, deregistered, exit 0).
	VerbGroupShutdown = "shutdown"
)

// GroupReply is a worker's answer to an announcement to its group.
type GroupReply struct {
	Reply
	Worker string `json:"worker"`
}

// ReserveTTL bounds how long a reserved slot waits for its job's prepare: a broker that
// reserved and then went away does not hold a worker's slot for ever.
const ReserveTTL = 30 * time.Second

// LocalSlots is the capacity of the head node's worker (and of marvelo run's single worker) for
// LOCAL jobs, whatever its slots.
const LocalSlots = 1000

// Offer asks the workers of a group whether they can take one job now.
type Offer struct {
	Pipeline string       `json:"pipeline"`
	Epoch    uint64       `json:"epoch"`
	Group    string       `json:"group,omitempty"` // "" when offered to the job's node
	Job      pipeline.Job `json:"job"`
}

// Bid is a worker's answer to an Offer: it can take the job now (OK) with its current load, or
// it declines and says why.
type Bid struct {
	Worker  string  `json:"worker"`
	OK      bool    `json:"ok"`
	Reason  string  `json:"reason,omitempty"`
	Free    int     `json:"free"`  // free slots now, reservations counted
	Slots   int     `json:"slots"` // its capacity
	Metrics Metrics `json:"metrics"`
}

// CheckGroups reports whether every group of a worker may be a subject token of its
// GroupSubjects: a group named "*", ">" or with a dot would hear other groups' offers.
func (w WorkerInfo) CheckGroups() error {
	for _, g := range w.Groups {
		if err := CheckName("group", g); err != nil {
			return err
		}
	}
	return nil
}

// Capacity is how many jobs a worker runs at once: its slots, and at least LocalSlots on the
// head node's worker or marvelo run's.
func (w WorkerInfo) Capacity() int {
	if w.Local || w.Any {
		return max(w.Slots, LocalSlots)
	}
	return w.Slots
}

// InGroup reports whether a worker belongs to group g: ALL is every worker but the head node's,
// LOCAL is the head node's worker, a worker with Any belongs to every group.
func (w WorkerInfo) InGroup(g string) bool {
	switch {
	case w.Any:
		return true
	case g == pipeline.GroupLocal:
		return w.Local
	case g == pipeline.GroupAll:
		return !w.Local
	}
	for _, mine := range w.Groups {
		if mine == g {
			return true
		}
	}
	return false
}

// GroupSubjects are the subjects a worker subscribes to for the offers and announcements of its
// groups (InGroup): `marvelo.group.<name>.>` for each, ALL and LOCAL included where it belongs;
// every group's for a worker with Any.
func (w WorkerInfo) GroupSubjects() []string {
	if w.Any {
		return []string{GroupSubject("*", ">")}
	}
	var out []string
	seen := map[string]bool{}
	for _, g := range append([]string{pipeline.GroupAll, pipeline.GroupLocal}, w.Groups...) {
		if !seen[g] && w.InGroup(g) {
			seen[g] = true
			out = append(out, GroupSubject(g, ">"))
		}
	}
	return out
}
