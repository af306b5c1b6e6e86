// Package xmlimport converts an old MARVELO XML topology (SPEC.md §1.8) into a pipeline document:
//
//	<any-root>
//	  <any-node-tag pi_id="IP">                       one per node
//	    <any-job-tag executable="cmd args" path="dir">
//	      <parameter param="..."/> ...
//	      <input  pipe_id="N" block_size="S" block_count="C"/>
//	      <output pipe_id="N" block_size="S" block_count="C"/>
//
// Every job becomes an executable job in fd mode (the original's DynamicMARVELOJob): the first
// word of executable is exec.path, its other words and the words of every parameter (in order)
// are exec.params, path is exec.dependencies, and the node's IP is the job's preferred node
// (node). Jobs are numbered 1, 2, ... in document order. Every pipe gets codec bytes with its
// block_size and its block_count; a missing value is 1, and the two ends of a pipe must agree.
// Other attributes and tags are ignored. The node's job count (the original's max_jobs, which
// pre-placed the jobs) has no equivalent: node is a preference.
//
// Convert reports the loader's errors — a pipe with two sources or two destinations, conflicting
// block sizes or counts, a loop back to the same job, missing or invalid attributes — all at
// once, each with its line. Whether the result is a complete graph (every pipe with a source and
// a destination, ...) is pipeline.Validate's business.
//
// The package is pure: no I/O beyond the reader it is given.
package xmlimport

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/marvelo/marvelo/codec"
	"github.com/marvelo/marvelo/pipeline"
)

// Options tune Convert. Empty fields take the original loader's defaults.
type Options struct {
	// Name is the pipeline's name; default DefaultName (see NameFromFile).
	Name string
	// File names the input in messages ("topology.xml:12: ...").
	File string
	// Attribute and tag names of the XML, defaulting to the original loader's.
	IPAttr         string // node address: "pi_id" (the original's tests used "ip")
	ExecutableAttr string // "executable"
	PathAttr       string // "path" (the dependencies folder)
	InputTag       string // "input"
	OutputTag      string // "output"
	PipeAttr       string // "pipe_id"
	ParameterTag   string // "parameter"
	ParamAttr      string // "param"
	BlockSizeAttr  string // "block_size"
	BlockCountAttr string // "block_count"
}

// DefaultName is the pipeline name when Options.Name is empty.
const DefaultName = "imported"

func (o *Options) defaults() {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&o.Name, DefaultName)
	set(&o.IPAttr, "pi_id")
	set(&o.ExecutableAttr, "executable")
	set(&o.PathAttr, "path")
	set(&o.InputTag, "input")
	set(&o.OutputTag, "output")
	set(&o.PipeAttr, "pipe_id")
	set(&o.ParameterTag, "parameter")
	set(&o.ParamAttr, "param")
	set(&o.BlockSizeAttr, "block_size")
	set(&o.BlockCountAttr, "block_count")
}

// NameFromFile derives a pipeline name from a file name: its base name without extension, with
// every character a pipeline name cannot hold replaced by '_'.
func NameFromFile(file string) string {
	base := filepath.Base(file)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	b := []byte(base)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	if len(b) == 0 || base == "." || base == string(filepath.Separator) {
		return DefaultName
	}
	return string(b)
}

// Error lists every problem Convert found, in document order.
type Error struct {
	Problems []string
}

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// pipeInfo gathers what the XML says about one pipe.
type pipeInfo struct {
	size, count       int // the first value given (a missing one counts as 1)
	sizeSet, countSet bool
	source, dest      int // job ids, 0 when none
}

type converter struct {
	opts     Options
	dec      *xml.Decoder
	problems []string
	p        *pipeline.Pipeline
	pipes    map[int]*pipeInfo
}

// Convert reads an XML topology and returns the pipeline document it describes.
func Convert(r io.Reader, opts Options) (*pipeline.Pipeline, error) {
	opts.defaults()
	c := &converter{
		opts: opts, dec: xml.NewDecoder(r),
		p:     &pipeline.Pipeline{Name: opts.Name, Jobs: []pipeline.Job{}},
		pipes: map[int]*pipeInfo{},
	}
	if err := c.read(); err != nil {
		return nil, err
	}
	ids := make([]int, 0, len(c.pipes))
	for id := range c.pipes {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		pi := c.pipes[id]
		pp := pipeline.Pipe{ID: id, Codec: codec.Bytes, BlockSize: max(pi.size, 1)}
		if pi.count > 1 {
			pp.BlockCount = pi.count
		}
		c.p.Pipes = append(c.p.Pipes, pp)
	}
	if len(c.problems) > 0 {
		return nil, &Error{Problems: c.problems}
	}
	return c.p, nil
}

// at names the current position: "file:line" or "line N".
func (c *converter) at() string {
	line, _ := c.dec.InputPos()
	if c.opts.File != "" {
		return fmt.Sprintf("%s:%d", c.opts.File, line)
	}
	return fmt.Sprintf("line %d", line)
}

func (c *converter) problem(at, format string, args ...any) {
	c.problems = append(c.problems, at+": "+fmt.Sprintf(format, args...))
}

