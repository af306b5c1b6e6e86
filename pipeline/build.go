package pipeline

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/marvelo/marvelo/codec"
)

// The second pass of decoding: the builder walks the generic tree (tree.go) into a Pipeline,
// collecting every problem with its path. It is separate from the readers because it is the same
// for every format, which is what makes JSON, YAML and CBOR equally strict. The entry point and
// the walk over objects come first, then the field tables, then the decoders of single values.

// builder walks the tree into a Pipeline, collecting every problem with its path.
type builder struct {
	problems []Problem
}

// fields maps the keys an object of type T may have to what decodes each value into a *T. The
// tables are built once: decoding allocates nothing per object for them.
type fields[T any] map[string]func(b *builder, t *T, path string, v any)

func (b *builder) add(path, format string, args ...any) {
	b.problems = append(b.problems, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (b *builder) pipeline(v any) *Pipeline {
	p := &Pipeline{}
	if _, ok := v.(object); !ok {
		if !b.alias("", v) {
			b.add("", "a pipeline document must be an object, got %s", typeName(v))
		}
		return p
	}
	decodeFields(b, "", v, pipelineFields, p)
	return p
}

// decodeFields decodes an object with a fixed set of keys into t: each member goes to its
// field's decoder; unknown, duplicate and non-string keys are problems.
func decodeFields[T any](b *builder, path string, v any, fs fields[T], t *T) {
	if b.alias(path, v) {
		return
	}
	obj, ok := v.(object)
	if !ok {
		b.add(path, "expected object, got %s", typeName(v))
		return
	}
	dup := obj.duplicates()
	for i, m := range obj {
		if m.badKey != "" {
			b.add(path, "keys must be strings, got %s", m.badKey)
			continue
		}
		p := joinKey(path, m.key)
		decode, known := fs[m.key]
		switch {
		case dup != nil && dup[i]:
			b.add(p, "duplicate key")
		case !known:
			b.add(p, "unknown key%s", didYouMean(m.key, slices.Sorted(maps.Keys(fs))))
		case b.alias(p, m.val):
		default:
			decode(b, t, p, m.val)
		}
	}
}

// duplicates flags each member whose key an earlier member already has.
func (o object) duplicates() []bool {
	if len(o) < 2 {
		return nil
	}
	dup := make([]bool, len(o))
	if len(o) <= 16 { // the usual case: a scan is cheaper than a set
		for i := range o {
			for _, m := range o[:i] {
				dup[i] = dup[i] || m.badKey == "" && o[i].badKey == "" && m.key == o[i].key
			}
		}
		return dup
	}
	seen := make(map[string]bool, len(o))
	for i, m := range o {
		if m.badKey == "" {
			dup[i] = seen[m.key]
			seen[m.key] = true
		}
	}
	return dup
}

var pipelineFields = fields[Pipeline]{
	"name": func(b *builder, p *Pipeline, path string, v any) { p.Name = b.str(path, v) },
	"jobs": func(b *builder, p *Pipeline, path string, v any) {
		arr := b.array(path, v, MaxJobs)
		p.Jobs = make([]Job, len(arr))
		for i, e := range arr {
			decodeFields(b, indexPath(path, i), e, jobFields, &p.Jobs[i])
		}
	},
	"pipes": func(b *builder, p *Pipeline, path string, v any) {
		arr := b.array(path, v, MaxPipes)
		if len(arr) > 0 {
			p.Pipes = make([]Pipe, len(arr))
		}
		for i, e := range arr {
			decodeFields(b, indexPath(path, i), e, pipeFields, &p.Pipes[i])
		}
	},
}

var jobFields = fields[Job]{
	"id":   func(b *builder, j *Job, path string, v any) { j.ID, _ = b.int(path, v) },
	"name": func(b *builder, j *Job, path string, v any) { j.Name = b.str(path, v) },
	"type": func(b *builder, j *Job, path string, v any) { j.Type = b.str(path, v) },
	"args": func(b *builder, j *Job, path string, v any) { j.Args = b.args(path, v) },
	"exec": func(b *builder, j *Job, path string, v any) {
		j.Exec = &Exec{}
		decodeFields(b, path, v, execFields, j.Exec)
	},
	"python": func(b *builder, j *Job, path string, v any) {
		j.Python = &Python{}
		decodeFields(b, path, v, pythonFields, j.Python)
	},
	"inputs":    func(b *builder, j *Job, path string, v any) { j.Inputs = b.ints(path, v) },
	"outputs":   func(b *builder, j *Job, path string, v any) { j.Outputs = b.ints(path, v) },
	"groups":    func(b *builder, j *Job, path string, v any) { j.Groups = b.strs(path, v) },
	"node":      func(b *builder, j *Job, path string, v any) { j.Node = b.str(path, v) },
	"max_queue": func(b *builder, j *Job, path string, v any) { j.MaxQueue, _ = b.int(path, v) },
	"head":      func(b *builder, j *Job, path string, v any) { j.Head = b.bool(path, v) },
	"head_size": func(b *builder, j *Job, path string, v any) { j.HeadSize = b.intIn(path, v, 1, 4) },
	"dummy":     func(b *builder, j *Job, path string, v any) { j.Dummy = b.enum(path, v, DummyZero, DummyPrev) },
	"log":       func(b *builder, j *Job, path string, v any) { j.Log = b.bool(path, v) },
	"spread":    func(b *builder, j *Job, path string, v any) { j.Spread = b.bool(path, v) },
	"restart": func(b *builder, j *Job, path string, v any) {
		j.Restart = &Restart{}
		decodeFields(b, path, v, restartFields, j.Restart)
	},
}

// restartFields: max must be at least 1 when given (an explicit 0 cannot be told from an absent
// key later); the policy and the backoff's duration are checked by Validate.
var restartFields = fields[Restart]{
	"policy": func(b *builder, r *Restart, path string, v any) {
		r.Policy = b.enum(path, v, RestartNever, RestartOnFailure)
	},
	"max":         func(b *builder, r *Restart, path string, v any) { r.Max = b.intIn(path, v, 1, math.MaxInt) },
	"backoff":     func(b *builder, r *Restart, path string, v any) { r.Backoff = b.str(path, v) },
	"skip_poison": func(b *builder, r *Restart, path string, v any) { r.SkipPoison = b.bool(path, v) },
}

var execFields = fields[Exec]{
	"path":         func(b *builder, e *Exec, path string, v any) { e.Path = b.str(path, v) },
	"params":       func(b *builder, e *Exec, path string, v any) { e.Params = b.strs(path, v) },
	"mode":         func(b *builder, e *Exec, path string, v any) { e.Mode = b.enum(path, v, ModeFIFO, ModeFD) },
	"input_flag":   func(b *builder, e *Exec, path string, v any) { e.InputFlag = b.str(path, v) },
	"output_flag":  func(b *builder, e *Exec, path string, v any) { e.OutputFlag = b.str(path, v) },
	"dependencies": func(b *builder, e *Exec, path string, v any) { e.Dependencies = b.str(path, v) },
	"sqn":          func(b *builder, e *Exec, path string, v any) { e.SQN = b.bool(path, v) },
}

var pythonFields = fields[Python]{
	"class":        func(b *builder, p *Python, path string, v any) { p.Class = b.str(path, v) },
	"dependencies": func(b *builder, p *Python, path string, v any) { p.Dependencies = b.str(path, v) },
	"interpreter":  func(b *builder, p *Python, path string, v any) { p.Interpreter = b.str(path, v) },
	"arrays":       func(b *builder, p *Python, path string, v any) { p.Arrays = b.enum(path, v, ArraysNumpy, ArraysList) },
	"requires":     func(b *builder, p *Python, path string, v any) { p.Requires = b.strs(path, v) },
}

// block_size and block_count must be at least 1 when given: the struct cannot tell an explicit
// 0 from an absent key, so decoding is the only place an explicit 0 can be caught.
var pipeFields = fields[Pipe]{
	"id": func(b *builder, p *Pipe, path string, v any) { p.ID, _ = b.int(path, v) },
	"codec": func(b *builder, p *Pipe, path string, v any) {
		p.Codec = b.enum(path, v, codec.CBOR, codec.JSON, codec.Bytes)
	},
	"block_size":  func(b *builder, p *Pipe, path string, v any) { p.BlockSize = b.intIn(path, v, 1, math.MaxInt) },
	"block_count": func(b *builder, p *Pipe, path string, v any) { p.BlockCount = b.intIn(path, v, 1, math.MaxInt) },
	"async":       func(b *builder, p *Pipe, path string, v any) { p.Async = b.bool(path, v) },
	"optional": func(b *builder, p *Pipe, path string, v any) {
		p.Optional = &Optional{}
		decodeFields(b, path, v, optionalFields, p.Optional)
	},
	"from_types": func(b *builder, p *Pipe, path string, v any) { p.FromTypes = b.strs(path, v) },
	"to_types":   func(b *builder, p *Pipe, path string, v any) { p.ToTypes = b.strs(path, v) },
	"qos":        func(b *builder, p *Pipe, path string, v any) { p.QoS = b.enum(path, v, QoSReliable, QoSRealtime) },
	"dtype":      func(b *builder, p *Pipe, path string, v any) { p.Dtype = b.str(path, v) },
}

var optionalFields = fields[Optional]{
	"default": func(b *builder, o *Optional, path string, v any) { o.Default = b.plain(path, v) },
	"store": func(b *builder, o *Optional, path string, v any) {
		s := b.bool(path, v)
		o.Store = &s
	},
	"buffer": func(b *builder, o *Optional, path string, v any) { o.Buffer, _ = b.int(path, v) },
	"drop":   func(b *builder, o *Optional, path string, v any) { o.Drop = b.enum(path, v, "oldest", "newest") },
}

// array returns v as an array of at most limit elements (any length when limit is 0), or nil
// after reporting a problem.
func (b *builder) array(path string, v any, limit int) []any {
	arr, ok := v.([]any)
	switch {
	case !ok:
		b.add(path, "expected array, got %s", typeName(v))
	case limit > 0 && len(arr) > limit:
		b.add(path, "%d entries is more than the %d a document may have", len(arr), limit)
	default:
		return arr
	}
	return nil
}

func (b *builder) list(path string, v any, each func(path string, v any)) {
	for i, e := range b.array(path, v, 0) {
		each(indexPath(path, i), e)
	}
}

func (b *builder) str(path string, v any) string {
	s, ok := v.(string)
	if !ok {
		b.add(path, "expected string, got %s", typeName(v))
	}
	return s
}

func (b *builder) bool(path string, v any) bool {
	t, ok := v.(bool)
	if !ok {
		b.add(path, "expected boolean, got %s", typeName(v))
	}
	return t
}

// int decodes an integer; ok is false when a problem was reported.
func (b *builder) int(path string, v any) (n int, ok bool) {
	switch v := v.(type) {
	case int64:
		if int64(int(v)) == v {
			return int(v), true
		}
		b.add(path, "integer %d is out of range", v)
	case outOfRange:
		b.add(path, "%s is out of range", v.text)
	default:
		b.add(path, "expected integer, got %s", typeName(v))
	}
	return 0, false
}

// intIn decodes an integer that must lie in [lo, hi] when given.
func (b *builder) intIn(path string, v any, lo, hi int) int {
	n, ok := b.int(path, v)
	switch {
	case !ok:
	case n < lo && hi == math.MaxInt:
		b.add(path, "must be at least %d, got %d", lo, n)
	case n < lo || n > hi:
		b.add(path, "must be %d to %d, got %d", lo, hi, n)
	}
	return n
}

func (b *builder) enum(path string, v any, allowed ...string) string {
	s, ok := v.(string)
	if !ok {
		b.add(path, "expected string, got %s", typeName(v))
		return ""
	}
	for _, a := range allowed {
		if s == a {
			return s
		}
	}
	b.add(path, "%s is not one of %s", strconv.Quote(s), strings.Join(allowed, ", "))
	return s
}

func (b *builder) ints(path string, v any) []int {
	var out []int
	b.list(path, v, func(path string, v any) {
		n, _ := b.int(path, v)
		out = append(out, n)
	})
	return out
}

func (b *builder) strs(path string, v any) []string {
	var out []string
	b.list(path, v, func(path string, v any) { out = append(out, b.str(path, v)) })
	return out
}

func (b *builder) args(path string, v any) map[string]any {
	if _, ok := v.(object); !ok {
		b.add(path, "expected object, got %s", typeName(v))
		return nil
	}
	m, _ := b.plain(path, v).(map[string]any)
	return m
}

// plain converts a free-form value (args, optional.default) to map[string]any, []any, string,
// int64, float64, bool or nil.
func (b *builder) plain(path string, v any) any {
	switch v := v.(type) {
	case object:
		m := make(map[string]any, len(v))
		for _, mem := range v {
			if mem.badKey != "" {
				b.add(path, "keys must be strings, got %s", mem.badKey)
				continue
			}
			p := joinKey(path, mem.key)
			if _, dup := m[mem.key]; dup {
				b.add(p, "duplicate key")
				continue
			}
			m[mem.key] = b.plain(p, mem.val)
		}
		return m
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = b.plain(indexPath(path, i), e)
		}
		return out
	case outOfRange:
		b.add(path, "%s is out of range", v.text)
		return nil
	case unsupported:
		b.add(path, "%s is not allowed: a pipeline document holds JSON values only", v.what)
		return nil
	case yamlAlias:
		b.alias(path, v)
		return nil
	}
	return v
}

// alias reports a YAML alias, which a document may not use: it is a problem of its own, not a
// value of the wrong type.
func (b *builder) alias(path string, v any) bool {
	a, ok := v.(yamlAlias)
	if ok {
		b.add(path, "%s is not allowed: write the value out", a)
	}
	return ok
}
