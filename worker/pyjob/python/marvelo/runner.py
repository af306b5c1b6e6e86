"""python3 -m marvelo.runner -i IN ... -o OUT ...: runs one PythonJob for the marvelo worker.

IN and OUT are inherited file descriptor numbers (all digits) or paths of named pipes, one -i
per input and one -o per output in the job's order. The environment variable
MARVELO_PYTHON_JOB holds the job as JSON (see parse_spec).

Input blocks are [8-byte big-endian SQN][head][frame]; a round is block_count blocks of every
input, in order. Output blocks are [head][frame], exactly one per output per round. Output is
batched in memory and flushed before every read from an input (a read may block, and the
worker waits for our answers), after every source round, whenever a buffer passes FLUSH_AT,
and by a thread of its own once an answer has waited LINGER seconds (a slow round over input
already read would otherwise hold every answer before it). Exit status: 0 finished, 1 the job
failed, 2 a bad spec, 141 an output closed.
"""

import json
import os
import select
import struct
import sys
import threading
import time

from .cbor import Incomplete
from .codecs import CODECS, CodecError, EncodeError, make_codec
from .engine import (Driver, JobError, ReturnError, SpecError, construct, describe_exception, failure, label_of,
                     load_class, prefer_our_packages)
from .job import End, Pipe

ENV = "MARVELO_PYTHON_JOB"
CHUNK = 1 << 16
FLUSH_AT = 1 << 18
# LINGER is the longest an answer waits for the ones after it to share its write, while the
# job computes rounds over input it has read already (the Python thread that flushes it may
# wait the interpreter's switch interval, 5 ms, more for the main thread to let it run).
LINGER = 0.002
EXIT_FAILED, EXIT_SPEC, EXIT_OUTPUT_CLOSED = 1, 2, 141

_PREFIX = {1: struct.Struct(">QB"), 2: struct.Struct(">QH"), 4: struct.Struct(">QI")}


class OutputClosed(Exception):
    """The worker closed an output: it went away, there is nobody to answer."""


class _Prefix3:
    """[SQN][3-byte head], read like the struct.Struct of the other sizes."""

    _s = struct.Struct(">QBH")

    def unpack_from(self, buf, pos):
        sqn, hi, lo = self._s.unpack_from(buf, pos)
        return sqn, hi << 16 | lo


