package pipeline

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/marvelo/marvelo/codec"
)

// ValidateOptions tunes Validate.
type ValidateOptions struct {
	// KnownType reports whether a Go job type exists. Nil skips the check, for callers that do
	// not know which types the workers carry.
	KnownType func(name string) bool
	// Types, when set, looks up a Go job type's spec: an unknown type is a problem, and the
	// job's args are checked against the spec (CheckArgs). It takes precedence over KnownType.
	Types func(name string) (TypeSpec, bool)
	// TypeNames lists the known types, for an unknown type's "did you mean" (nil: none).
	TypeNames []string
	// UnknownTypeHint follows the message of an unknown type that is close to no known one:
	// where the types were looked up and what to do ("no live worker of URL carries it; ...").
	UnknownTypeHint string
}

// ValidationError lists every problem Validate found, in a stable order: the document first,
// then job by job, then pipe by pipe, then synchronous cycles. Each message names the job
// ("job 5 (product)") and/or pipe ("pipe 105") it is about; Path is the JSON path of the
// element concerned, when there is one.
type ValidationError struct {
	Problems []Problem
}

// Error lists the messages one per line.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.Message
	}
	return strings.Join(lines, "\n")
}

// namePattern restricts pipeline names to what NATS subjects and stream names accept.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks that the document describes a pipeline that can run (DESIGN.md §3). It returns
// nil or a *ValidationError reporting all problems at once.
func Validate(p *Pipeline, opts ValidateOptions) error {
	if p == nil {
		return &ValidationError{Problems: []Problem{{Message: "no pipeline document"}}}
	}
	v := newValidator(p, opts)
	v.document()
	for i := range p.Jobs {
		v.job(i)
	}
	for i := range p.Jobs {
		v.jobPipes(i)
	}
	v.pipes()
	v.cycles()
	return v.result()
}

// Problems sort by what they are about: the document, a job (by position), a pipe (by
// position in the pipe order), then cycles.
const (
	aboutDocument = iota
	aboutJob
	aboutPipe
	aboutCycle
)

type keyedProblem struct {
	about, index int
	Problem
}

type validator struct {
	p    *Pipeline
	opts ValidateOptions

	problems []keyedProblem
	// sources and dests map a pipe id to the indexes of the jobs writing / reading it.
	sources, dests map[int][]int
	// pipeRank orders pipes: listed ones by position in p.Pipes, then unlisted ones by first use.
	pipeRank map[int]int
	pipeIDs  []int
	// jobIndex maps a job id to the index of the first job with that id.
	jobIndex map[int]int
}

func newValidator(p *Pipeline, opts ValidateOptions) *validator {
	v := &validator{p: p, opts: opts, sources: map[int][]int{}, dests: map[int][]int{}, pipeRank: map[int]int{}, jobIndex: map[int]int{}}
	rank := func(id int) {
		if _, ok := v.pipeRank[id]; !ok && id > 0 {
			v.pipeRank[id] = len(v.pipeIDs)
			v.pipeIDs = append(v.pipeIDs, id)
		}
	}
	for _, pp := range p.Pipes {
		rank(pp.ID)
	}
	for _, j := range p.Jobs {
		for _, id := range j.Outputs {
			rank(id)
		}
		for _, id := range j.Inputs {
			rank(id)
		}
	}
	return v
}

func (v *validator) add(about, index int, path, format string, args ...any) {
	v.problems = append(v.problems, keyedProblem{about, index, Problem{Path: path, Message: fmt.Sprintf(format, args...), Kind: ProblemGraph}})
}

// addAt adds a problem that has no path of its own, placed in the document at path at (a pipe's
// problem at the job entry naming it).
func (v *validator) addAt(about, index int, at, format string, args ...any) {
	v.add(about, index, "", format, args...)
	v.problems[len(v.problems)-1].at = at
}

// pipeEntry is the path of the entry of a job's inputs or outputs that names a pipe.
func (v *validator) pipeEntry(i int, field string, id int) string {
	ids := v.p.Jobs[i].Inputs
	if field == "outputs" {
		ids = v.p.Jobs[i].Outputs
	}
	if k := slices.Index(ids, id); k >= 0 {
		return fmt.Sprintf("%s.%s[%d]", jobPath(i), field, k)
	}
	return jobPath(i)
}

func (v *validator) result() error {
	if len(v.problems) == 0 {
		return nil
	}
	sort.SliceStable(v.problems, func(a, b int) bool {
		pa, pb := v.problems[a], v.problems[b]
		if pa.about != pb.about {
			return pa.about < pb.about
		}
		return pa.index < pb.index
	})
	out := make([]Problem, len(v.problems))
	for i, kp := range v.problems {
		out[i] = kp.Problem
	}
	return &ValidationError{Problems: out}
}

// jobRef names a job in messages: "job 5 (product)".
func (v *validator) jobRef(i int) string {
	j := &v.p.Jobs[i]
	return fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
}

func jobPath(i int) string { return "jobs[" + strconv.Itoa(i) + "]" }

func (v *validator) document() {
	switch {
	case v.p.Name == "":
		v.add(aboutDocument, 0, "name", "name is required")
	case !namePattern.MatchString(v.p.Name):
		v.add(aboutDocument, 0, "name", "name %q must match %s (it is used in NATS subject and stream names)", v.p.Name, namePattern)
	}
	if len(v.p.Jobs) == 0 {
		v.add(aboutDocument, 0, "jobs", "no jobs defined")
	}
}

// job checks a job's own fields.
func (v *validator) job(i int) {
	j := &v.p.Jobs[i]
	path := jobPath(i)
	v.jobID(i)
	kinds := j.kinds()
	switch {
	case len(kinds) > 1:
		v.add(aboutJob, i, path, "%s: has both %s; give exactly one of type, exec and python", v.jobRef(i), strings.Join(kinds, " and "))
	case len(kinds) == 0:
		v.add(aboutJob, i, path, "%s: has neither type nor exec nor python; give exactly one", v.jobRef(i))
	case j.Type != "" && v.opts.Types != nil:
		v.jobArgs(i)
	case j.Type != "" && v.opts.KnownType != nil && !v.opts.KnownType(j.Type):
		v.unknownType(i)
	}
	if j.Exec != nil {
		v.exec(i)
	}
	if j.Python != nil {
		v.python(i)
	}
	if j.HeadSize < 0 || j.HeadSize > 4 {
		v.add(aboutJob, i, path+".head_size", "%s: head_size must be 1 to 4, got %d", v.jobRef(i), j.HeadSize)
	}
	if j.Dummy != "" && j.Dummy != DummyZero && j.Dummy != DummyPrev {
		v.add(aboutJob, i, path+".dummy", "%s: dummy %q is not one of %s, %s", v.jobRef(i), j.Dummy, DummyZero, DummyPrev)
	}
	if j.MaxQueue < 0 {
		v.add(aboutJob, i, path+".max_queue", "%s: max_queue must not be negative, got %d", v.jobRef(i), j.MaxQueue)
	}
	for k, g := range j.Groups {
		if strings.TrimSpace(g) == "" {
			v.add(aboutJob, i, fmt.Sprintf("%s.groups[%d]", path, k), "%s: groups[%d] is empty", v.jobRef(i), k)
		}
	}
	if j.Restart != nil {
		v.restart(i)
	}
}

// restart checks a job's restart policy: a known policy, a backoff that is a duration from 0 to
// MaxRestartBackoff, and no settings that "never" would ignore.
func (v *validator) restart(i int) {
	r := v.p.Jobs[i].Restart
	path := jobPath(i) + ".restart"
	switch r.Policy {
	case RestartOnFailure:
	case RestartNever:
		var set []string
		if r.Max != 0 {
			set = append(set, "max")
		}
		if r.Backoff != "" {
			set = append(set, "backoff")
		}
		if r.SkipPoison {
			set = append(set, "skip_poison")
		}
		if len(set) > 0 {
			v.add(aboutJob, i, path+"."+set[0], "%s: restart.%s has no effect with policy %q (a failure fails the pipeline); use %q or leave it out",
				v.jobRef(i), strings.Join(set, ", restart."), RestartNever, RestartOnFailure)
		}
	case "":
		v.add(aboutJob, i, path, "%s: restart.policy is required (%s or %s)", v.jobRef(i), RestartNever, RestartOnFailure)
	default:
		v.add(aboutJob, i, path+".policy", "%s: restart.policy %q is not one of %s, %s", v.jobRef(i), r.Policy, RestartNever, RestartOnFailure)
	}
	if r.Max < 0 {
		v.add(aboutJob, i, path+".max", "%s: restart.max must be at least 1, got %d", v.jobRef(i), r.Max)
	}
	if r.Backoff != "" {
		d, err := time.ParseDuration(r.Backoff)
		switch {
		case err != nil:
			v.add(aboutJob, i, path+".backoff", "%s: restart.backoff %q is not a duration (want a string such as \"1s\" or \"500ms\")", v.jobRef(i), r.Backoff)
		case d < 0 || d > MaxRestartBackoff:
			v.add(aboutJob, i, path+".backoff", "%s: restart.backoff %s is out of range: 0s to %s", v.jobRef(i), r.Backoff, MaxRestartBackoff)
		}
	}
}

