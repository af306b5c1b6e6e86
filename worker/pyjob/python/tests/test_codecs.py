import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from marvelo.codecs import NAN_MESSAGE, CodecError, EncodeError, make_codec  # noqa: E402

try:
    import numpy as np
except ImportError:
    np = None


class JSONTest(unittest.TestCase):
    def setUp(self):
        self.c = make_codec("json")

    def test_compact_lines(self):
        self.assertEqual(self.c.encode({"a": [1, 2.5, None, True]}), b'{"a":[1,2.5,null,true]}\n')
        self.assertEqual(self.c.encode(7), b"7\n")
        self.assertEqual(self.c.encode((1, 2)), b"[1,2]\n")
        self.assertEqual(self.c.zero, b"null\n")

    def test_decode(self):
        self.assertEqual(self.c.decode(b"12\n"), 12)
        self.assertEqual(self.c.decode(b"-12\n"), -12)
        self.assertEqual(self.c.decode(b'{"x":[1.5]}\n'), {"x": [1.5]})
        self.assertIsNone(self.c.decode(b"null\n"))
        with self.assertRaises(CodecError):
            self.c.decode(b"{nope\n")

    def test_bug10_json_nan_is_refused_with_reason(self):
        for bad in (float("nan"), [1.0, float("inf")], {"x": -float("inf")}):
            with self.assertRaises(CodecError) as cm:
                self.c.encode(bad)
            self.assertEqual(str(cm.exception), NAN_MESSAGE)
            self.assertIn("other languages reject it", NAN_MESSAGE)

    def test_unencodable_type_is_named(self):
        with self.assertRaises(EncodeError) as cm:
            self.c.encode({1, 2})
        self.assertEqual(cm.exception.type_name, "set")
        with self.assertRaises(EncodeError):
            self.c.encode(b"bytes")

    @unittest.skipIf(np is None, "numpy is not importable")
    def test_numpy_values(self):
        self.assertEqual(self.c.encode(np.arange(3)), b"[0,1,2]\n")
        self.assertEqual(self.c.encode({"m": np.float32(1.5), "n": np.int64(2), "b": np.bool_(True)}),
                         b'{"m":1.5,"n":2,"b":true}\n')
        with self.assertRaises(CodecError):
            self.c.encode(np.array([np.nan]))
        arrays = make_codec("json", numpy_arrays=True)
        got = arrays.decode(b'{"x":[1,2.5],"y":[1,2],"z":["a"]}\n')
        self.assertEqual((got["x"].dtype, got["y"].dtype, got["z"]), (np.float64, np.int64, ["a"]))


class BytesTest(unittest.TestCase):
    def test_exact_frames(self):
        c = make_codec("bytes", 4)
        self.assertEqual(c.encode(b"abcd"), b"abcd")
        self.assertEqual(c.encode(bytearray(b"abcd")), b"abcd")
        self.assertEqual(c.encode(memoryview(b"abcd")), b"abcd")
        self.assertEqual(c.decode(b"abcd"), b"abcd")
        self.assertIs(type(c.decode(b"abcd")), bytes)
        self.assertEqual(c.zero, b"\0\0\0\0")

    def test_wrong_length_names_got_and_block_size(self):
        c = make_codec("bytes", 4)
        with self.assertRaisesRegex(CodecError, "got 3 bytes for block_size 4"):
            c.encode(b"abc")
        with self.assertRaises(EncodeError):
            c.encode([1, 2, 3, 4]) if np is None else c.encode("abcd")

    def test_block_size_required(self):
        with self.assertRaises(CodecError):
            make_codec("bytes", 0)

    def test_dtype_only_for_bytes(self):
        with self.assertRaises(CodecError):
            make_codec("json", dtype="<f4")

    @unittest.skipIf(np is not None, "numpy is importable here")
    def test_dtype_without_numpy_is_an_error_at_start(self):
        with self.assertRaisesRegex(CodecError, "needs numpy"):
            make_codec("bytes", 8, "<f4")

    @unittest.skipIf(np is None, "numpy is not importable")
    def test_dtype_frames_are_writable_arrays(self):
        c = make_codec("bytes", 8, "<f4")
        frame = np.array([1.5, -2.0], "<f4").tobytes()
        a = c.decode(frame)
        self.assertEqual(a.dtype, np.dtype("<f4"))
        self.assertTrue(a.flags.writeable)
        a *= 2
        self.assertEqual(c.encode(a), np.array([3.0, -4.0], "<f4").tobytes())
        self.assertEqual(c.encode([1, 2]), np.array([1, 2], "<f4").tobytes())  # converted with the dtype
        self.assertEqual(c.encode(frame), frame)
        with self.assertRaisesRegex(CodecError, "got 12 bytes for block_size 8"):
            c.encode(np.zeros(3))
        with self.assertRaisesRegex(CodecError, "not a multiple"):
            make_codec("bytes", 6, "<f4")


if __name__ == "__main__":
    unittest.main()