class InputStream:
    """One input: its own buffer over the raw fd; blocks parsed in place."""

    def __init__(self, fd, pipe, codec, head_size, label, flush):
        self.fd = fd
        self.pipe = pipe
        self.codec = codec
        self.count = pipe.block_count
        self.label = label
        self.flush = flush
        self.buf = b""
        self.pos = 0
        self.pre = 8 + head_size
        self.prefix = _PREFIX[head_size] if head_size in _PREFIX else _Prefix3()
        self.poller = None
        self.read_block = {"cbor": self._read_cbor, "json": self._read_json, "bytes": self._read_bytes}[codec.name]

    # --- filling the buffer ---

    def _read(self, size):
        """One read. Our unflushed answers go out first: this read may block, and whoever feeds
        us may be waiting for them."""
        self.flush()
        return os.read(self.fd, size)

    def _readable_now(self):
        if self.poller is None:
            self.poller = select.poll()
            self.poller.register(self.fd, select.POLLIN)
        return bool(self.poller.poll(0))

    def _fill(self, need):
        """At least `need` bytes from pos. False at EOF before the first byte of a block."""
        have = len(self.buf) - self.pos
        parts = [self.buf[self.pos:]] if have else []
        while have < need:
            chunk = self._read(max(CHUNK, need - have))
            if not chunk:
                if have == 0:
                    self.buf, self.pos = b"", 0
                    return False
                raise self._truncated(have)
            parts.append(chunk)
            have += len(chunk)
        self.buf = parts[0] if len(parts) == 1 else b"".join(parts)
        self.pos = 0
        return True

    def _more(self, target):
        """Read at least once more (False at EOF), then on while more is waiting and fewer than
        `target` bytes are buffered: a big item is then decoded O(log n) times, not once per
        chunk."""
        chunk = self._read(CHUNK)
        if not chunk:
            return False
        parts = [self.buf[self.pos:], chunk]
        have = len(self.buf) - self.pos + len(chunk)
        while have < target and self._readable_now():
            chunk = os.read(self.fd, max(CHUNK, target - have))
            if not chunk:
                break  # EOF: the next _more says so
            parts.append(chunk)
            have += len(chunk)
        self.buf = b"".join(parts)
        self.pos = 0
        return True

    def _at_eof(self):
        """At EOF: None when it fell between blocks, else the error for a truncated block."""
        have = len(self.buf) - self.pos
        if have == 0:
            return None
        raise self._truncated(have)

    def _truncated(self, have):
        return JobError("%s: input pipe %s ended inside a block (%d bytes of it arrived)"
                        % (self.label, self.pipe.id, have))

    def _malformed(self, pos, err):
        sqn = self.prefix.unpack_from(self.buf, pos)[0]
        return JobError("%s: input pipe %s: a malformed %s frame at SQN %d: %s"
                        % (self.label, self.pipe.id, self.codec.name, sqn, err))

    # --- one block: (sqn, head, value), or None at EOF between blocks ---

    def _read_bytes(self):
        p = self.pos
        end = p + self.pre + self.codec.block_size
        if end > len(self.buf):
            if not self._fill(end - p):
                return None
            p, end = 0, end - p
        buf = self.buf
        sqn, head = self.prefix.unpack_from(buf, p)
        value = self.codec.decode_at(buf, p + self.pre)
        self.pos = end
        return sqn, head, value

    def _read_json(self):
        pre = self.pre
        scanned = 0  # bytes after pos + pre already searched for the newline
        while True:
            buf, p = self.buf, self.pos
            nl = buf.find(b"\n", p + pre + scanned)
            if nl >= 0:
                break
            scanned = max(0, len(buf) - p - pre)
            if not self._more(2 * (len(buf) - p)):
                return self._at_eof()
        sqn, head = self.prefix.unpack_from(buf, p)
        try:
            value = self.codec.decode_line(buf[p + pre:nl])
        except CodecError as e:
            raise self._malformed(p, e) from None
        self.pos = nl + 1
        return sqn, head, value

    def _read_cbor(self):
        pre = self.pre
        decode = self.codec.decode_at
        while True:
            buf, p = self.buf, self.pos
            if p + pre < len(buf):
                try:
                    value, end = decode(buf, p + pre)
                    break
                except Incomplete:
                    pass
                except ValueError as e:
                    raise self._malformed(p, e) from None
            if not self._more(2 * (len(buf) - p)):
                return self._at_eof()
        sqn, head = self.prefix.unpack_from(buf, p)
        self.pos = end
        return sqn, head, value


class OutputStream:
    __slots__ = ("fd", "pipe", "codec", "buf")

    def __init__(self, fd, pipe, codec):
        self.fd = fd
        self.pipe = pipe
        self.codec = codec
        self.buf = bytearray()

    def flush(self):
        """Writes the whole buffer. The caller holds the runner's write lock."""
        view = memoryview(self.buf)
        try:
            self._write(view)
        finally:
            view.release()
        del self.buf[:]

    def flush_copy(self):
        """flush for the lingering flusher's thread, while the main thread may append: what is
        buffered now is copied out first (an append to a bytearray a write still exports would
        fail), and only that is removed. The caller holds the runner's write lock."""
        data = bytes(self.buf)
        del self.buf[:len(data)]
        self._write(memoryview(data))

    def _write(self, view):
        try:
            done = 0
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except BrokenPipeError:
            raise OutputClosed(self.pipe.id) from None


# ------------------------------------------------------------------ the spec


def _parse_args(argv):
    ins, outs = [], []
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag not in ("-i", "-o") or i + 1 >= len(argv):
            raise SpecError("usage: python -m marvelo.runner -i IN ... -o OUT ... (IN/OUT a file descriptor "
                            "number or a named pipe path); got %r" % (argv[i:],))
        (ins if flag == "-i" else outs).append(argv[i + 1])
        i += 2
    return ins, outs


