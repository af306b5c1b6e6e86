// Package pipeline defines the pipeline document: the graph of jobs joined by numbered pipes that
// users write as JSON and submit as CBOR (DESIGN.md §3). It decodes both forms strictly, encodes
// CBOR deterministically and validates a document, reporting every problem at once.
//
// The package is pure: no NATS, no goroutines, no I/O beyond what a caller hands it.
package pipeline

import "time"

// Pipeline is one pipeline document.
type Pipeline struct {
	Name  string `json:"name" cbor:"name"`
	Jobs  []Job  `json:"jobs" cbor:"jobs"`
	Pipes []Pipe `json:"pipes,omitempty" cbor:"pipes,omitempty"`
}

// Job is one vertex of the graph: a Go job (Type), an executable job (Exec) or a Python job
// (Python): exactly one of the three.
type Job struct {
	ID       int            `json:"id" cbor:"id"`
	Name     string         `json:"name,omitempty" cbor:"name,omitempty"`
	Type     string         `json:"type,omitempty" cbor:"type,omitempty"`
	Args     map[string]any `json:"args,omitempty" cbor:"args,omitempty"`
	Exec     *Exec          `json:"exec,omitempty" cbor:"exec,omitempty"`
	Python   *Python        `json:"python,omitempty" cbor:"python,omitempty"`
	Inputs   []int          `json:"inputs,omitempty" cbor:"inputs,omitempty"`
	Outputs  []int          `json:"outputs,omitempty" cbor:"outputs,omitempty"`
	Groups   []string       `json:"groups,omitempty" cbor:"groups,omitempty"`
	Node     string         `json:"node,omitempty" cbor:"node,omitempty"`
	MaxQueue int            `json:"max_queue,omitempty" cbor:"max_queue,omitempty"`
	Head     bool           `json:"head,omitempty" cbor:"head,omitempty"`
	HeadSize int            `json:"head_size,omitempty" cbor:"head_size,omitempty"`
	Dummy    string         `json:"dummy,omitempty" cbor:"dummy,omitempty"`
	Log      bool           `json:"log,omitempty" cbor:"log,omitempty"`
	// Spread keeps the job apart from its producers: it is not placed beside them by preference,
	// and none of its inputs is chained (DESIGN.md §8, "Chains"; issue 25).
	Spread bool `json:"spread,omitempty" cbor:"spread,omitempty"`
	// Restart is what happens when the job fails (an error, a non-zero exit, a crash): nil is
	// "never", the failure fails the pipeline (DESIGN.md §3, §8).
	Restart *Restart `json:"restart,omitempty" cbor:"restart,omitempty"`
}

// Restart is a job's restart policy (dora's restart_policy, Storm's supervisors): a job that
// fails is placed again, as a move after a worker loss, and resumes from what its inputs
// acknowledged; the pipeline fails only once the policy is exhausted.
type Restart struct {
	// Policy is "never" (a failure fails the pipeline) or "on-failure".
	Policy string `json:"policy" cbor:"policy"`
	// Max is how many restarts after failures a run allows (on-failure; default 3).
	Max int `json:"max,omitempty" cbor:"max,omitempty"`
	// Backoff is the wait before the first restart, a Go duration (default "1s"): it doubles
	// with each restart, up to MaxRestartBackoff.
	Backoff string `json:"backoff,omitempty" cbor:"backoff,omitempty"`
	// SkipPoison: a round (SQN) that failed the job twice in a row is not handed to the next
	// instance; its outputs get a dummy for it, as for a lost block.
	SkipPoison bool `json:"skip_poison,omitempty" cbor:"skip_poison,omitempty"`
}

// Exec describes an executable job (the old ExecutableJob / MARVELOJob).
type Exec struct {
	Path         string   `json:"path" cbor:"path"`
	Params       []string `json:"params,omitempty" cbor:"params,omitempty"`
	Mode         string   `json:"mode,omitempty" cbor:"mode,omitempty"`
	InputFlag    string   `json:"input_flag,omitempty" cbor:"input_flag,omitempty"`
	OutputFlag   string   `json:"output_flag,omitempty" cbor:"output_flag,omitempty"`
	Dependencies string   `json:"dependencies,omitempty" cbor:"dependencies,omitempty"`
	// SQN: each block on every stream of the program, both ways, is preceded by its 8-byte
	// big-endian SQN; the program answers only the rounds it means to (DESIGN.md §5).
	SQN bool `json:"sqn,omitempty" cbor:"sqn,omitempty"`
}

