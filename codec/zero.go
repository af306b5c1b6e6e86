package codec

import "fmt"

// ZeroLike returns the payload of a "zero" dummy shaped like payload, a real block of the same
// pipe: for bytes, zero bytes of the block size; for cbor and json, the zero value of payload's
// value — 0 for an integer, 0.0 for a float, "", false, a list of as many zeros (recursively), a
// map with the same keys and zero values, as many zero bytes. A dummy computed from it then has
// the type and shape a job expects, so sums, products and indexing keep working across it.
func ZeroLike(c Codec, payload []byte) ([]byte, error) {
	if c.Name() == Bytes {
		return c.Zero(), nil
	}
	v, err := c.DecodeAny(payload)
	if err != nil {
		return nil, fmt.Errorf("zero dummy: %w", err)
	}
	return c.Append(nil, zeroOf(v))
}

// zeroOf is the zero value shaped like v (a value of DecodeAny).
func zeroOf(v any) any {
	switch x := v.(type) {
	case int64, uint64, int:
		return int64(0)
	case float64, float32:
		return float64(0)
	case string:
		return ""
	case bool:
		return false
	case []byte:
		return make([]byte, len(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = zeroOf(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = zeroOf(e)
		}
		return out
	case map[any]any:
		out := make(map[any]any, len(x))
		for k, e := range x {
			out[k] = zeroOf(e)
		}
		return out
	}
	return nil
}