def _pipes(entries, what, numpy_arrays, codecs):
    """(Pipe, codec) per pipe entry of the spec; pipes framed alike share one codec object
    (codecs, a dict), so a value broadcast to them is encoded once."""
    out = []
    for n, e in enumerate(entries):
        if not isinstance(e, dict):
            raise SpecError("%s %d: %r is not an object" % (what, n, e))
        codec_name = e.get("codec") or "cbor"
        if codec_name not in CODECS:
            raise SpecError("%s pipe %s: unknown codec %r" % (what, e.get("pipe"), codec_name))
        count = e.get("block_count") or 1
        if not isinstance(count, int) or count < 1:
            raise SpecError("%s pipe %s: block_count %r" % (what, e.get("pipe"), count))
        pipe = Pipe(e.get("pipe", n), codec_name, e.get("block_size") or 0, count, e.get("dtype") or "")
        key = (codec_name, pipe.block_size, pipe.dtype)
        if key not in codecs:
            try:
                codecs[key] = make_codec(codec_name, pipe.block_size, pipe.dtype, numpy_arrays)
            except CodecError as err:
                raise JobError("%s pipe %s: %s" % (what, pipe.id, err)) from None
        codec = codecs[key]
        out.append((pipe, codec))
    return out


def parse_spec(text):
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise SpecError("%s is not JSON: %s" % (ENV, e)) from None
    if not isinstance(spec, dict):
        raise SpecError("%s must be a JSON object" % ENV)
    head_size = spec.get("head_size", 1)
    if head_size not in (1, 2, 3, 4):
        raise SpecError("head_size %r: heads are 1 to 4 bytes" % (head_size,))
    arrays = spec.get("arrays") or ""
    if arrays not in ("", "numpy"):
        raise SpecError('arrays %r: "numpy" or ""' % (arrays,))
    if not isinstance(spec.get("args") or {}, dict):
        raise SpecError("args must be an object (the class's constructor keywords)")
    return spec


def _open(name, flags):
    """An inherited descriptor (all digits) or a named pipe opened by path."""
    if name.isdigit():
        try:
            os.fstat(int(name))
        except OSError as e:
            raise SpecError("file descriptor %s: %s" % (name, e)) from None
        return int(name)
    try:
        return os.open(name, flags)
    except OSError as e:
        raise SpecError("cannot open %s: %s" % (name, e)) from None


# ------------------------------------------------------------------ the job


