package pipeline

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Arg kinds: what JSON value an arg takes. A job type's args are described by a TypeSpec, which
// package job derives from the job struct's fields; CheckArgs is the one check of args against
// it, run by validate, by the broker at submit and by a worker building a job.
const (
	KindInteger  = "integer"
	KindNumber   = "number"
	KindString   = "string"
	KindBoolean  = "boolean"
	KindDuration = "duration" // a Go duration string such as "10ms", or a number of seconds
	KindArray    = "array"
	KindObject   = "object"
	KindAny      = "any"
)

// ArgSpec describes one arg of a job type.
type ArgSpec struct {
	Name string `json:"name"`
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Elem is the kind of an array's elements ("" for any).
	Elem        string   `json:"elem,omitempty"`
	Required    bool     `json:"required,omitempty"`
	Default     any      `json:"default,omitempty"`
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
	Enum        []string `json:"enum,omitempty"`
	Description string   `json:"description,omitempty"`
}

// TypeSpec describes a Go job type: its name, a one-line description and its args.
type TypeSpec struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Args        []ArgSpec `json:"args"`
	// Open is set for a type that takes any args (its factory is not a struct): CheckArgs
	// then accepts everything.
	Open bool `json:"open,omitempty"`
}

// Arg returns the spec of the named arg.
func (t TypeSpec) Arg(name string) (ArgSpec, bool) {
	for _, a := range t.Args {
		if a.Name == name {
			return a, true
		}
	}
	return ArgSpec{}, false
}

// CheckArgs checks args against the type's spec and returns every problem: unknown args, missing
// required args, wrong kinds and values out of range or not among the allowed ones. Each
// problem's Path is the arg's name (a path below it for an array element), relative to "args".
// Problems come in arg name order.
func CheckArgs(t TypeSpec, args map[string]any) []Problem {
	if t.Open {
		return nil
	}
	var out []Problem
	known := make([]string, len(t.Args))
	for i, a := range t.Args {
		known[i] = a.Name
		if _, ok := args[a.Name]; a.Required && !ok {
			out = append(out, Problem{Path: a.Name, Message: fmt.Sprintf("missing required arg %q (%s)", a.Name, describeKind(a))})
		}
	}
	names := make([]string, 0, len(args))
	for k := range args {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		a, ok := t.Arg(k)
		if !ok {
			list := "it takes none"
			if len(known) > 0 {
				list = "known: " + strings.Join(known, ", ")
			}
			out = append(out, Problem{Path: joinKey("", k), Message: fmt.Sprintf("unknown arg %q%s (%s)", k, didYouMean(k, known), list)})
			continue
		}
		out = append(out, checkArg(joinKey("", k), a, a.Kind, args[k])...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func checkArg(path string, a ArgSpec, kind string, v any) []Problem {
	bad := func(format string, args ...any) []Problem {
		return []Problem{{Path: path, Message: fmt.Sprintf("arg %q: ", a.Name) + fmt.Sprintf(format, args...)}}
	}
	if v == nil {
		return nil // null leaves the default
	}
	v = normalizeNumber(v)
	var num float64
	isNum := false
	switch kind {
	case KindAny, "":
		return nil
	case KindInteger:
		switch n := v.(type) {
		case int64:
			num, isNum = float64(n), true
		case float64:
			if n != math.Trunc(n) {
				return bad("expected an integer, got %v", n)
			}
			num, isNum = n, true
		default:
			return bad("expected an integer, got %s %s", typeName(v), shortValue(v))
		}
	case KindNumber:
		switch n := v.(type) {
		case int64:
			num, isNum = float64(n), true
		case float64:
			num, isNum = n, true
		default:
			return bad("expected a number, got %s %s", typeName(v), shortValue(v))
		}
	case KindString:
		s, ok := v.(string)
		if !ok {
			return bad("expected a string, got %s %s", typeName(v), shortValue(v))
		}
		if len(a.Enum) > 0 && !slices.Contains(a.Enum, s) {
			return bad("%q is not one of %s", s, strings.Join(a.Enum, ", "))
		}
	case KindBoolean:
		if _, ok := v.(bool); !ok {
			return bad("expected true or false, got %s %s", typeName(v), shortValue(v))
		}
	case KindDuration:
		d, err := ParseDurationArg(v)
		if err != nil {
			return bad("%v", err)
		}
		num, isNum = d.Seconds(), true
	case KindArray:
		arr, ok := v.([]any)
		if !ok {
			return bad("expected an array, got %s %s", typeName(v), shortValue(v))
		}
		var out []Problem
		for i, e := range arr {
			out = append(out, checkArg(indexPath(path, i), a, a.Elem, e)...)
		}
		return out
	case KindObject:
		if _, ok := v.(map[string]any); !ok {
			return bad("expected an object, got %s %s", typeName(v), shortValue(v))
		}
	}
	if isNum && kind == a.Kind {
		unit := ""
		if kind == KindDuration {
			unit = " s"
		}
		if a.Min != nil && num < *a.Min && *a.Min == 0 {
			return bad("%s is out of range: must not be negative", shortValue(v))
		}
		if a.Min != nil && num < *a.Min {
			return bad("%s is out of range: must be at least %s%s", shortValue(v), fmtNum(*a.Min), unit)
		}
		if a.Max != nil && num > *a.Max {
			return bad("%s is out of range: must be at most %s%s", shortValue(v), fmtNum(*a.Max), unit)
		}
	}
	return nil
}

// normalizeNumber turns the Go number types args built in code may hold into the int64 and
// float64 a decoded document holds.
func normalizeNumber(v any) any {
	switch n := v.(type) {
	case int:
		return int64(n)
	case int8:
		return int64(n)
	case int16:
		return int64(n)
	case int32:
		return int64(n)
	case uint:
		return float64(n)
	case uint8:
		return int64(n)
	case uint16:
		return int64(n)
	case uint32:
		return int64(n)
	case uint64:
		return float64(n)
	case float32:
		return float64(n)
	}
	return v
}

// ParseDurationArg reads a duration arg: a Go duration string ("10ms", "1.5s") or a number of
// seconds, as MARVELO's Python jobs took them. A negative duration is an error.
func ParseDurationArg(v any) (time.Duration, error) {
	var d time.Duration
	v = normalizeNumber(v)
	switch v := v.(type) {
	case string:
		p, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration (want a string such as \"10ms\" or a number of seconds)", v)
		}
		d = p
	case int64:
		d = time.Duration(v) * time.Second
	case float64:
		d = time.Duration(v * float64(time.Second))
	default:
		return 0, fmt.Errorf("expected a duration such as \"10ms\" or a number of seconds, got %s %s", typeName(v), shortValue(v))
	}
	if d < 0 {
		return 0, fmt.Errorf("%s is out of range: a duration must not be negative", shortValue(v))
	}
	return d, nil
}

func describeKind(a ArgSpec) string {
	if a.Kind == KindArray && a.Elem != "" && a.Elem != KindAny {
		return "array of " + a.Elem
	}
	return a.Kind
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// shortValue shows a value in a message as JSON would, cut to a readable length.
func shortValue(v any) string {
	var s string
	switch v := v.(type) {
	case string:
		s = strconv.Quote(v)
	case map[string]any:
		return "{…}"
	case []any:
		return "[…]"
	case nil:
		return "null"
	default:
		s = fmt.Sprint(v)
	}
	if len(s) > 40 {
		s = s[:37] + "…"
	}
	return s
}
