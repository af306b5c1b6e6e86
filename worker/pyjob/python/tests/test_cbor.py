import math
import os
import struct
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from marvelo import cbor  # noqa: E402
from marvelo.cbor import CBORError, EncodeError, Incomplete  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None
try:
    import cbor2
except ImportError:
    cbor2 = None

# RFC 8949 Appendix A: (value, encoding) pairs this codec both encodes and decodes exactly.
RFC_VECTORS = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (18446744073709551616, "c249010000000000000000"),
    (-18446744073709551616, "3bffffffffffffffff"), (-18446744073709551617, "c349010000000000000000"),
    (-1, "20"), (-10, "29"), (-100, "3863"), (-1000, "3903e7"),
    (0.0, "f90000"), (-0.0, "f98000"), (1.0, "f93c00"), (1.1, "fb3ff199999999999a"), (1.5, "f93e00"),
    (65504.0, "f97bff"), (100000.0, "fa47c35000"), (3.4028234663852886e+38, "fa7f7fffff"),
    (1.0e+300, "fb7e37e43c8800759c"), (5.960464477539063e-8, "f90001"), (0.00006103515625, "f90400"),
    (-4.0, "f9c400"), (-4.1, "fbc010666666666666"), (math.inf, "f97c00"), (-math.inf, "f9fc00"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"), ("", "60"), ("a", "6161"), ("IETF", "6449455446"),
    ("\"\\", "62225c"), ("\u00fc", "62c3bc"), ("\u6c34", "63e6b0b4"), ("\U00010151", "64f0908591"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
]

# Decoded only (not what this codec, or Go, emits): tags, indefinite lengths, wider encodings.
RFC_DECODE_ONLY = [
    ("f97e00", "nan"), ("fa7fc00000", "nan"), ("fb7ff8000000000000", "nan"),
    ("fa7f800000", math.inf), ("fbfff0000000000000", -math.inf), ("fa47c35000", 100000.0),
    ("f7", None),  # undefined
    ("c074323031332d30332d32315432303a30343a30305a", "2013-03-21T20:04:00Z"),  # tag 0: the value
    ("c11a514b67b0", 1363896240), ("d74401020304", b"\x01\x02\x03\x04"),
    ("d82076687474703a2f2f7777772e6578616d706c652e636f6d", "http://www.example.com"),
    ("5f42010243030405ff", b"\x01\x02\x03\x04\x05"), ("7f657374726561646d696e67ff", "streaming"),
    ("9fff", []), ("9f018202039f0405ffff", [1, [2, 3], [4, 5]]), ("83018202039f0405ff", [1, [2, 3], [4, 5]]),
    ("bf61610161629f0203ffff", {"a": 1, "b": [2, 3]}), ("f0", cbor.Simple(16)), ("f8ff", cbor.Simple(255)),
    ("1b0000000000000000", 0), ("3a00000000", -1),
]

# What Go's codec (codec.New("cbor", 0).Append) emits, captured from the Go side: floats in their
# shortest exact width, ints with the shortest head.
GO_VECTORS = [
    (1.0, "f93c00"), (1.5, "f93e00"), (65504.0, "f97bff"), (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"), (1.1, "fb3ff199999999999a"), (5.960464477539063e-8, "f90001"),
    (-4.1, "fbc010666666666666"), (0.1, "fb3fb999999999999a"), (38176.0, "f978a9"), (math.inf, "f97c00"),
    (-0.0, "f98000"), (0, "00"), (23, "17"), (24, "1818"), (-1, "20"), (-25, "3818"), (1000000, "1a000f4240"),
    (2 ** 63 - 1, "1b7fffffffffffffff"), (-2 ** 63, "3b7fffffffffffffff"), (2 ** 64 - 1, "1bffffffffffffffff"),
    ([0.0, 0.5, 0.1, 1e300, 100000.0], "85f90000f93800fb3fb999999999999afb7e37e43c8800759cfa47c35000"),
]


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


class VectorTest(unittest.TestCase):
    def test_rfc_vectors_encode_and_decode(self):
        for value, hexed in RFC_VECTORS:
            with self.subTest(value=value):
                self.assertEqual(cbor.dumps(value).hex(), hexed)
                self.assertTrue(same(cbor.loads(bytes.fromhex(hexed)), value), cbor.loads(bytes.fromhex(hexed)))

    def test_rfc_decode_only_vectors(self):
        for hexed, value in RFC_DECODE_ONLY:
            with self.subTest(hexed=hexed):
                got = cbor.loads(bytes.fromhex(hexed))
                if value == "nan":
                    self.assertTrue(math.isnan(got))
                else:
                    self.assertEqual(got, value)
                    self.assertIs(type(got), type(value))

    def test_go_vectors_byte_for_byte(self):
        for value, hexed in GO_VECTORS:
            with self.subTest(value=value):
                self.assertEqual(cbor.dumps(value).hex(), hexed)
                self.assertTrue(same(cbor.loads(bytes.fromhex(hexed)), value))

    def test_half_and_single_floats_decode_exactly(self):
        self.assertEqual(cbor.loads(bytes.fromhex("f93555")), struct.unpack(">e", b"\x35\x55")[0])
        self.assertEqual(cbor.loads(bytes.fromhex("fa3dcccccd")), struct.unpack(">f", bytes.fromhex("3dcccccd"))[0])
        self.assertEqual(cbor.loads(bytes.fromhex("f90001")), 2.0 ** -24)  # a subnormal half

    def test_big_and_negative_ints(self):
        for i in (2 ** 64, -2 ** 64 - 1, 2 ** 200, -2 ** 200, 2 ** 63, -2 ** 63 - 1, -1, -24, -25, -256, -257):
            self.assertEqual(cbor.loads(cbor.dumps(i)), i)

    def test_nan_is_the_canonical_half(self):
        self.assertEqual(cbor.dumps(float("nan")), b"\xf9\x7e\x00")

    def test_invalid_utf8_text_survives_a_round_trip(self):
        raw = bytes.fromhex("62ff41")  # Go does not check UTF-8 either
        self.assertEqual(cbor.dumps(cbor.loads(raw)), raw)

    def test_tuples_are_arrays_and_subclasses_encode(self):
        import collections
        import enum

        class Color(enum.IntEnum):
            RED = 3

        self.assertEqual(cbor.dumps((1, 2)), cbor.dumps([1, 2]))
        self.assertEqual(cbor.dumps(Color.RED), b"\x03")
        self.assertEqual(cbor.dumps(collections.OrderedDict(a=1)), cbor.dumps({"a": 1}))

    def test_unencodable_types_are_named(self):
        for value, name in ((set(), "set"), (object(), "object"), (1j, "complex"), ([1, {2}], "set")):
            with self.assertRaises(EncodeError) as cm:
                cbor.dumps(value)
            self.assertEqual(cm.exception.type_name, name)
            self.assertIsInstance(cm.exception, TypeError)

    def test_self_containing_list_is_an_encode_error(self):
        a = []
        a.append(a)
        with self.assertRaises(EncodeError):
            cbor.dumps(a)


class StreamTest(unittest.TestCase):
    def test_truncated_items_are_incomplete(self):
        decode = cbor.make_decoder()
        for value in (1000000, 0.1, "hello", b"bytes", [1, 2, 3], {"a": [1.5, 2.5]}, list(range(100)),
                      [0.1 * i for i in range(100)], 2 ** 80):
            data = cbor.dumps(value)
            for cut in range(len(data)):
                with self.assertRaises(Incomplete, msg=(value, cut)):
                    decode(data[:cut], 0)
            self.assertEqual(decode(data + b"\x00", 0), (value, len(data)))

    def test_decode_at_an_offset(self):
        data = b"\x01\x02" + cbor.dumps([1, "x"])
        self.assertEqual(cbor.make_decoder()(data, 2), ([1, "x"], len(data)))

    def test_malformed_items_are_errors(self):
        for hexed in ("1c", "ff", "5f01ff", "f818", "c240ff"[:4] + "ff"):
            with self.subTest(hexed=hexed):
                with self.assertRaises(CBORError):
                    cbor.loads(bytes.fromhex(hexed))

    def test_loads_refuses_trailing_bytes(self):
        with self.assertRaises(CBORError):
            cbor.loads(b"\x01\x02")


class ArrayTest(unittest.TestCase):
    """Long arrays are decoded by runs of equal-width items; every mix must still come out right."""

    def check(self, values):
        data = cbor.dumps(values)
        self.assertEqual(data, bytes.fromhex(data.hex()))
        got = cbor.loads(data)
        self.assertTrue(same(got, values), (values[:10], got[:10]))
        if np is not None:
            arr = cbor.loads(data, numpy_arrays=True)
            floats = any(type(v) is float for v in values)
            numbers = all(type(v) is float or type(v) is int and -2 ** 63 <= v < 2 ** 63 for v in values)
            if numbers:  # an ndarray: float64 if any item is a float (or there are none), else int64
                self.assertIsInstance(arr, np.ndarray)
                self.assertEqual(arr.dtype, np.float64 if floats or not values else np.int64)
                self.assertEqual(arr.tolist(), values)
                self.assertTrue(arr.flags.writeable)
            else:
                self.assertIsInstance(arr, list)  # inner arrays of numbers may be ndarrays
                self.assertTrue(same([x.tolist() if hasattr(x, "tolist") else x for x in arr], values))

    def test_runs_of_every_width(self):
        self.check([0.1 * i for i in range(1000)])  # doubles, and halves where exact
        self.check([float(i) for i in range(3000)])  # halves then singles
        self.check(list(range(-300, 300)))
        self.check([i * 1000003 for i in range(500)])
        self.check([2 ** 40 + i for i in range(100)] + [-2 ** 40 - i for i in range(100)])
        self.check([i % 24 for i in range(200)] + [-(i % 24) - 1 for i in range(200)])
        self.check([0.0 if i % 100 == 0 else 1 / (i + 3) for i in range(2000)])

    def test_alternating_and_mixed_items(self):
        self.check([0.5 if i % 2 else 0.1 for i in range(200)])
        self.check([1, 2.5, "x", None, True] * 40)
        self.check([[1, 2]] * 30)
        self.check([2 ** 64 - 1] * 20)  # beyond int64: a list even with numpy

    def test_big_uint64_run_stays_exact(self):
        values = [2 ** 63 + i for i in range(50)]
        self.assertEqual(cbor.loads(cbor.dumps(values)), values)
        if np is not None:
            got = cbor.loads(cbor.dumps(values), numpy_arrays=True)
            self.assertIsInstance(got, list)
            self.assertEqual(got, values)

    def test_empty_and_short_arrays(self):
        self.check([])
        self.check([1.5])
        self.check([1, 2, 3])


@unittest.skipIf(np is None, "numpy is not importable")
class NumpyTest(unittest.TestCase):
    def test_float64_array_100k_exact_both_ways(self):
        rng = np.random.default_rng(1)
        a = rng.standard_normal(100000)
        a[::1000] = 0.0  # halves among the doubles
        data = cbor.dumps(a)
        self.assertEqual(data, cbor.dumps(a.tolist()))  # the same bytes as item by item
        b = cbor.loads(data, numpy_arrays=True)
        self.assertEqual(b.dtype, np.float64)
        self.assertTrue(np.array_equal(a, b))
        self.assertEqual(cbor.loads(data), a.tolist())

    def test_uniform_double_array_layout(self):
        a = np.array([0.1, 0.2, 0.3] * 10)
        data = cbor.dumps(a)
        self.assertEqual(data[:2], b"\x98\x1e")
        self.assertEqual(data[2::9], b"\xfb" * 30)

    def test_special_floats_in_arrays(self):
        a = np.array([np.nan, np.inf, -np.inf, -0.0, 65504.0, 65520.0, 1e-8, 2.0 ** -24] * 3)
        self.assertEqual(cbor.dumps(a), b"\x98\x18" + b"".join(cbor.dumps(float(x)) for x in a))
        b = cbor.loads(cbor.dumps(a), numpy_arrays=True)
        self.assertTrue(np.array_equal(a, b, equal_nan=True))
        self.assertTrue(np.array_equal(np.signbit(a), np.signbit(b)))

    def test_int_arrays_of_every_dtype(self):
        for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
            info = np.iinfo(dtype)
            a = np.array([info.min, info.max, 0, 1, 23, 24, 255, 256] * 4).astype(dtype)
            with self.subTest(dtype=dtype):
                self.assertEqual(cbor.dumps(a), cbor.dumps([int(x) for x in a]))

    def test_other_arrays_and_scalars(self):
        self.assertEqual(cbor.dumps(np.array([[1, 2], [3, 4]])), cbor.dumps([[1, 2], [3, 4]]))
        self.assertEqual(cbor.dumps(np.array([True, False])), b"\x82\xf5\xf4")
        self.assertEqual(cbor.dumps(np.float32(0.1)), cbor.dumps(float(np.float32(0.1))))
        self.assertEqual(cbor.dumps(np.int64(-5)), b"\x24")
        self.assertEqual(cbor.dumps(np.bool_(True)), b"\xf5")
        self.assertEqual(cbor.dumps(np.array(3.5)), cbor.dumps(3.5))
        self.assertEqual(cbor.dumps(np.array(["a", "b"])), cbor.dumps(["a", "b"]))
        self.assertEqual(cbor.dumps(np.arange(3, dtype=np.float32)), cbor.dumps([0.0, 1.0, 2.0]))
        with self.assertRaises(EncodeError):
            cbor.dumps(np.array([1j]))

    def test_nested_arrays_and_maps_with_numpy(self):
        got = cbor.loads(cbor.dumps({"x": [1.5, 2], "y": ["a"]}), numpy_arrays=True)
        self.assertEqual(got["x"].tolist(), [1.5, 2.0])
        self.assertEqual(got["y"], ["a"])
        self.assertEqual(cbor.loads(cbor.dumps([True, False]), numpy_arrays=True), [True, False])

    def test_lists_of_numbers_encode_like_ndarrays(self):
        floats = [0.1 * i for i in range(500)]
        self.assertEqual(cbor.dumps(floats), cbor.dumps(np.array(floats)))
        self.assertEqual(cbor.dumps(floats), b"\x99\x01\xf4" + b"".join(cbor.dumps(f) for f in floats))
        ints = list(range(-1000, 1000, 7))
        self.assertEqual(cbor.dumps(ints), cbor.dumps(np.array(ints)))
        self.assertEqual(cbor.loads(cbor.dumps([True] + [1] * 100)), [True] + [1] * 100)


@unittest.skipIf(cbor2 is None, "cbor2 is not importable")
class CBOR2CrossCheckTest(unittest.TestCase):
    """cbor2 (where the interpreter has it) as a second opinion on well-formedness."""

    VALUES = [0, 24, -25, 2 ** 64, -2 ** 64 - 1, 2 ** 100, 0.1, 1.5, 1e300, -0.0, math.inf, "h\u00e9", b"\x00\xff",
              [1, [2.5, "x"], None], {"a": {"b": [True, False]}}, {1: "int key"}, list(range(-50, 50)),
              [0.5 * i for i in range(200)], [1.0 / (i + 1) for i in range(200)]]

    def test_cbor2_reads_what_we_write(self):
        for v in self.VALUES:
            with self.subTest(v=v):
                self.assertTrue(same(cbor2.loads(cbor.dumps(v)), v))

    def test_we_read_what_cbor2_writes(self):
        for v in self.VALUES:
            for canonical in (False, True):
                with self.subTest(v=v, canonical=canonical):
                    self.assertTrue(same(cbor.loads(cbor2.dumps(v, canonical=canonical)), v))


if __name__ == "__main__":
    unittest.main()