// jobArgs checks a Go job's type and args against the type's spec.
func (v *validator) jobArgs(i int) {
	j := &v.p.Jobs[i]
	spec, ok := v.opts.Types(j.Type)
	if !ok {
		v.unknownType(i)
		return
	}
	for _, pr := range CheckArgs(spec, j.Args) {
		v.add(aboutJob, i, jobPath(i)+".args"+dotted(pr.Path), "%s: %s", v.jobRef(i), pr.Message)
		v.problems[len(v.problems)-1].Kind = ProblemArgs
	}
}

// unknownType reports a job whose type is not known: with the closest known type, as an
// unknown key gets, else with the hint where the types come from and what to do.
func (v *validator) unknownType(i int) {
	t := v.p.Jobs[i].Type
	more := ""
	switch best := closest(t, v.opts.TypeNames); {
	case best != "":
		more = fmt.Sprintf(" (did you mean %q?)", best)
	case v.opts.UnknownTypeHint != "":
		more = ": " + v.opts.UnknownTypeHint
	}
	v.add(aboutJob, i, jobPath(i)+".type", "%s: unknown job type %q%s", v.jobRef(i), t, more)
}

// dotted joins a relative path (`count`, `["odd key"]`) to a parent.
func dotted(rel string) string {
	if strings.HasPrefix(rel, "[") {
		return rel
	}
	return "." + rel
}

func (v *validator) jobID(i int) {
	id := v.p.Jobs[i].ID
	if id <= 0 {
		v.add(aboutJob, i, jobPath(i)+".id", "%s: job id must be a positive integer, got %d", v.jobRef(i), id)
		return
	}
	if k, dup := v.jobIndex[id]; dup {
		v.add(aboutJob, i, jobPath(i)+".id", "%s: job id %d is already used by jobs[%d] (%s)", v.jobRef(i), id, k, v.p.Jobs[k].DisplayName())
		return
	}
	v.jobIndex[id] = i
}

func (v *validator) exec(i int) {
	e := v.p.Jobs[i].Exec
	path := jobPath(i) + ".exec"
	if e.Path == "" {
		v.add(aboutJob, i, path+".path", "%s: exec.path is required", v.jobRef(i))
	}
	if e.Mode != "" && e.Mode != ModeFIFO && e.Mode != ModeFD {
		v.add(aboutJob, i, path+".mode", "%s: exec.mode %q is not one of %s, %s", v.jobRef(i), e.Mode, ModeFIFO, ModeFD)
	}
}

// kinds lists the job's kind keys that are set: exactly one is valid.
func (j *Job) kinds() []string {
	var ks []string
	if j.Type != "" {
		ks = append(ks, "type")
	}
	if j.Exec != nil {
		ks = append(ks, "exec")
	}
	if j.Python != nil {
		ks = append(ks, "python")
	}
	return ks
}

