import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from marvelo import Head  # noqa: E402


class HeadTest(unittest.TestCase):
    def test_sizes_1_to_4_and_nothing_else(self):
        for size in (1, 2, 3, 4):
            self.assertEqual(Head(0, size).size, size)
        for size in (0, 5, "1"):
            with self.assertRaises(ValueError):
                Head(0, size)
        with self.assertRaises(ValueError):
            Head(b"")
        with self.assertRaises(ValueError):
            Head(b"12345")

    def test_value_must_fit(self):
        with self.assertRaises(ValueError):
            Head(256, 1)
        with self.assertRaises(ValueError):
            Head(-1, 1)
        self.assertEqual(int(Head(0xFFFF, 2)), 0xFFFF)

    def test_from_bytes_big_endian(self):
        h = Head(b"\x80\x01")
        self.assertEqual((int(h), h.size), (0x8001, 2))
        self.assertEqual(Head.from_bytes(b"\x20"), Head(0x20))
        self.assertEqual(bytes(Head(0x1234, 2)), b"\x12\x34")

    def test_bits_count_from_the_most_significant_bit(self):
        self.assertTrue(Head(0x80)[0])
        self.assertTrue(Head(0x8000, 2)[0])
        self.assertTrue(Head(0x20)[2])
        self.assertTrue(Head(0x01)[7])
        self.assertTrue(Head(0x01)[-1])
        self.assertFalse(Head(0x80)[1])
        self.assertTrue(Head(0x80, 1).corrupted)
        self.assertTrue(Head(0x20).finished)
        with self.assertRaises(IndexError):
            Head(0)[8]

    def test_bitwise_with_heads_and_ints(self):
        a, b = Head(0b1100_0000), Head(0b1010_0000)
        self.assertEqual(a & b, Head(0b1000_0000))
        self.assertEqual(a | b, Head(0b1110_0000))
        self.assertEqual(a ^ b, Head(0b0110_0000))
        self.assertEqual(a & 0x80, Head(0x80))
        self.assertEqual(0x80 | Head(0x01), Head(0x81))
        self.assertIsInstance(a | 1, Head)
        self.assertEqual(Head(0xFF) | 0x1FF, Head(0xFF))  # masked to the size
        self.assertEqual((Head(0x01) | Head(0x0100, 2)).size, 2)

    def test_shifts_masked_and_int_only(self):
        self.assertEqual(Head(0x81) << 1, Head(0x02))
        self.assertEqual(Head(0x81) >> 1, Head(0x40))
        self.assertEqual(Head(0x8001, 2) << 4, Head(0x0010, 2))
        with self.assertRaises(TypeError):
            Head(1) << Head(1)
        with self.assertRaises(ValueError):
            Head(1) << -1

    def test_invert_within_size(self):
        self.assertEqual(~Head(0x0F), Head(0xF0))
        self.assertEqual(~Head(0, 2), Head(0xFFFF, 2))

    def test_slicing_gives_the_bits_as_a_head(self):
        h = Head(0b0001_0110)
        self.assertEqual(int(h[3:8]), 0b10110)
        self.assertIsInstance(h[3:8], Head)
        self.assertEqual(int(h[0:3]), 0)
        self.assertEqual(int(Head(0xABCD, 2)[8:16]), 0xCD)
        self.assertEqual(h[3:8].size, 1)
        self.assertEqual(Head(0xFFFF, 2)[0:12].size, 2)

    def test_setting_bits(self):
        h = Head(0)
        h[0] = True
        h[5] = 1
        self.assertEqual(int(h), 0x84)
        h[0] = False
        self.assertEqual(int(h), 0x04)

    def test_setting_the_reset_bit_is_refused(self):
        with self.assertRaisesRegex(ValueError, "bit 1 \\(reset\\) is reserved"):
            Head(0)[1] = True

    def test_conversions_and_hash(self):
        h = Head(0x20)
        self.assertEqual(int(h), 0x20)
        self.assertEqual(hex(h), "0x20")  # __index__
        self.assertEqual(h, 0x20)
        self.assertEqual(hash(h), hash(0x20))
        self.assertIn(h, {0x20})
        self.assertEqual(repr(Head(0x20)), "Head(0x20, size=1)")
        self.assertEqual(repr(Head(0x20, 2)), "Head(0x0020, size=2)")
        self.assertNotEqual(Head(1, 1), Head(1, 2))

    def test_bug2_head_equality_with_none_is_false(self):
        h = Head(0)
        self.assertFalse(h == None)  # noqa: E711 - the original raised here
        self.assertTrue(h != None)  # noqa: E711
        self.assertFalse(h == "x")
        self.assertFalse(h == 0.0 and False)

    def test_bug3_zero_head_is_falsy(self):
        self.assertFalse(Head(0, 1))
        self.assertFalse(Head(0, 4))
        self.assertTrue(Head(1, 1))

    def test_bug4_head_from_bytes_indexes(self):
        h = Head(b"\xa0")
        self.assertTrue(h[0])
        self.assertTrue(h[2])
        self.assertFalse(h[1])
        self.assertEqual(int(h[0:3]), 0b101)
        h[7] = True
        self.assertEqual(int(h), 0xA1)


if __name__ == "__main__":
    unittest.main()
