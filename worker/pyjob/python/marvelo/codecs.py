"""The three pipe codecs, as the runner and emulate use them.

A codec turns a job's value into one frame and back: `encode(value) -> bytes` (the whole frame:
the JSON line with its newline, the CBOR item, the block_size bytes) and `decode(frame)`.
`zero` is the frame of a skipped output. The runner parses frames straight from its input
buffer (runner.py); these objects hold what it needs for that too.
"""

import json
import sys

from . import cbor
from .cbor import EncodeError

CODECS = ("cbor", "json", "bytes")

NAN_MESSAGE = ("NaN is not valid JSON; other languages reject it "
               "(use a cbor pipe, or None to skip the round)")


class CodecError(ValueError):
    """A frame that does not decode, or a value whose frame would be wrong (a bytes length)."""


def _numpy():
    return sys.modules.get("numpy")


def _numbers_to_arrays(value):
    """With "arrays": "numpy", every list of numbers in value (nested included) as an ndarray."""
    np = _numpy()
    if isinstance(value, list):
        if value and all(type(v) is int or type(v) is float for v in value):
            try:
                return np.array(value, np.float64 if any(type(v) is float for v in value) else np.int64)
            except OverflowError:
                return value
        return [_numbers_to_arrays(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers_to_arrays(v) for k, v in value.items()}
    return value


class CBORCodec:
    name = "cbor"
    zero = b"\xf6"

    def __init__(self, numpy_arrays=False):
        self.numpy_arrays = numpy_arrays
        self.decode_at = cbor.make_decoder(numpy_arrays)  # (buf, pos) -> (value, end)
        self.encode = cbor.dumps

    def decode(self, frame):
        try:
            value, end = self.decode_at(frame, 0)
        except cbor.Incomplete:
            raise CodecError("a truncated CBOR item (%d bytes)" % len(frame)) from None
        if end != len(frame):
            raise CodecError("%d bytes after the CBOR item" % (len(frame) - end))
        return value


def _json_default(o):
    np = _numpy()
    if np is not None:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            item = o.item()
            if type(item) is not type(o):
                return item
    if isinstance(o, (list, tuple)):
        return list(o)
    raise EncodeError(type(o).__name__)


class JSONCodec:
    name = "json"
    zero = b"null\n"

    # One encoder for the pipe: json.dumps with keyword arguments builds a new one per call.
    _encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), default=_json_default)

    def __init__(self, numpy_arrays=False):
        self.numpy_arrays = numpy_arrays

    def encode(self, value):
        if type(value) is int:
            return b"%d\n" % value
        try:
            text = self._encoder.encode(value)
        except ValueError as e:
            if "Out of range float" in str(e):
                raise CodecError(NAN_MESSAGE) from None
            raise
        except EncodeError as e:
            raise EncodeError(e.type_name, "a value of type %s cannot be encoded in JSON" % e.type_name) from None
        except TypeError as e:  # e.g. a tuple as a dict key
            raise EncodeError(type(value).__name__, "cannot encode in JSON: %s" % e) from None
        return text.encode("ascii") + b"\n"

    def decode_line(self, line):
        """The value of one line (without its newline)."""
        if line.isdigit():
            return int(line)
        try:
            value = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            raise CodecError("a malformed JSON frame (%s): %r" % (e, bytes(line[:60]))) from None
        if self.numpy_arrays:
            return _numbers_to_arrays(value)
        return value

    def decode(self, frame):
        if not frame.endswith(b"\n"):
            raise CodecError("a JSON frame must end in a newline")
        return self.decode_line(frame[:-1])


class BytesCodec:
    name = "bytes"

    def __init__(self, block_size, dtype=""):
        if not isinstance(block_size, int) or block_size <= 0:
            raise CodecError("a bytes pipe needs a block_size > 0, not %r" % (block_size,))
        self.block_size = block_size
        self.zero = bytes(block_size)
        self.dtype = None
        if dtype:
            try:
                import numpy
            except ImportError:
                raise CodecError("dtype %r needs numpy, which %s cannot import"
                                 % (dtype, sys.executable)) from None
            try:
                self.dtype = numpy.dtype(dtype)
            except TypeError as e:
                raise CodecError("dtype %r: %s" % (dtype, e)) from None
            if block_size % self.dtype.itemsize:
                raise CodecError("block_size %d is not a multiple of dtype %s's %d bytes"
                                 % (block_size, dtype, self.dtype.itemsize))
            self._count = block_size // self.dtype.itemsize

    def decode_at(self, buf, pos):
        """The frame at pos of buf: bytes, or with a dtype a writable numpy array."""
        if self.dtype is None:
            return buf[pos:pos + self.block_size]
        return _numpy().frombuffer(buf, self.dtype, self._count, pos).copy()

    def decode(self, frame):
        if len(frame) != self.block_size:
            raise CodecError("got %d bytes for block_size %d" % (len(frame), self.block_size))
        return self.decode_at(bytes(frame), 0)

    def encode(self, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        else:
            np = _numpy()
            if self.dtype is not None:
                try:
                    data = np.asarray(value, dtype=self.dtype).tobytes()
                except (TypeError, ValueError) as e:
                    raise EncodeError(type(value).__name__, "cannot convert a value of type %s to dtype %s: %s"
                                      % (type(value).__name__, self.dtype, e)) from None
            elif np is not None and isinstance(value, np.ndarray):
                data = value.tobytes()
            else:
                raise EncodeError(type(value).__name__, "a bytes pipe takes bytes, bytearray, memoryview or "
                                  "an ndarray, not a value of type %s" % type(value).__name__)
        if len(data) != self.block_size:
            raise CodecError("got %d bytes for block_size %d" % (len(data), self.block_size))
        return data


def make_codec(codec="cbor", block_size=0, dtype="", numpy_arrays=False):
    """The codec of a pipe spec. Raises CodecError for a spec it cannot serve."""
    if codec == "cbor" or codec == "" or codec is None:
        if dtype:
            raise CodecError("dtype %r is only for bytes pipes" % dtype)
        return CBORCodec(numpy_arrays)
    if codec == "json":
        if dtype:
            raise CodecError("dtype %r is only for bytes pipes" % dtype)
        return JSONCodec(numpy_arrays)
    if codec == "bytes":
        return BytesCodec(block_size, dtype)
    raise CodecError("unknown codec %r (cbor, json or bytes)" % (codec,))
