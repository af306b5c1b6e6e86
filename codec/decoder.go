package codec

import (
	"errors"
	"fmt"
	"reflect"
)

var (
	typeAny     = reflect.TypeFor[any]()
	typeBytes   = reflect.TypeFor[[]byte]()
	typeString  = reflect.TypeFor[string]()
	typeInt     = reflect.TypeFor[int]()
	typeInt64   = reflect.TypeFor[int64]()
	typeFloat64 = reflect.TypeFor[float64]()
	typeBool    = reflect.TypeFor[bool]()
)

// fastDecoders is implemented by codecs that decode some common types without reflect.New; it
// returns nil for the other types.
type fastDecoders interface {
	decoderFor(t reflect.Type) Decoder
}

// NewDecoder returns a Decoder of c's payloads into values of type t. An empty interface type
// gets DecodeAny's generic values. For a bytes codec, t must be []byte, string, [N]byte with N the
// block size (named types too) or an empty interface; anything else is an error now rather than
// at the first block.
func NewDecoder(c Codec, t reflect.Type) (Decoder, error) {
	if c == nil || t == nil {
		return nil, errors.New("codec: NewDecoder needs a codec and a type")
	}
	if bc, ok := c.(*bytesCodec); ok {
		if err := bc.checkType(t); err != nil {
			return nil, err
		}
	}
	if t.Kind() == reflect.Interface {
		if t.NumMethod() > 0 {
			return nil, fmt.Errorf("codec %s: cannot decode into interface %s; use any or a concrete type", c.Name(), t)
		}
		return anyDecoder(c, t), nil
	}
	if fd, ok := c.(fastDecoders); ok {
		if d := fd.decoderFor(t); d != nil {
			return d, nil
		}
	}
	return reflectDecoder(c, t), nil
}

// anyDecoder returns values whose type is the interface t itself (not the dynamic type), so a
// nil result is still a valid argument for reflect.Value.Call.
func anyDecoder(c Codec, t reflect.Type) Decoder {
	return func(p []byte) (reflect.Value, error) {
		v, err := c.DecodeAny(p)
		if err != nil {
			return reflect.Value{}, err
		}
		rv := reflect.New(t).Elem()
		if v != nil {
			rv.Set(reflect.ValueOf(v))
		}
		return rv, nil
	}
}

// reflectDecoder is the general path: a new *t for every payload, filled by Decode.
func reflectDecoder(c Codec, t reflect.Type) Decoder {
	return func(p []byte) (reflect.Value, error) {
		ptr := reflect.New(t)
		if err := c.Decode(p, ptr.Interface()); err != nil {
			return reflect.Value{}, err
		}
		return ptr.Elem(), nil
	}
}
