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
//		command.Main(reg) // a worker of your own that also carries the builtin jobs
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
	"strconv"
	"strings"
	"time"

	"github.com/marvelo/marvelo/pipeline"
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

// Spec describes the named type: its description and args (see SpecOf).
func (r *Registry) Spec(name string) (pipeline.TypeSpec, bool) {
	t, ok := r.types[name]
	if !ok {
		return pipeline.TypeSpec{}, false
	}
	return t.Spec(), true
}

// Specs describes every registered type, sorted by name: what `marvelo types` lists and what a
// worker advertises to the broker.
func (r *Registry) Specs() []pipeline.TypeSpec {
	out := make([]pipeline.TypeSpec, 0, len(r.types))
	for _, t := range r.Types() {
		out = append(out, t.Spec())
	}
	return out
}

// Spec describes the type: a new job value's fields give its args.
func (t Type) Spec() pipeline.TypeSpec {
	s := SpecOf(t.New())
	s.Name, s.Description = t.Name, t.Description
	return s
}

// SpecOf describes the args of a job value (a pointer to a struct, as a Factory returns): one
// arg per exported field, named by its json tag, of the kind its Go type takes, with the
// field's value as the default. Struct tags add to it:
//
//	Count int64 `json:"count" marvelo:"required,min=0,max=100" help:"how many values; 0 is endless"`
//	Mode string `json:"mode" marvelo:"enum=fast|exact"`
//
// A job value that is not a pointer to a struct takes no args.
func SpecOf(j any) pipeline.TypeSpec {
	rv := reflect.ValueOf(j)
	if j == nil || rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
		return pipeline.TypeSpec{Args: []pipeline.ArgSpec{}}
	}
	st := rv.Elem()
	args := []pipeline.ArgSpec{}
	for i := 0; i < st.NumField(); i++ {
		f := st.Type().Field(i)
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
		a := pipeline.ArgSpec{Name: name, Description: f.Tag.Get("help")}
		a.Kind, a.Elem = argKind(f.Type)
		for _, opt := range strings.Split(f.Tag.Get("marvelo"), ",") {
			key, val, _ := strings.Cut(strings.TrimSpace(opt), "=")
			switch key {
			case "required":
				a.Required = true
			case "min", "max":
				v, err := strconv.ParseFloat(val, 64)
				if err != nil {
					panic(fmt.Sprintf("job: %T field %s: marvelo tag %s=%q is not a number", j, f.Name, key, val))
				}
				if key == "min" {
					a.Min = &v
				} else {
					a.Max = &v
				}
			case "enum":
				a.Enum = strings.Split(val, "|")
			}
		}
		if fv := st.Field(i); !a.Required {
			if raw, err := json.Marshal(fv.Interface()); err == nil {
				var d any
				if json.Unmarshal(raw, &d) == nil {
					a.Default = d
				}
			}
		}
		args = append(args, a)
	}
	return pipeline.TypeSpec{Args: args}
}

var durationType = reflect.TypeFor[Duration]()

// argKind is the JSON kind a Go field type takes (and its elements' kind for a slice).
func argKind(t reflect.Type) (kind, elem string) {
	if t == durationType {
		return pipeline.KindDuration, ""
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		return pipeline.KindAny, "" // decodes itself: its own errors say what it takes
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return pipeline.KindInteger, ""
	case reflect.Float32, reflect.Float64:
		return pipeline.KindNumber, ""
	case reflect.String:
		return pipeline.KindString, ""
	case reflect.Bool:
		return pipeline.KindBoolean, ""
	case reflect.Slice, reflect.Array:
		e, _ := argKind(t.Elem())
		return pipeline.KindArray, e
	case reflect.Map, reflect.Struct:
		return pipeline.KindObject, ""
	case reflect.Pointer:
		return argKind(t.Elem())
	}
	return pipeline.KindAny, ""
}

// New builds a job of the named type from its args: they are checked against the type's spec
// (pipeline.CheckArgs, the same check validate and the broker make), decoded, and then the job's
// Validate runs, if it has one.
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

// DecodeArgs checks args against the spec of the struct dst points to (SpecOf) and decodes them
// into it by the fields' json tags. Every problem is reported at once.
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
	if problems := pipeline.CheckArgs(SpecOf(dst), args); len(problems) > 0 {
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Message
		}
		return errors.New("args: " + strings.Join(msgs, "; "))
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
		// Errors of an arg type's own UnmarshalJSON do not say which arg failed.
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

// Duration is an arg holding a Go duration string such as "10ms" or "1.5s"; a bare number is
// taken as seconds, as MARVELO's Python jobs took them.
type Duration time.Duration

// UnmarshalJSON accepts "10ms" or a number of seconds (pipeline.ParseDurationArg); null leaves
// the duration as it is.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	if f, ok := v.(float64); ok {
		v = f
	}
	p, err := pipeline.ParseDurationArg(v)
	if err != nil {
		return err
	}
	*d = Duration(p)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }
