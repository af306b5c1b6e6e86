"""CBOR (RFC 8949) for marvelo's cbor pipes, in pure Python, numpy used when importable.

What the Go side sends: integers of any size (bignum tags 2 and 3 beyond 64 bits), floats in
their shortest exact form (half, single or double: Go's core deterministic encoding), text,
bytes, arrays, maps, true/false/null. What it reads back: any well-formed item.

Why our own codec and not cbor2, measured with tests/bench_codec.py (/usr/bin/python3 3.11,
Debian's cbor2 5.4.6 with its C extension, on this 2-core machine; per call):

                          own decode  cbor2.loads  own encode  cbor2.dumps
    int 1000000              0.17 us      0.44 us     0.20 us      1.61 us
    float 0.1                0.12 us      0.47 us     0.17 us      1.56 us
    str (20 chars)           0.23 us      0.48 us     0.28 us      1.60 us
    map of 10 short lists    6.7 us       2.3 us      8.1 us       3.9 us
    list of 100k float64     1.8-2.9 ms   4.3 ms      3.8 ms*      3.6 ms
    ndarray 100k float64     0.23 ms      5.9 ms**    1.2 ms       4.2 ms***
    same, every 100th 0.0    2.1 ms       4.2 ms**    -            -
    (* numpy loaded; 21 ms item by item without it. ** cbor2 gives a list: + np.array.
     *** dumps(a.tolist()); cbor2 writes every float as 8 bytes, Go's encoding is shortest.)

- The per-round scalars that dominate a stream are faster here than a call into cbor2.
- Numeric arrays, where signal processing spends its bytes, are decoded by runs of equal-width
  items with C-speed slicing (one struct.unpack or numpy.frombuffer per run) and encoded
  vectorised, so ndarrays cost 4-25x less than through cbor2 (which has no numpy support).
- cbor2 wins only on nested containers (3x on a 10-key map of lists), rare per round, and it
  maps tags, undefined and simple values to its own types (CBORTag, undefined, datetime): a job
  would behave differently on a machine without it. One codec everywhere keeps emulate and every
  worker alike, so cbor2 is not used (tests/test_cbor.py cross-checks against it where present).
- Floats are written in their shortest exact width, as Go's core deterministic encoding does,
  byte for byte (checked against 72k Go-encoded vectors when this was written).
"""

import struct
import sys

__all__ = ["CBORError", "EncodeError", "Incomplete", "Simple", "dumps", "loads", "make_decoder"]


class CBORError(ValueError):
    """A malformed CBOR item."""


class Incomplete(Exception):
    """The item continues past the end of the buffer: read more and decode again."""


class EncodeError(TypeError):
    """A value that CBOR (or the pipe's codec) cannot carry; type_name names its Python type."""

    def __init__(self, type_name, detail=""):
        self.type_name = type_name
        TypeError.__init__(self, detail or "a value of type %s cannot be encoded" % type_name)


class Simple(int):
    """A CBOR simple value other than false, true, null and undefined."""

    def __repr__(self):
        return "Simple(%d)" % self


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_F16 = struct.Struct(">e")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")

# --------------------------------------------------------------------------- decoding


def _numpy():
    return sys.modules.get("numpy")


# Runs of equal-width numeric items inside an array: for a head byte, (item width, the head
# bytes that continue the run, struct code of the argument, kind). kind: "+" unsigned, "-"
# negative (-1 - argument), "f" float. One-byte integers (0..23, -1..-24) are their own head.
_SMALL_POS = bytes(range(0x00, 0x18))
_SMALL_NEG = bytes(range(0x20, 0x38))
_RUN_KINDS = [None] * 256
for _b in range(0x00, 0x18):
    _RUN_KINDS[_b] = (1, _SMALL_POS, "", "+")
for _b in range(0x20, 0x38):
    _RUN_KINDS[_b] = (1, _SMALL_NEG, "", "-")
for _ai, _w, _code in ((24, 2, "B"), (25, 3, "H"), (26, 5, "I"), (27, 9, "Q")):
    _RUN_KINDS[_ai] = (_w, bytes([_ai]), _code, "+")
    _RUN_KINDS[0x20 | _ai] = (_w, bytes([0x20 | _ai]), _code, "-")