// read walks the elements: depth 1 is the root, 2 the nodes, 3 the jobs, 4 their parameters and
// pipes; deeper elements and other content are ignored.
func (c *converter) read() error {
	depth := 0
	var node string
	var job *pipeline.Job
	for {
		tok, err := c.dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			line, _ := c.dec.InputPos()
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				line = se.Line
				err = errors.New(se.Msg)
			}
			where := fmt.Sprintf("line %d", line)
			if c.opts.File != "" {
				where = fmt.Sprintf("%s:%d", c.opts.File, line)
			}
			return fmt.Errorf("%s: not a valid XML topology: %w", where, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 2:
				node = c.node(t)
			case 3:
				job = c.job(t, node)
			case 4:
				c.jobChild(t, job)
			}
		case xml.EndElement:
			if depth == 3 && job != nil {
				c.p.Jobs = append(c.p.Jobs, *job)
				job = nil
			}
			depth--
		}
	}
	if depth == 0 && len(c.p.Jobs) == 0 && len(c.problems) == 0 {
		c.problems = append(c.problems, c.prefix()+"no jobs: the topology has no node with a job element")
	}
	return nil
}

func (c *converter) prefix() string {
	if c.opts.File != "" {
		return c.opts.File + ": "
	}
	return ""
}

func attr(e xml.StartElement, name string) (string, bool) {
	for _, a := range e.Attr {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func (c *converter) node(e xml.StartElement) string {
	ip, ok := attr(e, c.opts.IPAttr)
	ip = strings.TrimSpace(ip)
	if !ok || ip == "" {
		c.problem(c.at(), "node <%s> has no %s attribute (its address; choose the attribute with --ip-attr)", e.Name.Local, c.opts.IPAttr)
	}
	return ip
}

func (c *converter) job(e xml.StartElement, node string) *pipeline.Job {
	j := &pipeline.Job{ID: len(c.p.Jobs) + 1, Node: node, Exec: &pipeline.Exec{Mode: pipeline.ModeFD}}
	exe, _ := attr(e, c.opts.ExecutableAttr)
	words := strings.Fields(exe)
	if len(words) == 0 {
		c.problem(c.at(), "job %d (<%s>) has no %s attribute", j.ID, e.Name.Local, c.opts.ExecutableAttr)
	} else {
		j.Exec.Path = words[0]
		j.Exec.Params = words[1:]
	}
	if dir, ok := attr(e, c.opts.PathAttr); ok && strings.TrimSpace(dir) != "" {
		j.Exec.Dependencies = strings.TrimSpace(dir)
	}
	return j
}

func (c *converter) jobRef(j *pipeline.Job) string {
	return fmt.Sprintf("job %d (%s)", j.ID, j.DisplayName())
}

func (c *converter) jobChild(e xml.StartElement, j *pipeline.Job) {
	if j == nil {
		return
	}
	at := c.at()
	switch e.Name.Local {
	case c.opts.ParameterTag:
		v, ok := attr(e, c.opts.ParamAttr)
		if !ok {
			c.problem(at, "%s: <%s> has no %s attribute", c.jobRef(j), e.Name.Local, c.opts.ParamAttr)
			return
		}
		// The original joins the parameters with spaces and splits the command line on whitespace.
		j.Exec.Params = append(j.Exec.Params, strings.Fields(v)...)
	case c.opts.InputTag, c.opts.OutputTag:
		c.pipeEnd(e, j, e.Name.Local == c.opts.OutputTag, at)
	}
}

func (c *converter) pipeEnd(e xml.StartElement, j *pipeline.Job, output bool, at string) {
	raw, ok := attr(e, c.opts.PipeAttr)
	if !ok {
		c.problem(at, "%s: <%s> has no %s attribute", c.jobRef(j), e.Name.Local, c.opts.PipeAttr)
		return
	}
	id, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || id < 1 {
		c.problem(at, "%s: %s %q is not a positive integer", c.jobRef(j), c.opts.PipeAttr, raw)
		return
	}
	pi := c.pipes[id]
	if pi == nil {
		pi = &pipeInfo{}
		c.pipes[id] = pi
	}
	end, other := &pi.dest, pi.source
	if output {
		end, other = &pi.source, pi.dest
	}
	switch {
	case *end != 0 && output:
		c.problem(at, "Source of pipe %d was defined multiple times.", id)
	case *end != 0:
		c.problem(at, "Destination of pipe %d was defined multiple times.", id)
	case other == j.ID:
		c.problem(at, "PIPE %d: You can't loop back pipes to same job (%s).", id, c.jobRef(j))
	default:
		*end = j.ID
		if output {
			j.Outputs = append(j.Outputs, id)
		} else {
			j.Inputs = append(j.Inputs, id)
		}
	}
	if size, ok := c.positive(e, c.opts.BlockSizeAttr, j, id, at); ok {
		switch {
		case !pi.sizeSet:
			pi.size, pi.sizeSet = size, true
		case pi.size != size:
			c.problem(at, "Multiple block sizes are set for pipe %d.", id)
		}
	}
	if count, ok := c.positive(e, c.opts.BlockCountAttr, j, id, at); ok {
		switch {
		case !pi.countSet:
			pi.count, pi.countSet = count, true
		case pi.count != count:
			c.problem(at, "Multiple block counts are set for pipe %d.", id)
		}
	}
}

// positive reads an optional attribute that must be a positive integer; missing means 1 (so one
// end saying 10 while the other says nothing is a conflict, as in the original).
func (c *converter) positive(e xml.StartElement, name string, j *pipeline.Job, pipe int, at string) (int, bool) {
	raw, ok := attr(e, name)
	if !ok {
		return 1, true
	}
	v, err := strconv.Atoi(strings.TrimSpace(raw))
	if err != nil || v < 1 {
		c.problem(at, "%s: pipe %d: %s must be a positive integer, got %q", c.jobRef(j), pipe, name, raw)
		return 0, false
	}
	return v, true
}