class Runner:
    def __init__(self, spec, in_names, out_names):
        self.job_id = spec.get("job")
        self.label = label_of(self.job_id, spec.get("name") or str(spec.get("class", "?")).rpartition(":")[2])
        self.head_size = spec.get("head_size", 1)
        numpy_arrays = (spec.get("arrays") or "") == "numpy"
        if numpy_arrays:
            try:
                import numpy  # noqa: F401 - fail at start, not at the first array
            except ImportError:
                raise JobError('%s: "arrays": "numpy" but %s cannot import numpy' % (self.label, sys.executable)) from None
        try:
            codecs = {}
            ins = _pipes(spec.get("inputs") or [], "input", numpy_arrays, codecs)
            outs = _pipes(spec.get("outputs") or [], "output", numpy_arrays, codecs)
        except JobError as e:
            raise JobError("%s: %s" % (self.label, e)) from None
        if len(in_names) != len(ins) or len(out_names) != len(outs):
            raise SpecError("%s: %d -i and %d -o for a job of %d inputs and %d outputs"
                            % (self.label, len(in_names), len(out_names), len(ins), len(outs)))
        # The streams are opened before the job's module is imported: a named pipe's other end
        # is then never left waiting on a job that failed to start, it sees EOF as we exit.
        self.outputs = []
        self.inputs = []
        for name, (pipe, codec) in zip(in_names, ins):
            self.inputs.append(InputStream(_open(name, os.O_RDONLY), pipe, codec, self.head_size, self.label, self.flush))
        for name, (pipe, codec) in zip(out_names, outs):
            self.outputs.append(OutputStream(_open(name, os.O_WRONLY), pipe, codec))
        cls = load_class(spec.get("class"), self.label)
        if not spec.get("name"):
            self.label = label_of(self.job_id, cls.__name__)
            for inp in self.inputs:
                inp.label = self.label
        self.job = construct(cls, spec.get("args") or {}, [p for p, _ in ins], [p for p, _ in outs],
                             self.job_id, self.label)
        self.driver = Driver(self.job, self.label, [p.block_count for p, _ in ins], len(outs), self.head_size)
        self.driver.check()
        # Writes to the outputs are the main thread's (flush) and the lingering flusher's
        # (_flush_lingering); the lock keeps them whole and in order. Appends take no lock.
        self.write_lock = threading.Lock()
        self.answered = None  # the flusher's Event: an answer waits (None: no flusher, a source)
        # armed: the flusher was told of the answers buffered since it last took them. True
        # for good without a flusher, so a source's rounds never look further.
        self.armed = True
        self.flusher_error = None  # what stopped the flusher, raised by the main thread's next flush
        self.closed = False

    def flush(self):
        if self.answered is None:  # nobody else writes
            self._flush_outputs()
            return
        with self.write_lock:
            if self.flusher_error is not None:
                raise self.flusher_error
            self._flush_outputs()

    def _flush_outputs(self):
        for out in self.outputs:
            if out.buf:
                out.flush()

    def _flush_lingering(self):
        """The flusher's thread: once an answer is buffered, wait LINGER for more, then write
        what is buffered. It disarms before it copies, so an answer appended after the copy
        arms it again (_answer) and is not left behind; one appended before is in the copy."""
        answered = self.answered
        while True:
            answered.wait()
            time.sleep(LINGER)  # the batching window, not a synchronisation: later answers share the write
            answered.clear()
            self.armed = False
            with self.write_lock:
                if self.closed:
                    return
                try:
                    for out in self.outputs:
                        if out.buf:
                            out.flush_copy()
                except (OutputClosed, OSError) as e:
                    self.flusher_error = e
                    return

    def _start_flusher(self):
        self.answered, self.armed = threading.Event(), False
        threading.Thread(target=self._flush_lingering, name="marvelo-flusher", daemon=True).start()

    def close(self):
        with self.write_lock:
            self.closed = True  # the flusher writes no more: the descriptors go
        if self.answered is not None:
            self.answered.set()
        for out in self.outputs:
            try:
                os.close(out.fd)
            except OSError:
                pass

    def serve(self):
        try:
            self.driver.setup()
        except Exception as e:
            raise failure("%s: setup failed" % self.label, e) from None
        if self.inputs:
            if self.outputs:
                self._start_flusher()
            self._serve_rounds()
        else:
            self._serve_source()

    # --- rounds ---

    def _read_round(self):
        """(sqn, args, heads) of the next round, or None when the inputs ended."""
        args, heads, sqn = [], [], None
        for inp in self.inputs:
            if inp.count == 1:
                block = inp.read_block()
                if block is None:
                    return None
                s, h, v = block
                args.append(v)
                heads.append(h)
            else:
                values, hs, s = [], [], None
                for j in range(inp.count):
                    block = inp.read_block()
                    if block is None:
                        if j == 0:
                            return None
                        raise JobError("%s: input pipe %s ended after %d of the %d blocks of a round"
                                       % (self.label, inp.pipe.id, j, inp.count))
                    if s is not None and block[0] != s:
                        raise self._sqn_mismatch(inp, block[0], s)
                    s = block[0]
                    hs.append(block[1])
                    values.append(block[2])
                args.append(values)
                heads.append(hs)
            if sqn is None:
                sqn = s
            elif s != sqn:
                raise self._sqn_mismatch(inp, s, sqn)
        return sqn, args, heads

    def _sqn_mismatch(self, inp, got, want):
        return JobError("%s: input pipe %s gave a block of SQN %d in the round of SQN %d"
                        % (self.label, inp.pipe.id, got, want))

    def _serve_rounds(self):
        driver = self.driver
        single = self.inputs[0] if len(self.inputs) == 1 and self.inputs[0].count == 1 else None
        while True:
            if single is not None:
                block = single.read_block()
                if block is None:
                    return
                sqn, head, value = block
                args, heads = (value,), (head,)
            else:
                got = self._read_round()
                if got is None:
                    return
                sqn, args, heads = got
            try:
                result = driver.call(args, heads)
            except End:
                return
            except Exception as e:
                raise failure("%s: run failed at SQN %d" % (self.label, sqn), e) from None
            if self.outputs:
                self._answer(result, sqn)
            if driver.job._finished:
                return

    def _serve_source(self):
        driver = self.driver
        block = 0
        while True:
            block += 1
            try:
                result = driver.call_source()
            except (StopIteration, End):
                return
            except Exception as e:
                raise failure("%s: run failed at block %d" % (self.label, block), e) from None
            self._answer(result, None, block)
            # A source may be paced by time (run sleeps), so what it made goes out now.
            self.flush()
            if driver.job._finished:
                return

    def _where(self, sqn, block):
        return "SQN %d" % sqn if block is None else "block %d" % block

    def _answer(self, result, sqn, block=None):
        """Encode every output's block of this round, then append them all."""
        try:
            values, heads = self.driver.answers(result)
        except ReturnError as e:
            raise JobError("%s: at %s: %s" % (self.label, self._where(sqn, block), e)) from None
        outs = self.outputs
        frames = []
        last_value, last_codec, last_frame = None, None, None
        for k, out in enumerate(outs):
            value = values[k]
            codec = out.codec
            if value is None:
                frames.append(codec.zero)
                continue
            if value is last_value and codec is last_codec:
                frames.append(last_frame)  # a broadcast value: encoded once per codec
                continue
            try:
                frame = codec.encode(value)
            except (EncodeError, CodecError, ValueError, TypeError, OverflowError) as e:
                raise JobError("%s: at %s: cannot encode the value for output pipe %s (%s), a value of type %s: %s"
                               % (self.label, self._where(sqn, block), out.pipe.id, codec.name,
                                  getattr(e, "type_name", type(value).__name__), e)) from None
            last_value, last_codec, last_frame = value, codec, frame
            frames.append(frame)
        size = self.head_size
        for out, head, frame in zip(outs, heads, frames):
            buf = out.buf
            buf += head.to_bytes(size, "big")
            buf += frame
            if len(buf) > FLUSH_AT:
                self.flush()
        if not self.armed:  # after the appends: the flusher disarms before it copies
            self.armed = True
            self.answered.set()