for _b, _w, _code in ((0xF9, 3, "e"), (0xFA, 5, "f"), (0xFB, 9, "d")):
    _RUN_KINDS[_b] = (_w, bytes([_b]), _code, "f")
_NUMPY_CODE = {"e": ">f2", "f": ">f4", "d": ">f8", "B": "u1", "H": ">u2", "I": ">u4", "Q": ">u8"}

# Arrays shorter than this are decoded item by item: a run check costs more than it saves.
_RUN_ARRAY_MIN = 16
# A run shorter than this is decoded item by item too.
_RUN_MIN = 8
_LOOK_MIN, _LOOK_MAX = 16, 1 << 16
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _destride(buf, p, r, width):
    """The r arguments of r items of `width` bytes at p, packed together (heads dropped)."""
    size = width - 1
    if size == 1:
        return buf[p + 1:p + width * r:width]
    packed = bytearray(size * r)
    for k in range(size):
        packed[k::size] = buf[p + 1 + k:p + width * r:width]
    return packed


def _run_values_list(buf, p, r, kind, heads):
    """The values of a run as a Python sequence."""
    width, _, code, sign = kind
    if width == 1:
        return list(heads[:r]) if sign == "+" else [0x1F - b for b in heads[:r]]
    values = struct.unpack(">%d%s" % (r, code), _destride(buf, p, r, width))
    if sign == "-":
        return [-1 - v for v in values]
    return values


_RECORDS = {}  # struct code -> numpy structured dtype of (head byte, big-endian argument)


def _record_dtype(np, code):
    rec = _RECORDS.get(code)
    if rec is None:
        rec = _RECORDS[code] = np.dtype([("h", "u1"), ("v", _NUMPY_CODE[code])])
    return rec


def _run_values_numpy(np, buf, p, r, kind, heads):
    """The values of a run as a numpy array (possibly a read-only view into buf: the builder
    copies), or None when an integer may not fit int64 (the caller then makes a list)."""
    width, _, code, sign = kind
    if width == 1:
        values = np.frombuffer(heads, np.uint8, r)
        return values if sign == "+" else 0x1F - values.astype(np.int64)
    if code == "Q":
        return None
    values = np.frombuffer(buf, _record_dtype(np, code), r, p)["v"]
    return values if sign != "-" else -1 - values.astype(np.int64)


class _ArrayBuilder:
    """Collects an array's items; with numpy, hands out an ndarray when they are all numbers."""

    __slots__ = ("np", "items", "chunks", "numeric", "floats", "beyond_int64")

    def __init__(self, np):
        self.np = np
        self.items = []  # the pending single items (and, without numpy, everything)
        self.chunks = []  # with numpy: lists and arrays, in order
        self.numeric = True
        self.floats = False
        self.beyond_int64 = False

    def add(self, v):
        t = type(v)
        if t is float:
            self.floats = True
        elif t is not int:
            self.numeric = False
        elif not _INT64_MIN <= v <= _INT64_MAX:
            self.beyond_int64 = True
        self.items.append(v)

    def add_run(self, values, kind):
        if kind[3] == "f":
            self.floats = True
        elif kind[2] == "Q" and values and not _INT64_MIN <= min(values) <= max(values) <= _INT64_MAX:
            self.beyond_int64 = True
        if self.np is None or not hasattr(values, "dtype"):
            self.items.extend(values)
            return
        if self.items:
            self.chunks.append(self.items)
            self.items = []
        self.chunks.append(values)

    def result(self):
        np = self.np
        if np is None:
            return self.items
        chunks = self.chunks
        if self.items or not chunks:
            chunks.append(self.items)
        if self.numeric and (self.floats or not self.beyond_int64):
            # one copy: writable, native, independent of the input buffer
            return np.concatenate(chunks, dtype=np.float64 if self.floats else np.int64)
        return [v for c in chunks for v in (c.tolist() if hasattr(c, "dtype") else c)]


