package pipeline

import "fmt"

// The generic tree is what the first pass of decoding produces and the second consumes: the
// JSON (jsontree.go), YAML (yaml.go) and CBOR (cborread.go) readers build it, the builder
// (build.go) walks it. It is kept apart from both sides, which share nothing else.

// object is a decoded JSON object or CBOR map, members in document order.
type object []member

type member struct {
	key    string
	badKey string // the type of a CBOR map key that is not a text string; key is then empty
	val    any
}

// outOfRange is a number that does not fit an int64 (or a float64), kept as text so that the
// second pass can say where it is.
type outOfRange struct{ text string }

// unsupported is a well-formed CBOR item that has no JSON equivalent (byte string, tag,
// undefined, simple value, NaN, infinity). Documents are JSON values in either form, so these are
// problems, reported with their path by the second pass.
type unsupported struct{ what string }

// syntaxError is malformed input at a byte offset.
type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return e.msg }

// typeName names a tree value's type in messages.
func typeName(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case int64:
		return "integer"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case object, map[string]any:
		return "object"
	case outOfRange:
		return "number " + v.text
	case unsupported:
		return v.what
	case yamlAlias:
		return v.String()
	}
	return fmt.Sprintf("%T", v)
}
