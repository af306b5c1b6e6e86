"""Running `python -m marvelo.runner` as the worker does, through real os.pipe()s."""

import json
import os
import select
import struct
import subprocess
import sys
import threading
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(TESTS)
sys.path.insert(0, PACKAGE_ROOT)

from marvelo.codecs import make_codec  # noqa: E402
from marvelo.cbor import Incomplete  # noqa: E402

DEADLINE = 60.0  # seconds a whole runner test may take before it is a hang


def pipe_spec(pipe, codec="cbor", block_size=0, block_count=1, dtype=""):
    return {"pipe": pipe, "codec": codec, "block_size": block_size, "block_count": block_count, "dtype": dtype}


def job_spec(cls, inputs=(), outputs=(), args=None, head_size=1, arrays="", job=3, name=""):
    return {"job": job, "name": name, "pipeline": "test", "class": cls, "args": args or {}, "arrays": arrays,
            "head_size": head_size, "inputs": list(inputs), "outputs": list(outputs)}


def encode_blocks(pipe, values, head_size=1, heads=None, first_sqn=1, per_round=1):
    """The input stream of values: [SQN][head][frame] each; per_round blocks share an SQN."""
    codec = make_codec(pipe["codec"], pipe["block_size"], pipe["dtype"])
    out = bytearray()
    for i, v in enumerate(values):
        head = heads[i] if heads is not None else 0
        out += struct.pack(">Q", first_sqn + i // per_round) + head.to_bytes(head_size, "big")
        out += codec.zero if v is None else codec.encode(v)
    return bytes(out)


def decode_blocks(pipe, data, head_size=1, arrays=False):
    """[(head, value)] of an output stream ([head][frame] each)."""
    codec = make_codec(pipe["codec"], pipe["block_size"], pipe["dtype"], arrays)
    blocks, pos = [], 0
    while pos < len(data):
        head = int.from_bytes(data[pos:pos + head_size], "big")
        pos += head_size
        if codec.name == "bytes":
            value, pos = codec.decode_at(data, pos), pos + codec.block_size
        elif codec.name == "json":
            nl = data.index(b"\n", pos)
            value, pos = codec.decode_line(data[pos:nl]), nl + 1
        else:
            try:
                value, pos = codec.decode_at(data, pos)
            except Incomplete:
                raise AssertionError("a truncated CBOR item at byte %d of the output" % pos)
        blocks.append((head, value))
    return blocks


class Result:
    def __init__(self, rc, outputs, stdout, stderr):
        self.rc, self.outputs, self.stdout, self.stderr = rc, outputs, stdout, stderr

    def __repr__(self):
        return "Result(rc=%r, stderr=%r)" % (self.rc, self.stderr[-2000:])


def _write_all(fd, data):
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BrokenPipeError:
        pass
    finally:
        os.close(fd)


def _read_all(fd, sink):
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        sink.append(chunk)
    os.close(fd)


def start(spec, n_inputs, n_outputs, cwd=TESTS, env_extra=None, interpreter=None):
    """(process, input write fds, output read fds) of a runner started like the worker does."""
    ins = [os.pipe() for _ in range(n_inputs)]
    outs = [os.pipe() for _ in range(n_outputs)]
    argv = [interpreter or sys.executable, "-m", "marvelo.runner"]
    for r, _ in ins:
        argv += ["-i", str(r)]
    for _, w in outs:
        argv += ["-o", str(w)]
    env = dict(os.environ, MARVELO_PYTHON_JOB=json.dumps(spec), PYTHONPATH=PACKAGE_ROOT, **(env_extra or {}))
    env.pop("PYTHONSTARTUP", None)
    proc = subprocess.Popen(argv, pass_fds=[r for r, _ in ins] + [w for _, w in outs], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for r, _ in ins:
        os.close(r)
    for _, w in outs:
        os.close(w)
    return proc, [w for _, w in ins], [r for r, _ in outs]


def run(spec, inputs=(), n_outputs=None, cwd=TESTS, close_outputs_first=False):
    """Feed every input stream whole, read every output to EOF; a Result."""
    n_outputs = len(spec["outputs"]) if n_outputs is None else n_outputs
    proc, in_fds, out_fds = start(spec, len(inputs), n_outputs, cwd)
    if close_outputs_first:
        for fd in out_fds:
            os.close(fd)
        out_fds = []
    sinks = [[] for _ in out_fds]
    threads = [threading.Thread(target=_write_all, args=(fd, data)) for fd, data in zip(in_fds, inputs)]
    threads += [threading.Thread(target=_read_all, args=(fd, sink)) for fd, sink in zip(out_fds, sinks)]
    for t in threads:
        t.daemon = True
        t.start()
    try:
        stdout, stderr = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("the runner did not end within %ss" % DEADLINE)
    for t in threads:
        t.join(DEADLINE)
    return Result(proc.returncode, [b"".join(s) for s in sinks], stdout.decode(), stderr.decode())


def read_exactly(fd, n, timeout=DEADLINE):
    """n bytes from fd, or an AssertionError when they do not come within timeout."""
    deadline = time.monotonic() + timeout
    data = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            raise AssertionError("waited %ss for %d bytes, got %r" % (timeout, n, data))
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise AssertionError("EOF after %r, wanted %d bytes" % (data, n))
        data += chunk
    return data
