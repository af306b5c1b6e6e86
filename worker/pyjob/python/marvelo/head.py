"""The block head: head_size bytes (1 to 4), big-endian, bits counted from the most significant
bit of the first byte. Bit 0 is "corrupted" (a dummy), bit 1 "reset" (reserved for marvelo),
bit 2 "finished"; the rest are the job's own.

Unlike the original's Head, this one is falsy when zero (bug 3), compares unequal to anything
that is not an int or a Head instead of raising (bug 2), and indexes alike whether it was built
from an int or from bytes (bug 4).
"""

CORRUPTED, RESET, FINISHED = 0, 1, 2
MIN_SIZE, MAX_SIZE = 1, 4


def bit_mask(bit, size):
    """The int mask of bit `bit` (0 = most significant) in a head of `size` bytes."""
    return 1 << (8 * size - 1 - bit)


def _check_size(size):
    if type(size) is not int or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError("a head is 1 to 4 bytes, not %r" % (size,))


class Head:
    """A block head of `size` bytes; Head(0x80) is a 1-byte head with bit 0 set."""

    __slots__ = ("_value", "_size")

    def __init__(self, value=0, size=None):
        """Head(int, size=1), Head(bytes) (its length is the size), Head(head) (a copy)."""
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            size = len(raw)
            _check_size(size)
            value = int.from_bytes(raw, "big")
        else:
            if isinstance(value, Head):
                size = value._size if size is None else size
                value = value._value
            size = 1 if size is None else size
            _check_size(size)
            value = int(value)
            if not 0 <= value < 1 << (8 * size):
                raise ValueError("%d does not fit a %d-byte head" % (value, size))
        self._value = value
        self._size = size

    @classmethod
    def from_bytes(cls, raw):
        return cls(raw)

    @classmethod
    def _of(cls, value, size):
        """A Head without the checks, for values the caller already masked (the runner's path)."""
        head = object.__new__(cls)
        head._value = value
        head._size = size
        return head

    @property
    def value(self):
        return self._value

    @property
    def size(self):
        return self._size

    @property
    def bits(self):
        return 8 * self._size

    @property
    def corrupted(self):
        return self[CORRUPTED]

    @property
    def reset(self):
        return self[RESET]

    @property
    def finished(self):
        return self[FINISHED]

    def to_bytes(self):
        return self._value.to_bytes(self._size, "big")

    __bytes__ = to_bytes

    def _mask(self):
        return (1 << (8 * self._size)) - 1

    # --- bitwise operators: with a Head or an int; the result is masked to the larger size ---

    def _operand(self, other):
        """(int value, result size) of the other operand, or None when it is not one."""
        if isinstance(other, Head):
            return other._value, max(self._size, other._size)
        if isinstance(other, int) and not isinstance(other, bool):
            return other, self._size
        return None

    def _binary(self, other, op):
        operand = self._operand(other)
        if operand is None:
            return NotImplemented
        value, size = operand
        return Head._of(op(self._value, value) & ((1 << (8 * size)) - 1), size)

    def __and__(self, other):
        return self._binary(other, int.__and__)

    def __or__(self, other):
        return self._binary(other, int.__or__)

    def __xor__(self, other):
        return self._binary(other, int.__xor__)

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def _shift_amount(self, n):
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError("a head shifts by an int, not %s" % type(n).__name__)
        if n < 0:
            raise ValueError("negative shift count")
        return n

    def __lshift__(self, n):
        return Head._of((self._value << self._shift_amount(n)) & self._mask(), self._size)

    def __rshift__(self, n):
        return Head._of(self._value >> self._shift_amount(n), self._size)

    def __invert__(self):
        return Head._of(self._value ^ self._mask(), self._size)

    # --- bits by index, counted from the most significant bit ---

    def _bit_index(self, i):
        bits = 8 * self._size
        if not isinstance(i, int) or isinstance(i, bool):
            raise TypeError("head bits are indexed by int or slice, not %s" % type(i).__name__)
        if i < 0:
            i += bits
        if not 0 <= i < bits:
            raise IndexError("bit %d out of range for a %d-byte head" % (i, self._size))
        return i

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._slice(i)
        return bool(self._value & bit_mask(self._bit_index(i), self._size))

    def _slice(self, s):
        """The selected bits, in order, as the value of the smallest head that holds them."""
        picked = range(8 * self._size)[s]
        value = 0
        for i in picked:
            value = (value << 1) | ((self._value >> (8 * self._size - 1 - i)) & 1)
        size = min(MAX_SIZE, max(MIN_SIZE, (len(picked) + 7) // 8))
        return Head._of(value, size)

    def __setitem__(self, i, on):
        i = self._bit_index(i)
        if i == RESET:
            raise ValueError("bit 1 (reset) is reserved by marvelo; a job cannot set it")
        mask = bit_mask(i, self._size)
        self._value = (self._value | mask) if on else (self._value & ~mask)

    # --- conversions and comparisons ---

    def __int__(self):
        return self._value

    __index__ = __int__

    def __bool__(self):
        return self._value != 0

    def __eq__(self, other):
        if isinstance(other, Head):
            return self._value == other._value and self._size == other._size
        if isinstance(other, int) and not isinstance(other, bool):
            return self._value == other
        return NotImplemented

    def __ne__(self, other):
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self):
        return hash(self._value)

    def __repr__(self):
        return "Head(0x%0*x, size=%d)" % (2 * self._size, self._value, self._size)

    def __format__(self, spec):
        return format(self._value, spec)
