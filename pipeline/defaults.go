package pipeline

import (
	"path"
	"strconv"
	"strings"
	"time"
)

// Label is the job's name as shown in logs: its name, else its type or executable, plus its id.
func (j *Job) Label() string {
	return j.DisplayName() + " " + strconv.Itoa(j.ID)
}

// DisplayName is the job's name, else its type, else the base name of its executable, else its
// Python class.
func (j *Job) DisplayName() string {
	switch {
	case j.Name != "":
		return j.Name
	case j.Type != "":
		return j.Type
	case j.Exec != nil && j.Exec.Path != "":
		return path.Base(j.Exec.Path)
	case j.Python != nil && j.Python.Class != "":
		if _, class, ok := strings.Cut(j.Python.Class, ":"); ok && class != "" {
			return class
		}
		return j.Python.Class
	}
	return "job"
}

// EffectiveGroups is the job's groups in priority order, ["ALL"] when none are given.
func (j *Job) EffectiveGroups() []string {
	if len(j.Groups) == 0 {
		return []string{GroupAll}
	}
	return j.Groups
}

// IsLocal reports whether the job must run on the head node.
func (j *Job) IsLocal() bool {
	for _, g := range j.Groups {
		if g == GroupLocal {
			return true
		}
	}
	return false
}

// EffectiveHeadSize is the head length in bytes, 1 when unset.
func (j *Job) EffectiveHeadSize() int {
	if j.HeadSize == 0 {
		return 1
	}
	return j.HeadSize
}

// EffectiveDummy is the dummy mode, "zero" when unset.
func (j *Job) EffectiveDummy() string {
	if j.Dummy == "" {
		return DummyZero
	}
	return j.Dummy
}

// EffectiveMode is the executable's pipe mode, "fifo" when unset.
func (e *Exec) EffectiveMode() string {
	if e.Mode == "" {
		return ModeFIFO
	}
	return e.Mode
}

// EffectiveInputFlag is the flag placed before each input, "-i" when unset.
func (e *Exec) EffectiveInputFlag() string {
	if e.InputFlag == "" {
		return DefaultInputFlag
	}
	return e.InputFlag
}

// EffectiveOutputFlag is the flag placed before each output, "-o" when unset.
func (e *Exec) EffectiveOutputFlag() string {
	if e.OutputFlag == "" {
		return DefaultOutputFlag
	}
	return e.OutputFlag
}

// EffectiveCodec is the pipe's codec, "cbor" when unset.
func (p *Pipe) EffectiveCodec() string {
	if p.Codec == "" {
		return "cbor"
	}
	return p.Codec
}

// EffectiveBlockCount is the number of blocks per compute block, 1 when unset.
func (p *Pipe) EffectiveBlockCount() int {
	if p.BlockCount == 0 {
		return 1
	}
	return p.BlockCount
}

// IsRealtime reports whether the pipe travels on core NATS (qos realtime).
func (p *Pipe) IsRealtime() bool { return p.QoS == QoSRealtime }

// IsAsync reports whether the pipe bypasses sequence alignment (async or optional).
func (p *Pipe) IsAsync() bool { return p.Async || p.Optional != nil }

// PipeByID returns the pipe with the given id, with defaults for a pipe used but not listed.
func (p *Pipeline) PipeByID(id int) Pipe {
	for _, pp := range p.Pipes {
		if pp.ID == id {
			return pp
		}
	}
	return Pipe{ID: id}
}

// JobByID returns the job with the given id, or nil.
func (p *Pipeline) JobByID(id int) *Job {
	for i := range p.Jobs {
		if p.Jobs[i].ID == id {
			return &p.Jobs[i]
		}
	}
	return nil
}

// Endpoints returns, for each pipe id used by a job, the job writing it and the job reading it
// (0 where there is none). A pipe with two sources or destinations keeps the first; Validate
// reports the second.
func (p *Pipeline) Endpoints() map[int][2]int {
	ends := map[int][2]int{}
	for _, j := range p.Jobs {
		for _, id := range j.Outputs {
			e := ends[id]
			if e[0] == 0 {
				e[0] = j.ID
			}
			ends[id] = e
		}
		for _, id := range j.Inputs {
			e := ends[id]
			if e[1] == 0 {
				e[1] = j.ID
			}
			ends[id] = e
		}
	}
	return ends
}

// DependenciesFolder is the folder shipped with an executable or Python job ("" for none), as
// the document gives it: relative to the document's folder, or absolute.
func (j *Job) DependenciesFolder() string {
	switch {
	case j.Exec != nil:
		return j.Exec.Dependencies
	case j.Python != nil:
		return j.Python.Dependencies
	}
	return ""
}

// RestartMax is how many restarts after failures the job's policy allows in a run: 0 under
// "never" (or without a policy: a failure fails the pipeline), max (default 3) under
// "on-failure".
func (j *Job) RestartMax() int {
	if j.Restart == nil || j.Restart.Policy != RestartOnFailure {
		return 0
	}
	if j.Restart.Max <= 0 {
		return DefaultRestartMax
	}
	return j.Restart.Max
}

// RestartDelay is the wait before the job's n-th restart (n from 1): the backoff (default 1s)
// doubled for each restart before it, at most MaxRestartBackoff. A backoff that does not parse
// (Validate reports it) counts as the default.
func (j *Job) RestartDelay(n int) time.Duration {
	d := DefaultRestartBackoff
	if j.Restart != nil && j.Restart.Backoff != "" {
		if b, err := time.ParseDuration(j.Restart.Backoff); err == nil && b >= 0 {
			d = b
		}
	}
	for i := 1; i < n && d < MaxRestartBackoff; i++ {
		d *= 2
	}
	return min(d, MaxRestartBackoff)
}

// SkipsPoison reports whether a round that failed the job twice in a row is skipped as a dummy
// by its next instance (restart.skip_poison, under "on-failure").
func (j *Job) SkipsPoison() bool {
	return j.RestartMax() > 0 && j.Restart.SkipPoison
}