// pythonClass is "module:Class": a dotted module path and a class name.
var pythonClass = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$`)

// pythonModule is a dotted module name, as "requires" lists them.
var pythonModule = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)

func (v *validator) python(i int) {
	j := &v.p.Jobs[i]
	py := j.Python
	path := jobPath(i) + ".python"
	switch {
	case py.Class == "":
		v.add(aboutJob, i, path+".class", "%s: python.class is required (\"module:Class\", e.g. \"jobs:SumJob\")", v.jobRef(i))
	case !pythonClass.MatchString(py.Class):
		v.add(aboutJob, i, path+".class", "%s: python.class %q is not \"module:Class\" (a dotted module path, a colon, a class name; e.g. \"mypkg.jobs:SumJob\")", v.jobRef(i), py.Class)
	}
	for k, m := range py.Requires {
		if !pythonModule.MatchString(m) {
			v.add(aboutJob, i, fmt.Sprintf("%s.requires[%d]", path, k), "%s: python.requires[%d] %q is not a module name", v.jobRef(i), k, m)
		}
	}
	if j.Log {
		v.add(aboutJob, i, jobPath(i)+".log", "%s: log: true is for Go jobs; a Python job writes its own rows", v.jobRef(i))
	}
}

// jobPipes checks a job's inputs and outputs and records it as an end of each pipe. Running in
// job order, a second source or destination is reported at the job that repeats it.
func (v *validator) jobPipes(i int) {
	j := &v.p.Jobs[i]
	v.pipeList(i, "inputs", j.Inputs, v.dests, "destination")
	v.pipeList(i, "outputs", j.Outputs, v.sources, "source")
	outputs := map[int]bool{}
	for _, id := range j.Outputs {
		outputs[id] = true
	}
	looped := map[int]bool{}
	for _, id := range j.Inputs {
		if id > 0 && outputs[id] && !looped[id] {
			looped[id] = true
			v.add(aboutJob, i, jobPath(i), "pipe %d: loops back to %s, which lists it as both input and output", id, v.jobRef(i))
		}
	}
}

func (v *validator) pipeList(i int, field string, ids []int, ends map[int][]int, end string) {
	seen := map[int]bool{}
	for k, id := range ids {
		path := fmt.Sprintf("%s.%s[%d]", jobPath(i), field, k)
		switch {
		case id <= 0:
			v.add(aboutJob, i, path, "%s: %s: pipe id must be a positive integer, got %d", v.jobRef(i), field, id)
		case seen[id]:
			v.add(aboutJob, i, path, "%s: pipe %d appears twice in %s", v.jobRef(i), id, field)
		default:
			seen[id] = true
			if len(ends[id]) > 0 {
				v.add(aboutJob, i, path, "pipe %d: %s defined twice: %s and %s", id, end, v.jobRef(ends[id][0]), v.jobRef(i))
			}
			ends[id] = append(ends[id], i)
		}
	}
}

// pipes checks every pipe: the listed ones' fields, and the ends of every pipe.
func (v *validator) pipes() {
	first := map[int]int{}
	for k := range v.p.Pipes {
		v.listedPipe(k, first)
	}
	for _, id := range v.pipeIDs {
		v.pipeEnds(id)
	}
}

func (v *validator) listedPipe(k int, first map[int]int) {
	pp := &v.p.Pipes[k]
	path := "pipes[" + strconv.Itoa(k) + "]"
	rank := v.pipeRank[pp.ID]
	if pp.ID <= 0 {
		// Such a pipe has no rank; place it after every pipe that has one.
		v.add(aboutPipe, len(v.pipeIDs)+k, path+".id", "%s: pipe id must be a positive integer, got %d", path, pp.ID)
		return
	}
	ref := "pipe " + strconv.Itoa(pp.ID)
	if f, dup := first[pp.ID]; dup {
		v.add(aboutPipe, rank, path+".id", "%s: listed twice in pipes (pipes[%d] and pipes[%d])", ref, f, k)
		return
	}
	first[pp.ID] = k
	if len(v.sources[pp.ID]) == 0 && len(v.dests[pp.ID]) == 0 {
		v.add(aboutPipe, rank, path, "%s: listed in pipes but no job uses it", ref)
	}
	v.pipeFields(rank, path, ref, pp)
}

func (v *validator) pipeFields(rank int, path, ref string, pp *Pipe) {
	switch pp.Codec {
	case "", codec.CBOR, codec.JSON:
	case codec.Bytes:
		if pp.BlockSize < 1 {
			v.add(aboutPipe, rank, path+".block_size", "%s: codec bytes needs block_size of at least 1", ref)
		}
	default:
		v.add(aboutPipe, rank, path+".codec", "%s: codec %q is not one of %s, %s, %s", ref, pp.Codec, codec.CBOR, codec.JSON, codec.Bytes)
	}
	if pp.Dtype != "" {
		v.dtype(rank, path, ref, pp)
	}
	if pp.BlockSize < 0 {
		v.add(aboutPipe, rank, path+".block_size", "%s: block_size must be at least 1, got %d", ref, pp.BlockSize)
	}
	if pp.BlockCount < 0 {
		v.add(aboutPipe, rank, path+".block_count", "%s: block_count must be at least 1, got %d", ref, pp.BlockCount)
	}
	if pp.QoS != "" && pp.QoS != QoSReliable && pp.QoS != QoSRealtime {
		v.add(aboutPipe, rank, path+".qos", "%s: qos %q is not one of %s, %s", ref, pp.QoS, QoSReliable, QoSRealtime)
	}
	if o := pp.Optional; o != nil {
		if o.Drop != "" && o.Drop != "oldest" && o.Drop != "newest" {
			v.add(aboutPipe, rank, path+".optional.drop", "%s: optional.drop %q is not one of oldest, newest", ref, o.Drop)
		}
		if o.Buffer < 0 {
			v.add(aboutPipe, rank, path+".optional.buffer", "%s: optional.buffer must not be negative, got %d", ref, o.Buffer)
		}
	}
}

// pipeEnds checks that a used pipe has a source and a destination of an allowed type.
func (v *validator) pipeEnds(id int) {
	src, dst := v.sources[id], v.dests[id]
	if len(src) == 0 && len(dst) == 0 {
		return // listed but unused: reported by listedPipe
	}
	rank := v.pipeRank[id]
	ref := "pipe " + strconv.Itoa(id)
	if len(src) == 0 {
		v.addAt(aboutPipe, rank, v.pipeEntry(dst[0], "inputs", id), "%s: no source: %s reads it but no job lists it in outputs", ref, v.jobRef(dst[0]))
	}
	if len(dst) == 0 {
		v.addAt(aboutPipe, rank, v.pipeEntry(src[0], "outputs", id), "%s: no destination: %s writes it but no job lists it in inputs", ref, v.jobRef(src[0]))
	}
	pp := v.p.PipeByID(id)
	v.endTypes(rank, id, src, pp.FromTypes, "source", "from_types")
	v.endTypes(rank, id, dst, pp.ToTypes, "destination", "to_types")
}

func (v *validator) endTypes(rank, id int, jobs []int, allowed []string, end, field string) {
	if len(allowed) == 0 {
		return
	}
	ref := "pipe " + strconv.Itoa(id)
	entry := "outputs"
	if end == "destination" {
		entry = "inputs"
	}
	for _, i := range jobs {
		t := v.p.Jobs[i].Type
		switch {
		case t == "":
			v.addAt(aboutPipe, rank, v.pipeEntry(i, entry, id), "%s: %s %s is an exec job, but %s allows only %s", ref, end, v.jobRef(i), field, strings.Join(allowed, ", "))
		case !contains(allowed, t):
			v.addAt(aboutPipe, rank, v.pipeEntry(i, entry, id), "%s: %s %s has type %q, which %s does not allow (allowed: %s)", ref, end, v.jobRef(i), t, field, strings.Join(allowed, ", "))
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// --- synchronous cycles ---

// A job waits for a block on every synchronous input before it runs, so a cycle of synchronous
// pipes deadlocks: each job waits for the next. One async (or optional) pipe on the cycle
// breaks the wait. Strongly connected components of the graph of synchronous pipes are exactly
// the sets of jobs caught in such cycles.

type syncEdge struct{ to, pipe int }

func (v *validator) cycles() {
	graph := v.syncGraph()
	for _, comp := range stronglyConnected(graph) {
		if len(comp) < 2 {
			continue // a job feeding itself is reported as a loop back
		}
		v.add(aboutCycle, comp[0], jobPath(comp[0]), "synchronous cycle %s deadlocks: make one of its pipes async or optional",
			v.describeCycle(graph, comp))
	}
}

// syncGraph has one edge per synchronous pipe from each of its sources to each destination.
func (v *validator) syncGraph() [][]syncEdge {
	graph := make([][]syncEdge, len(v.p.Jobs))
	for _, id := range v.pipeIDs {
		if pp := v.p.PipeByID(id); pp.IsAsync() {
			continue
		}
		for _, s := range v.sources[id] {
			for _, d := range v.dests[id] {
				if s != d {
					graph[s] = append(graph[s], syncEdge{d, id})
				}
			}
		}
	}
	return graph
}

// describeCycle finds the shortest cycle through the component's first job, within the
// component: "job 1 (a) → pipe 3 → job 2 (b) → pipe 4 → job 1 (a)".
func (v *validator) describeCycle(graph [][]syncEdge, comp []int) string {
	in := map[int]bool{}
	for _, i := range comp {
		in[i] = true
	}
	start := comp[0]
	via := map[int]syncEdge{} // how each job was reached: from which job, through which pipe
	queue := []int{start}
	var last syncEdge
	for len(queue) > 0 && last.pipe == 0 {
		at := queue[0]
		queue = queue[1:]
		for _, e := range graph[at] {
			if e.to == start {
				last = syncEdge{at, e.pipe}
				break
			}
			if _, seen := via[e.to]; !seen && in[e.to] {
				via[e.to] = syncEdge{at, e.pipe}
				queue = append(queue, e.to)
			}
		}
	}
	if last.pipe == 0 { // cannot happen in a component of two or more jobs; name them all
		refs := make([]string, len(comp))
		for k, i := range comp {
			refs[k] = v.jobRef(i)
		}
		return "among " + strings.Join(refs, ", ")
	}
	// Walk back from the job that closes the cycle to the start.
	parts := []string{v.jobRef(start), "pipe " + strconv.Itoa(last.pipe)}
	for at := last.to; at != start; at = via[at].to {
		parts = append(parts, v.jobRef(at), "pipe "+strconv.Itoa(via[at].pipe))
	}
	parts = append(parts, v.jobRef(start))
	// parts runs backwards along the edges; reverse it so it reads in the direction of flow.
	for a, b := 0, len(parts)-1; a < b; a, b = a+1, b-1 {
		parts[a], parts[b] = parts[b], parts[a]
	}
	return strings.Join(parts, " → ")
}

// stronglyConnected returns the strongly connected components of graph (Tarjan's algorithm),
// each sorted, ordered by their smallest member.
func stronglyConnected(graph [][]syncEdge) [][]int {
	n := len(graph)
	index, low := make([]int, n), make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var comps [][]int
	next := 0
	var visit func(u int)
	visit = func(u int) {
		index[u], low[u] = next, next
		next++
		stack = append(stack, u)
		onStack[u] = true
		for _, e := range graph[u] {
			switch {
			case index[e.to] < 0:
				visit(e.to)
				low[u] = min(low[u], low[e.to])
			case onStack[e.to]:
				low[u] = min(low[u], index[e.to])
			}
		}
		if low[u] != index[u] {
			return
		}
		var comp []int
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[w] = false
			comp = append(comp, w)
			if w == u {
				break
			}
		}
		sort.Ints(comp)
		comps = append(comps, comp)
	}
	for u := range n {
		if index[u] < 0 {
			visit(u)
		}
	}
	sort.Slice(comps, func(a, b int) bool { return comps[a][0] < comps[b][0] })
	return comps
}

// dtype checks a bytes pipe's element type: a numpy type name or code, whose size divides the
// block size.
func (v *validator) dtype(rank int, path, ref string, pp *Pipe) {
	size, ok := DtypeSize(pp.Dtype)
	switch {
	case !ok:
		v.add(aboutPipe, rank, path+".dtype", "%s: dtype %q is not a numeric numpy type (e.g. float32, int16, \"<f8\", \">i2\", uint8)", ref, pp.Dtype)
	case pp.EffectiveCodec() != codec.Bytes:
		v.add(aboutPipe, rank, path+".dtype", "%s: dtype is for bytes pipes; this pipe is %s (cbor carries numbers and arrays of them as they are)", ref, pp.EffectiveCodec())
	case pp.BlockSize > 0 && pp.BlockSize%size != 0:
		v.add(aboutPipe, rank, path+".block_size", "%s: block_size %d is not a multiple of dtype %s's %d bytes", ref, pp.BlockSize, pp.Dtype, size)
	}
}

// dtypeNames are numpy's names of the numeric types, with their sizes in bytes.
var dtypeNames = map[string]int{
	"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8,
	"uint64": 8, "float16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16,
}

// dtypeCode is numpy's short form: an optional byte order, a kind, a size ("<f4", "i2", "|u1").
var dtypeCode = regexp.MustCompile(`^[<>=|]?([biufc])([0-9]+)$`)

// DtypeSize returns the size in bytes of one element of a numpy dtype string, and whether the
// string names a numeric type marvelo accepts.
func DtypeSize(dtype string) (int, bool) {
	if n, ok := dtypeNames[dtype]; ok {
		return n, true
	}
	m := dtypeCode.FindStringSubmatch(dtype)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[2])
	valid := map[string][]int{"b": {1}, "i": {1, 2, 4, 8}, "u": {1, 2, 4, 8}, "f": {2, 4, 8}, "c": {8, 16}}
	if !slices.Contains(valid[m[1]], n) {
		return 0, false
	}
	return n, true
}