def make_decoder(numpy_arrays=False):
    """decode(buf, pos) -> (value, end) for one item at pos of buf (bytes or bytearray).
    Raises Incomplete when the item runs past the end of buf, CBORError when it is malformed.
    With numpy_arrays, an array whose items are all numbers is a numpy array (float64 if any is
    a float, else int64); numpy must then be importable."""
    np = None
    if numpy_arrays:
        import numpy as np  # noqa: F811 - the caller asked for numpy; fail here if it is missing

    def item(buf, p):
        ib = buf[p]
        if ib < 0x18:
            return ib, p + 1
        if ib == 0xFB:
            return _F64.unpack_from(buf, p + 1)[0], p + 9
        major = ib >> 5
        ai = ib & 0x1F
        if major == 7:
            return simple(buf, p, ai)
        if ai < 24:
            arg, p = ai, p + 1
        elif ai == 24:
            arg, p = buf[p + 1], p + 2
        elif ai == 25:
            arg, p = _U16.unpack_from(buf, p + 1)[0], p + 3
        elif ai == 26:
            arg, p = _U32.unpack_from(buf, p + 1)[0], p + 5
        elif ai == 27:
            arg, p = _U64.unpack_from(buf, p + 1)[0], p + 9
        elif ai == 31:
            return indefinite(buf, p + 1, major)
        else:
            raise CBORError("reserved additional information %d" % ai)
        if major == 0:
            return arg, p
        if major == 1:
            return -1 - arg, p
        if major == 2 or major == 3:
            end = p + arg
            if end > len(buf):
                raise IndexError
            raw = bytes(buf[p:end])
            return (raw if major == 2 else raw.decode("utf-8", "surrogateescape")), end
        if major == 4:
            return array(buf, p, arg)
        if major == 5:
            return mapping(buf, p, arg)
        return tagged(buf, p, arg)

    def simple(buf, p, ai):
        if ai == 25:
            return _F16.unpack_from(buf, p + 1)[0], p + 3
        if ai == 26:
            return _F32.unpack_from(buf, p + 1)[0], p + 5
        if ai == 20:
            return False, p + 1
        if ai == 21:
            return True, p + 1
        if ai == 22 or ai == 23:  # null, undefined
            return None, p + 1
        if ai < 20:
            return Simple(ai), p + 1
        if ai == 24:
            if buf[p + 1] < 32:
                raise CBORError("simple value %d in two bytes" % buf[p + 1])
            return Simple(buf[p + 1]), p + 2
        if ai == 31:
            raise CBORError("break outside an indefinite-length item")
        raise CBORError("reserved simple value encoding %d" % ai)

    def array(buf, p, n):
        if n < _RUN_ARRAY_MIN:
            out = []
            for _ in range(n):
                b = buf[p]
                if b < 0x18:
                    out.append(b)
                    p += 1
                    continue
                v, p = item(buf, p)
                out.append(v)
            if np is not None and _all_numbers(out):
                return _small_ndarray(np, out), p
            return out, p
        return array_by_runs(buf, p, n)

    def array_by_runs(buf, p, n):
        """A long array: runs of equal-width numbers are decoded at once, the rest one by one."""
        builder = _ArrayBuilder(np)
        i, look, size = 0, _LOOK_MIN, len(buf)
        streak = 0  # items of the current run decoded in earlier windows
        while i < n:
            kind = _RUN_KINDS[buf[p]]
            if kind is not None:
                width, heads_set = kind[0], kind[1]
                m = min(n - i, look, (size - p) // width)
                heads = buf[p:p + width * m:width]
                r = m - len(heads.lstrip(heads_set))
                if r >= _RUN_MIN:
                    values = None
                    if np is not None:
                        values = _run_values_numpy(np, buf, p, r, kind, heads)
                    if values is None:
                        values = _run_values_list(buf, p, r, kind, heads)
                    builder.add_run(values, kind)
                    p += width * r
                    i += r
                    if r == m:  # the run may go on past the window: look further
                        streak += r
                        look = min(look * 4, _LOOK_MAX)
                    else:  # it broke: the next is likely about as long
                        look = max(_LOOK_MIN, 2 * (streak + r))
                        streak = 0
                    continue
                # no run here: keep expecting the last run's length for the next one, but
                # less and less, so that short runs do not pay for big windows
                look, streak = max(_LOOK_MIN, look // 2), 0
            v, p = item(buf, p)
            builder.add(v)
            i += 1
        return builder.result(), p

    def mapping(buf, p, n):
        out = {}
        for _ in range(n):
            kb = buf[p]
            if 0x60 <= kb < 0x78:  # a short text key, the common case, without a call
                end = p + kb - 0x5F
                if end > len(buf):
                    raise IndexError
                k, p = buf[p + 1:end].decode("utf-8", "surrogateescape"), end
            else:
                k, p = item(buf, p)
            v, p = item(buf, p)
            out[_hashable(k)] = v
        return out, p

    def tagged(buf, p, tag):
        v, p = item(buf, p)
        if tag == 2 or tag == 3:
            if type(v) is not bytes:
                raise CBORError("bignum tag %d over a %s" % (tag, type(v).__name__))
            n = int.from_bytes(v, "big")
            return (n if tag == 2 else -1 - n), p
        return v, p  # other tags: the tagged value itself

    def indefinite(buf, p, major):
        if major == 2 or major == 3:
            parts = []
            while buf[p] != 0xFF:
                if buf[p] >> 5 != major or buf[p] & 0x1F == 31:
                    raise CBORError("bad chunk in an indefinite-length string")
                part, p = item(buf, p)
                parts.append(part)
            return (b"" if major == 2 else "").join(parts), p + 1
        if major == 4:
            out = []
            while buf[p] != 0xFF:
                v, p = item(buf, p)
                out.append(v)
            if np is not None and _all_numbers(out):
                return _small_ndarray(np, out), p + 1
            return out, p + 1
        if major == 5:
            out = {}
            while buf[p] != 0xFF:
                k, p = item(buf, p)
                v, p = item(buf, p)
                out[_hashable(k)] = v
            return out, p + 1
        raise CBORError("indefinite length for major type %d" % major)

    def decode(buf, pos):
        try:
            return item(buf, pos)
        except (IndexError, struct.error):
            raise Incomplete from None
        except RecursionError:
            raise CBORError("items nested too deeply") from None

    return decode


def _all_numbers(values):
    for v in values:
        t = type(v)
        if t is not int and t is not float:
            return False
    return True


def _small_ndarray(np, values):
    if not values:
        return np.empty(0, np.float64)
    dtype = np.float64 if any(type(v) is float for v in values) else np.int64
    if dtype is np.int64 and values and not _INT64_MIN <= min(values) <= max(values) <= _INT64_MAX:
        return values
    return np.array(values, dtype)


def _hashable(k):
    if isinstance(k, list):
        return tuple(_hashable(x) for x in k)
    if hasattr(k, "dtype") and hasattr(k, "tolist"):
        return _hashable(k.tolist())
    if isinstance(k, dict):
        raise CBORError("a map used as a map key")
    return k


_default_decode = make_decoder(False)


def loads(data, numpy_arrays=False):
    """The value of data, which must be exactly one CBOR item."""
    decode = _default_decode if not numpy_arrays else make_decoder(True)
    try:
        value, end = decode(data, 0)
    except Incomplete:
        raise CBORError("truncated CBOR item (%d bytes)" % len(data)) from None
    if end != len(data):
        raise CBORError("%d bytes after the CBOR item" % (len(data) - end))
    return value


# --------------------------------------------------------------------------- encoding

_SMALL_INTS = [bytes([i]) for i in range(24)]
_TWO64 = 1 << 64


def _head(major, arg):
    """The shortest head of major type major with argument arg (< 2**64)."""
    m = major << 5
    if arg < 24:
        return bytes((m | arg,))
    if arg < 0x100:
        return bytes((m | 24, arg))
    if arg < 0x10000:
        return bytes((m | 25,)) + _U16.pack(arg)
    if arg < 0x100000000:
        return bytes((m | 26,)) + _U32.pack(arg)
    return bytes((m | 27,)) + _U64.pack(arg)


def float_bytes(f):
    """f in the shortest of half, single and double precision that keeps its value exactly;
    NaN as 0xf97e00 and the infinities as halves: Go's core deterministic encoding."""
    if f != f:
        return b"\xf9\x7e\x00"
    try:
        single = _F32.pack(f)
    except OverflowError:
        return b"\xfb" + _F64.pack(f)
    if _F32.unpack(single)[0] != f:
        return b"\xfb" + _F64.pack(f)
    try:
        half = _F16.pack(f)
        if _F16.unpack(half)[0] == f:
            return b"\xf9" + half
    except OverflowError:
        pass
    return b"\xfa" + single


def _int_bytes(i):
    if i >= 0:
        if i < 24:
            return _SMALL_INTS[i]
        if i < _TWO64:
            return _head(0, i)
        return b"\xc2" + _bytes_bytes(i.to_bytes((i.bit_length() + 7) // 8, "big"))
    n = -1 - i
    if n < _TWO64:
        return _head(1, n)
    return b"\xc3" + _bytes_bytes(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def _bytes_bytes(b):
    return _head(2, len(b)) + b


def _enc(v, out):
    t = type(v)
    if t is int:
        out += _int_bytes(v)
    elif t is float:
        out += float_bytes(v)
    elif t is str:
        b = v.encode("utf-8", "surrogateescape")
        out += _head(3, len(b))
        out += b
    elif t is bool:
        out += b"\xf5" if v else b"\xf4"
    elif v is None:
        out += b"\xf6"
    elif t is list or t is tuple:
        out += _head(4, len(v))
        if len(v) < _VECTOR_MIN or not _enc_number_items(v, out):
            for x in v:
                _enc(x, out)
    elif t is dict:
        _enc_map(v, out)
    elif t is bytes or t is bytearray or t is memoryview:
        b = bytes(v)
        out += _head(2, len(b))
        out += b
    else:
        _enc_other(v, out)


# Lists at least this long, all floats or all ints, are encoded with numpy when it is loaded.
_VECTOR_MIN = 64


def _enc_number_items(v, out):
    """Append the items of a list of only floats or only ints the vectorised way; False when it
    is not one (or numpy is not loaded, or an int exceeds int64)."""
    np = _numpy()
    if np is None:
        return False
    kinds = set(map(type, v))
    if kinds == {float}:
        out += ndarray_float_items(np, np.array(v, np.float64))
        return True
    if kinds == {int}:
        try:
            a = np.array(v, np.int64)
        except OverflowError:
            return False
        out += ndarray_int_items(np, a)
        return True
    return False


def _enc_map(d, out):
    out += _head(5, len(d))
    for k, x in d.items():
        _enc(k, out)
        _enc(x, out)


def _enc_other(v, out):
    """numpy values and subclasses of the builtin types."""
    np = _numpy()
    if np is not None:
        if isinstance(v, np.ndarray):
            _enc_ndarray(np, v, out)
            return
        if isinstance(v, np.generic):
            _enc_numpy_scalar(np, v, out)
            return
    if isinstance(v, bool):
        _enc(bool(v), out)
    elif isinstance(v, int):
        out += _int_bytes(int(v))
    elif isinstance(v, float):
        out += float_bytes(float(v))
    elif isinstance(v, str):
        _enc(str(v), out)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _enc(bytes(v), out)
    elif isinstance(v, (list, tuple)):
        out += _head(4, len(v))
        for x in v:
            _enc(x, out)
    elif isinstance(v, dict):
        _enc_map(v, out)
    else:
        raise EncodeError(type(v).__name__)


def _enc_numpy_scalar(np, v, out):
    if isinstance(v, np.bool_):
        _enc(bool(v), out)
    elif isinstance(v, np.integer):
        out += _int_bytes(int(v))
    elif isinstance(v, np.floating):
        out += float_bytes(float(v))
    else:
        item = v.item()
        if type(item) is type(v):
            raise EncodeError(type(v).__name__)
        _enc(item, out)


def _enc_ndarray(np, a, out):
    if a.ndim == 0:
        _enc(a[()], out)
        return
    if a.ndim > 1:
        out += _head(4, a.shape[0])
        for row in a:
            _enc_ndarray(np, row, out)
        return
    kind = a.dtype.kind
    if kind == "f" and a.dtype.itemsize <= 8:
        out += _head(4, a.size)
        out += ndarray_float_items(np, a.astype(np.float64, copy=False))
    elif kind in "iu" and a.dtype.itemsize <= 8:
        out += _head(4, a.size)
        out += ndarray_int_items(np, a)
    elif kind == "b":
        out += _head(4, a.size)
        out += np.where(a, 0xF5, 0xF4).astype(np.uint8).tobytes()
    elif kind == "c":
        raise EncodeError("ndarray of %s" % a.dtype)
    else:  # object and string arrays: item by item
        out += _head(4, a.size)
        for x in a.tolist():
            _enc(x, out)


def _scatter_items(np, sizes, classes):
    """Items of variable width laid out one after another: sizes[i] is item i's width; each
    class is (mask, head bytes per item or one head byte, argument bytes (n, width-1) or None)."""
    ends = np.cumsum(sizes)
    starts = ends - sizes
    out = np.empty(int(ends[-1]) if len(ends) else 0, np.uint8)
    for mask, head, payload in classes:
        idx = starts[mask]
        if idx.size == 0:
            continue
        out[idx] = head if np.isscalar(head) else head[mask]
        if payload is not None:
            for k in range(payload.shape[1]):
                out[idx + 1 + k] = payload[:, k]
    return out.tobytes()


def _uniform_items(np, head, values, be_code):
    rec = np.empty(values.size, np.dtype([("h", "u1"), ("v", be_code)]))
    rec["h"] = head
    rec["v"] = values
    return rec.tobytes()


def ndarray_float_items(np, a):
    """The items of a float64 vector, each in its shortest exact width, without a Python loop."""
    if a.size == 0:
        return b""
    with np.errstate(all="ignore"):
        nan = np.isnan(a)
        single = a.astype(np.float32)
        is_single = single == a
        half = a.astype(np.float16)
        is_half = (half == a) | nan
    if not is_single.any() and not nan.any():  # the common case for real signals
        return _uniform_items(np, 0xFB, a, ">f8")
    half_bits = half.view(np.uint16).copy()
    half_bits[nan] = 0x7E00
    if is_half.all():
        return _uniform_items(np, 0xF9, half_bits, ">u2")
    is_single &= ~is_half
    is_double = ~(is_half | is_single)
    sizes = np.where(is_half, 3, np.where(is_single, 5, 9))
    return _scatter_items(np, sizes, (
        (is_half, 0xF9, half_bits[is_half].astype(">u2").view(np.uint8).reshape(-1, 2)),
        (is_single, 0xFA, single[is_single].astype(">f4").view(np.uint8).reshape(-1, 4)),
        (is_double, 0xFB, a[is_double].astype(">f8").view(np.uint8).reshape(-1, 8)),
    ))


def ndarray_int_items(np, a):
    """The items of an integer vector, each with its shortest head, without a Python loop."""
    if a.size == 0:
        return b""
    if a.dtype.kind == "u":
        arg = a.astype(np.uint64)
        major = np.zeros(a.size, np.uint8)
    else:
        signed = a.astype(np.int64)
        negative = signed < 0
        arg = np.where(negative, -1 - signed, signed).astype(np.uint64)
        major = np.where(negative, 0x20, 0).astype(np.uint8)
    tiny = arg < 24
    if tiny.all():
        return (major | arg.astype(np.uint8)).tobytes()
    widths = ((tiny, 1, None, None), (arg < 0x100, 2, 24, ">u1"), (arg < 0x10000, 3, 25, ">u2"),
              (arg < 0x100000000, 5, 26, ">u4"), (np.ones(a.size, bool), 9, 27, ">u8"))
    sizes = np.zeros(a.size, np.int64)
    taken = np.zeros(a.size, bool)
    classes = []
    for fits, width, ai, code in widths:
        mask = fits & ~taken
        taken |= mask
        sizes[mask] = width
        if ai is None:
            classes.append((mask, major | np.minimum(arg, 23).astype(np.uint8), None))
        else:
            payload = arg[mask].astype(code).view(np.uint8).reshape(-1, width - 1)
            classes.append((mask, major | np.uint8(ai), payload))
    return _scatter_items(np, sizes, classes)


def dumps(v):
    """v as one CBOR item. Raises EncodeError naming the type of a value CBOR cannot carry."""
    t = type(v)
    if t is int:
        return _SMALL_INTS[v] if 0 <= v < 24 else _int_bytes(v)
    if t is float:
        return float_bytes(v)
    out = bytearray()
    try:
        _enc(v, out)
    except RecursionError:
        raise EncodeError(type(v).__name__, "the value is nested too deeply (or contains itself)") from None
    return bytes(out)
