// Package job is the Go job API: the types a job author implements, the registry of job types a
// worker carries, and the binding that turns a job value into something the worker can drive one
// compute block at a time.
//
// A job type is a struct whose exported fields are its args (decoded strictly from the pipeline
// document's "args" map by their json tags) and whose methods say what it does:
//
//	type Scale struct {
//		Factor float64 `json:"factor" marvelo:"required"`
//	}
//
//	func (s *Scale) Run(ctx *job.Context, x float64) (float64, error) { return s.Factor * x, nil }
//
//	func main() {
//		reg := builtin.Registry()
//		reg.Register("scale", "multiplies its input by factor", func() any { return &Scale{} })
//		worker.Main(reg) // a worker of your own that also carries the builtin jobs
//	}
//
// Methods a job may have (all optional but one of Run, Generate, RunRaw):
//
//	Validate() error                          checks args after decoding (at submit)
//	Setup(ctx *Context) error                 on the worker, before the first block
//	Run(ctx *Context, in1 T1, in2 T2, ...) (R, error)
//	                                          once per compute block; one argument per input,
//	                                          a []T where the pipe's block_count > 1; variadic
//	                                          inputs allowed; a source's Run takes only ctx and
//	                                          is called until it returns ErrEnd or calls Finish
//	Generate(ctx *Context, emit func(any) error) error
//	                                          a source as a generator: emit each value in turn
//	Close() error                             at the end, whatever happened
//
// Output mapping: a returned Outputs value gives each output its own value (its length must equal
// the number of outputs); any other value goes to every output. Returning ErrEnd ends the job
// without setting the finished bit; downstream jobs still learn that the stream ended.
package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Factory returns a new job value with its args at their defaults, ready for args to be decoded
// into it. It must return a pointer to a struct.
type Factory func() any

// Type describes a registered job type.
type Type struct {
	Name        string
	Description string
	New         Factory
}

// Registry maps job type names to factories. A worker advertises the names it carries.
type Registry struct {
	types map[string]Type
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{types: map[string]Type{}} }

// Register adds a job type. It panics on a duplicate or empty name: registration happens in main,
// where a mistake must stop the program at once.
func (r *Registry) Register(name, description string, f Factory) {
	if name == "" {
		panic("job: Register with an empty name")
	}
	if _, dup := r.types[name]; dup {
		panic(fmt.Sprintf("job: type %q registered twice", name))
	}
	r.types[name] = Type{Name: name, Description: description, New: f}
}

// Has reports whether a type is registered.
func (r *Registry) Has(name string) bool {
	_, ok := r.types[name]
	return ok
}

// Names returns the registered type names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.types))
	for n := range r.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Types returns the registered types, sorted by name.
func (r *Registry) Types() []Type {
	out := make([]Type, 0, len(r.types))
	for _, n := range r.Names() {
		out = append(out, r.types[n])
	}
	return out
}

// New builds a job of the named type from its args: unknown args, mistyped args and missing
// required args are errors that name the arg; then the job's Validate runs, if it has one.
func (r *Registry) New(name string, args map[string]any) (any, error) {
	t, ok := r.types[name]
	if !ok {
		return nil, fmt.Errorf("unknown job type %q (this worker has: %s)", name, strings.Join(r.Names(), ", "))
	}
	j := t.New()
	if err := DecodeArgs(j, args); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if v, ok := j.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("%s: args: %w", name, err)
		}
	}
	return j, nil
}

// DecodeArgs decodes args into the struct dst points to, by the fields' json tags. A field tagged
// `marvelo:"required"` must be present.
func DecodeArgs(dst any, args map[string]any) error {
	if dst == nil {
		return errors.New("job factory returned nil")
	}
	rv := reflect.ValueOf(dst)
	if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		if len(args) == 0 {
			return nil // a job without args may be any type
		}
		return fmt.Errorf("job factory returned %T, want a pointer to a struct to take args", dst)
	}
	fields := argFields(rv.Elem().Type())
	var problems []string
	for _, f := range fields {
		if f.required {
			if _, ok := args[f.name]; !ok {
				problems = append(problems, fmt.Sprintf("missing required arg %q", f.name))
			}
		}
	}
	for k := range args {
		if !hasField(fields, k) {
			problems = append(problems, fmt.Sprintf("unknown arg %q (known: %s)", k, fieldNames(fields)))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New("args: " + strings.Join(problems, "; "))
	}
	if len(args) == 0 {
		return nil
	}
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("args: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("args: arg %q: expected %s, got %s", te.Field, te.Type, te.Value)
		}
		// Errors of an arg type's own UnmarshalJSON (Duration) do not say which arg failed.
		if name := failingArg(rv.Elem().Type(), args); name != "" {
			return fmt.Errorf("args: arg %q: %w", name, err)
		}
		return fmt.Errorf("args: %w", err)
	}
	return nil
}

// failingArg returns the first arg, in name order, that does not decode on its own into a new
// value of type t, or "" when each does.
func failingArg(t reflect.Type, args map[string]any) string {
	names := make([]string, 0, len(args))
	for k := range args {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		raw, err := json.Marshal(map[string]any{k: args[k]})
		if err != nil {
			return k
		}
		if json.Unmarshal(raw, reflect.New(t).Interface()) != nil {
			return k
		}
	}
	return ""
}

type argField struct {
	name     string
	required bool
}

func argFields(t reflect.Type) []argField {
	var out []argField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, argField{name: name, required: f.Tag.Get("marvelo") == "required"})
	}
	return out
}

func hasField(fields []argField, name string) bool {
	for _, f := range fields {
		if f.name == name {
			return true
		}
	}
	return false
}

func fieldNames(fields []argField) string {
	if len(fields) == 0 {
		return "none"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// Duration is an arg holding a Go duration string such as "10ms" or "1.5s"; a bare number is
// taken as seconds, as MARVELO's Python jobs took them.
type Duration time.Duration

// UnmarshalJSON accepts "10ms" or a number of seconds; null leaves the duration as it is.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		if v < 0 {
			return fmt.Errorf("duration %q is negative", s)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration: want a string such as \"10ms\" or a number of seconds, got %s", b)
	}
	if secs < 0 {
		return fmt.Errorf("duration %v is negative", secs)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