// Python describes a Python job: a class written as MARVELO's users write them (a PythonJob),
// run by the Python runner the worker carries (docs/python-jobs.md). The job's args are the
// class's constructor keywords.
type Python struct {
	// Class is "module:Class", imported with Dependencies as the import root.
	Class string `json:"class" cbor:"class"`
	// Dependencies is the folder shipped to the worker (relative to the document), the import
	// root and working directory of the job.
	Dependencies string `json:"dependencies,omitempty" cbor:"dependencies,omitempty"`
	// Interpreter runs the job; default: the worker's --python, then MARVELO_PYTHON, then
	// python3 on PATH (never resolved through symlinks: a venv stays a venv).
	Interpreter string `json:"interpreter,omitempty" cbor:"interpreter,omitempty"`
	// Arrays is how CBOR arrays of numbers reach the job: "numpy" (numpy arrays) or "list" (the
	// default).
	Arrays string `json:"arrays,omitempty" cbor:"arrays,omitempty"`
	// Requires lists modules the interpreter must import: a worker whose interpreter lacks one
	// never takes the job.
	Requires []string `json:"requires,omitempty" cbor:"requires,omitempty"`
}

// Pipe is one edge: a numbered, typed stream of blocks from one job to another.
type Pipe struct {
	ID         int       `json:"id" cbor:"id"`
	Codec      string    `json:"codec,omitempty" cbor:"codec,omitempty"`
	BlockSize  int       `json:"block_size,omitempty" cbor:"block_size,omitempty"`
	BlockCount int       `json:"block_count,omitempty" cbor:"block_count,omitempty"`
	Async      bool      `json:"async,omitempty" cbor:"async,omitempty"`
	Optional   *Optional `json:"optional,omitempty" cbor:"optional,omitempty"`
	FromTypes  []string  `json:"from_types,omitempty" cbor:"from_types,omitempty"`
	ToTypes    []string  `json:"to_types,omitempty" cbor:"to_types,omitempty"`
	// QoS is "reliable" (JetStream: bounded, survives failover; the default) or "realtime" (core
	// NATS: nothing stored, lowest latency; a receiver that falls behind drops the oldest).
	QoS string `json:"qos,omitempty" cbor:"qos,omitempty"`
	// Dtype is the element type of a bytes pipe's blocks as numpy spells it ("float32", "<i2"):
	// a Python job gets each block as a writable numpy array of it. Go jobs still get bytes.
	Dtype string `json:"dtype,omitempty" cbor:"dtype,omitempty"`
}

// Optional makes a pipe never block its receiver (OptionalMixIn of the original).
type Optional struct {
	Default any    `json:"default,omitempty" cbor:"default,omitempty"`
	Store   *bool  `json:"store,omitempty" cbor:"store,omitempty"`
	Buffer  int    `json:"buffer,omitempty" cbor:"buffer,omitempty"`
	Drop    string `json:"drop,omitempty" cbor:"drop,omitempty"`
}

// Defaults of the document (DESIGN.md §3).
const (
	GroupAll   = "ALL"
	GroupLocal = "LOCAL"

	ModeFIFO = "fifo"
	ModeFD   = "fd"

	QoSReliable = "reliable"
	QoSRealtime = "realtime"

	DummyZero = "zero"
	DummyPrev = "prev"

	ArraysNumpy = "numpy"
	ArraysList  = "list"

	DefaultInputFlag  = "-i"
	DefaultOutputFlag = "-o"

	RestartNever     = "never"
	RestartOnFailure = "on-failure"
	// DefaultRestartMax is the restarts "on-failure" allows when max is not given.
	DefaultRestartMax = 3
	// DefaultRestartBackoff is the wait before the first restart when backoff is not given;
	// MaxRestartBackoff caps it and its doubling.
	DefaultRestartBackoff = time.Second
	MaxRestartBackoff     = time.Minute
)
