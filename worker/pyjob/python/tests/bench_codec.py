"""marvelo's own CBOR codec against cbor2 (when importable), per value kind; the figures behind
the choice written in marvelo/cbor.py. Not a unittest.

    /usr/bin/python3 tests/bench_codec.py
"""

import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from marvelo import cbor  # noqa: E402

try:
    import cbor2
except ImportError:
    cbor2 = None
try:
    import numpy as np
except ImportError:
    np = None


def per_call(fn, budget=0.2):
    n, t = timeit.Timer(fn).autorange()
    reps = max(1, int(n * budget / t))
    return min(timeit.repeat(fn, number=reps, repeat=3)) / reps


def fmt(seconds):
    return "%9.2f us" % (seconds * 1e6)


def main():
    decode = cbor.make_decoder(False)
    decode_np = cbor.make_decoder(True) if np is not None else None
    floats = [((i * 7919) % 10007) / 10007.0 + 0.1 for i in range(100000)]
    values = {
        "int 1000000": 1000000,
        "float 0.1": 0.1,
        "str (20 chars)": "abcdefghij" * 2,
        "map of 10 lists": {"k%d" % i: [i, i + 1, i + 2.5] for i in range(10)},
        "list 100k float64": floats,
    }
    print("%-22s %12s %12s %12s %12s" % ("value", "own decode", "cbor2.loads", "own encode", "cbor2.dumps"))
    for name, v in values.items():
        data = cbor.dumps(v)
        row = [fmt(per_call(lambda: decode(data, 0)))]
        row.append(fmt(per_call(lambda: cbor2.loads(data))) if cbor2 else "        -")
        row.append(fmt(per_call(lambda: cbor.dumps(v))))
        row.append(fmt(per_call(lambda: cbor2.dumps(v))) if cbor2 else "        -")
        print("%-22s %s" % (name, " ".join("%12s" % r for r in row)))
    if np is not None:
        a = np.array(floats)
        data = cbor.dumps(a)
        print("ndarray 100k float64: own decode to ndarray %s; own encode %s"
              % (fmt(per_call(lambda: decode_np(data, 0))), fmt(per_call(lambda: cbor.dumps(a)))))
        if cbor2:
            print("  cbor2: loads + np.array %s; dumps(a.tolist()) %s"
                  % (fmt(per_call(lambda: np.array(cbor2.loads(data)))), fmt(per_call(lambda: cbor2.dumps(a.tolist())))))
        mixed = np.array([0.0 if i % 100 == 0 else f for i, f in enumerate(floats)])  # Go's shortest form: f9 zeros
        data = cbor.dumps(mixed)
        print("ndarray 100k float64, every 100th 0.0 (mixed widths): own decode to ndarray %s, to list %s%s"
              % (fmt(per_call(lambda: decode_np(data, 0))), fmt(per_call(lambda: decode(data, 0))),
                 "; cbor2.loads %s" % fmt(per_call(lambda: cbor2.loads(data))) if cbor2 else ""))


if __name__ == "__main__":
    main()
