"""Rounds per second through `python -m marvelo.runner` with a forward job, fed and drained
through os.pipe()s (not a unittest: discovery runs test_*.py only).

    python3 tests/bench_runner.py [--rounds N] [--interp /usr/bin/python3]

The clock runs from the first answer to the last, so interpreter start and imports are not
counted: they are paid once per job, never per round.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PKG = os.path.dirname(HERE)
sys.path.insert(0, PKG)

from marvelo import cbor  # noqa: E402

JOBS = '''
from marvelo import PythonJob

class Forward(PythonJob):
    def run(self, x):
        return x

class Count(PythonJob):
    def __init__(self, n=0, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def run(self):
        for i in range(self.n):
            yield i
'''


def feed(fd, data):
    view = memoryview(data)
    step = 1 << 20
    for i in range(0, len(view), step):
        chunk = view[i:i + step]
        while chunk:
            chunk = chunk[os.write(fd, chunk):]
    os.close(fd)


def drain(fd):
    """Read until EOF; the time of the first byte and the total bytes."""
    first, total = None, 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return first, total
        if first is None:
            first = time.perf_counter()
        total += len(chunk)


def run_case(interp, workdir, spec, frames, answer_size):
    """Rounds per second of a one-input job fed frames."""
    env = dict(os.environ, MARVELO_PYTHON_JOB=json.dumps(spec), PYTHONPATH=PKG)
    out_r, out_w = os.pipe()
    in_r, in_w = os.pipe()
    proc = subprocess.Popen([interp, "-m", "marvelo.runner", "-i", str(in_r), "-o", str(out_w)],
                            pass_fds=[in_r, out_w], env=env, cwd=workdir)
    os.close(in_r)
    os.close(out_w)
    data = b"".join(struct.pack(">QB", i, 0) + f for i, f in enumerate(frames))
    feeder = threading.Thread(target=feed, args=(in_w, data))
    feeder.start()
    first, total = drain(out_r)
    end = time.perf_counter()
    os.close(out_r)
    feeder.join()
    if proc.wait() != 0:
        raise SystemExit("the runner failed")
    if total != len(frames) * answer_size:
        raise SystemExit("got %d bytes, want %d" % (total, len(frames) * answer_size))
    return (len(frames) - 1) / (end - first)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200000)
    ap.add_argument("--interp", default=sys.executable)
    a = ap.parse_args()
    n = a.rounds
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "benchjobs.py"), "w") as f:
            f.write(JOBS)

        def spec(codec, block_size=0, inputs=True, cls="benchjobs:Forward", args=None):
            pipe = {"codec": codec, "block_size": block_size}
            return {"job": 1, "class": cls, "head_size": 1, "args": args or {},
                    "inputs": [dict(pipe, pipe=1)] if inputs else [], "outputs": [dict(pipe, pipe=2)]}

        print("interpreter %s" % a.interp)
        value = 1000000  # a 5-byte CBOR item, a 7-byte JSON line
        cases = [
            ("cbor ints", spec("cbor"), [cbor.dumps(value)] * n, 1 + len(cbor.dumps(value))),
            ("json ints", spec("json"), [b"%d\n" % value] * n, 1 + len(b"%d\n" % value)),
            ("cbor floats", spec("cbor"), [cbor.dumps(0.1)] * n, 10),
            ("4 KiB bytes", spec("bytes", 4096), [bytes(range(256)) * 16] * (n // 2), 4097),
        ]
        for name, s, frames, size in cases:
            rate = run_case(a.interp, workdir, s, frames, size)
            print("%-14s %9.0f rounds/s  %6.2f us/round" % (name, rate, 1e6 / rate))
        s = spec("cbor", inputs=False, cls="benchjobs:Count", args={"n": n})
        rate = _source_rate(a.interp, workdir, s, n, sum(1 + len(cbor.dumps(i)) for i in range(n)))
        print("%-14s %9.0f rounds/s  %6.2f us/round (a generator source: a write per round)"
              % ("source", rate, 1e6 / rate))


def _source_rate(interp, workdir, spec, n, size_total):
    env = dict(os.environ, MARVELO_PYTHON_JOB=json.dumps(spec), PYTHONPATH=PKG)
    out_r, out_w = os.pipe()
    proc = subprocess.Popen([interp, "-m", "marvelo.runner", "-o", str(out_w)], pass_fds=[out_w], env=env, cwd=workdir)
    os.close(out_w)
    first, total = drain(out_r)
    end = time.perf_counter()
    os.close(out_r)
    if proc.wait() != 0 or total != size_total:
        raise SystemExit("the source failed (%d of %d bytes)" % (total, size_total))
    return (n - 1) / (end - first)


if __name__ == "__main__":
    main()