def main(argv=None):
    if sys.stdout is not None and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # the worker logs the job's print()s line by line
    argv = sys.argv[1:] if argv is None else argv
    prefer_our_packages()
    runner = None
    try:
        in_names, out_names = _parse_args(argv)
        spec = parse_spec(os.environ.get(ENV, ""))
        runner = Runner(spec, in_names, out_names)
        runner.serve()
        runner.flush()
        runner.close()
        return 0
    except SpecError as e:
        print("marvelo.runner: %s" % e, file=sys.stderr)
        return EXIT_SPEC
    except OutputClosed as e:
        label = runner.label if runner else "marvelo.runner"
        print("%s: output pipe %s was closed by the reader; stopping" % (label, e), file=sys.stderr)
        return EXIT_OUTPUT_CLOSED
    except JobError as e:
        _flush_quietly(runner)
        print(e, file=sys.stderr)
        return EXIT_FAILED
    except SystemExit:  # sys.exit() in the job's code: what it answered before still goes out
        _flush_quietly(runner)
        raise
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug of ours: say so, with the whole traceback
        import traceback
        label = runner.label if runner else "marvelo.runner"
        print("%s: internal error: %s" % (label, describe_exception(e)), file=sys.stderr)
        traceback.print_exc()
        return EXIT_FAILED


def _flush_quietly(runner):
    """The answers of the rounds before a failure still go out."""
    if runner is None:
        return
    try:
        runner.flush()
    except (OutputClosed, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
