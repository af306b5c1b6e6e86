"""Testing a PythonJob without a cluster.

    from marvelo.testing import emulate

    res = emulate(SumJob(), inputs=[[1, 2], [10, 20]])
    assert res.outputs == [[11, 22]]

    job = emulate(MyJob())             # the original's shape: one round per call
    assert job("*", 1, 2, 3) == [6, 6, "*"]

setup() runs before the first round; every value goes through its pipe's codec both ways
(cbor unless input_pipes / output_pipes say otherwise, e.g. {"codec": "json"} or
{"codec": "bytes", "block_size": 8, "dtype": "<f4"}), so the job sees what it would see on a
worker. An input value None is a dummy (bit 0 set in its head, the codec's zero value); a
skipped output shows as None.

CLI: python3 -m marvelo.testing mod:Class [--args JSON] [--input JSON_LIST]...
[--input-file FILE]... [--codec CODEC] [--outputs N] [--rounds N] [--arrays numpy] prints
each round's outputs as one JSON line.
"""

import argparse
import inspect
import json
import sys

from .codecs import CodecError, EncodeError, make_codec
from .engine import (Driver, JobError, ReturnError, SpecError, construct, failure, label_of, load_class,
                     prefer_our_packages)
from .head import Head, bit_mask, CORRUPTED
from .job import End, Job, Pipe

__all__ = ["emulate", "Emulation", "SOURCE_ROUND_CAP"]

# A source emulated without rounds= must end (finish, End, exhaustion) within this many rounds.
SOURCE_ROUND_CAP = 100000


def emulate(job, inputs=None, input_pipes=None, output_pipes=None, heads=None, rounds=None,
            arrays="", head_size=1):
    """An Emulation of job (an instance, or a class built without arguments).

    inputs[k][r] is round r's value of input k (a list of N values for a block_count N input);
    heads[k][r] its head (an int or a Head; 0 by default). rounds limits the rounds run; a
    source runs `rounds` rounds, or until it ends. The result's .outputs[k][r] is output k's
    value in round r, .heads[k][r] its Head, .finished whether the job ended itself. The
    Emulation is also callable, one round per call: emulate(job)(*args) returns the list of
    the round's outputs."""
    return Emulation(job, inputs, input_pipes, output_pipes, heads, rounds, arrays, head_size)


def _pipe(spec, index):
    """A Pipe from a pipe spec: None, a codec name, a dict, a pipe object or a pipe id."""
    if spec is None:
        return Pipe(index)
    if isinstance(spec, Pipe):
        return spec
    if isinstance(spec, str):
        return Pipe(index, spec)
    if isinstance(spec, dict):
        return Pipe(spec.get("pipe", spec.get("id", index)), spec.get("codec") or "cbor",
                    spec.get("block_size") or 0, spec.get("block_count") or 1, spec.get("dtype") or "")
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Pipe(spec)
    if hasattr(spec, "codec"):  # fission.core.pipes and look-alikes
        return Pipe(getattr(spec, "id", index), spec.codec or "cbor", getattr(spec, "block_size", 0) or 0,
                    getattr(spec, "block_count", 1) or 1, getattr(spec, "dtype", "") or "")
    raise ValueError("not a pipe spec: %r" % (spec,))


def _declared_pipes(declared):
    """The pipes a job's own inputs=/outputs= declare: an int (how many) or a list; else None."""
    if isinstance(declared, int) and not isinstance(declared, bool):
        return [Pipe(k) for k in range(declared)]
    if isinstance(declared, (list, tuple)):
        return [_pipe(p, k) for k, p in enumerate(declared)]
    return None


class Emulation:
    def __init__(self, job, inputs=None, input_pipes=None, output_pipes=None, heads=None, rounds=None,
                 arrays="", head_size=1):
        if isinstance(job, type):
            job = job()
        if not isinstance(job, Job):
            raise TypeError("emulate takes a PythonJob (or its class), not %r" % (job,))
        self.job = job
        if job.id is None:
            job.id = 0
        self.label = label_of(job.id, type(job).__name__)
        self.numpy_arrays = arrays == "numpy"
        self.head_size = head_size
        self.corrupted = bit_mask(CORRUPTED, head_size)
        self._given_inputs = inputs
        self._given_heads = heads
        self._rounds_limit = rounds
        self._codecs = {}
        self.in_pipes = self._pipes(input_pipes, job.inputs, len(inputs) if inputs is not None else None)
        self.out_pipes = self._pipes(output_pipes, job.outputs, None)
        self.driver = None
        self.rounds = 0
        self.ended = False
        self._outputs = []
        self._heads = []
        self._completed = False

    def _pipes(self, given, declared, count):
        if given is not None:
            return [_pipe(p, k) for k, p in enumerate(given)]
        pipes = _declared_pipes(declared)
        if pipes is not None:
            return pipes
        if count is not None:
            return [Pipe(k) for k in range(count)]
        return None

    def _codec(self, pipe):
        key = (pipe.codec, pipe.block_size, pipe.dtype)
        if key not in self._codecs:
            self._codecs[key] = make_codec(pipe.codec, pipe.block_size, pipe.dtype, self.numpy_arrays)
        return self._codecs[key]

    # --- starting ---

    def _looks_like_source(self):
        """Without declared or given inputs: whether run takes no inputs at all."""
        try:
            params = inspect.signature(self.job.run).parameters.values()
        except (TypeError, ValueError):
            return False
        return inspect.isgeneratorfunction(self.job.run) or not any(
            p.kind == p.VAR_POSITIONAL or p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
            for p in params)

    def _start(self, n_inputs):
        if self.driver is not None:
            return
        if self.in_pipes is None:
            self.in_pipes = [Pipe(k) for k in range(n_inputs)]
        job = self.job
        job.inputs = self.in_pipes
        n_outputs = None
        if self.out_pipes is not None:
            job.outputs = self.out_pipes
            n_outputs = len(self.out_pipes)
            self._open_outputs(n_outputs)
        else:
            # Not declared: one output until an answer says otherwise (a tuple's length), so
            # that len(self.outputs) works in setup and in the first round.
            job.outputs = [Pipe(0)]
        self.driver = Driver(job, self.label, [p.block_count for p in self.in_pipes], n_outputs, self.head_size)
        try:
            self.driver.check()
        except JobError as e:
            raise ValueError(str(e)) from None
        self.driver.setup()

    def _open_outputs(self, n):
        if self.out_pipes is None:  # now known from the first answer
            self.out_pipes = [Pipe(k) for k in range(n)]
            self.job.outputs = self.out_pipes
        while len(self._outputs) < n:
            self._outputs.append([])
            self._heads.append([])

    # --- one round ---

    def _through(self, value, pipe, direction):
        """value after encoding and decoding with pipe's codec, as it would arrive."""
        codec = self._codec(pipe)
        try:
            return codec.decode(codec.encode(value))
        except EncodeError as e:
            raise EncodeError(e.type_name, "%s: cannot encode a value of type %s for %s pipe %s (%s): %s"
                              % (self.label, e.type_name, direction, pipe.id, codec.name, e)) from None
        except CodecError as e:
            raise CodecError("%s: %s pipe %s (%s): %s" % (self.label, direction, pipe.id, codec.name, e)) from None

    def _input_block(self, value, head, pipe):
        """(value, head) of one input block as the job gets it; None is a dummy."""
        head = int(head or 0)
        if value is None:
            codec = self._codec(pipe)
            return codec.decode(codec.zero), head | self.corrupted
        return self._through(value, pipe, "input"), head

    def _round(self, args, heads):
        if self.ended:
            raise End("%s has ended" % self.label)
        self._start(len(args))
        if len(args) != len(self.in_pipes):
            raise ValueError("%s has %d input(s), got %d value(s) for the round"
                             % (self.label, len(self.in_pipes), len(args)))
        job_args, raw_heads = [], []
        for k, (value, pipe) in enumerate(zip(args, self.in_pipes)):
            head = heads[k] if heads is not None else None
            if pipe.block_count == 1:
                v, h = self._input_block(value, head, pipe)
            else:
                if not isinstance(value, (list, tuple)) or len(value) != pipe.block_count:
                    raise ValueError("%s: input pipe %s has block_count %d: give a list of %d values per round"
                                     % (self.label, pipe.id, pipe.block_count, pipe.block_count))
                hs = head if head is not None else [0] * pipe.block_count
                blocks = [self._input_block(x, hx, pipe) for x, hx in zip(value, hs)]
                v, h = [b[0] for b in blocks], [b[1] for b in blocks]
            job_args.append(v)
            raw_heads.append(h)
        try:
            if self.in_pipes:
                result = self.driver.call(job_args, raw_heads)
            else:
                result = self.driver.call_source()
        except (End, StopIteration):
            self.ended = True
            return None
        return self._record(result)

    def _record(self, result):
        try:
            values, heads = self.driver.answers(result)
        except ReturnError as e:
            raise ReturnError("%s: round %d: %s" % (self.label, self.rounds, e)) from None
        self._open_outputs(len(values))
        outs = []
        for k, (value, head) in enumerate(zip(values, heads)):
            if value is not None:
                value = self._through(value, self.out_pipes[k], "output")
            outs.append(value)
            self._outputs[k].append(value)
            self._heads[k].append(Head._of(head, self.head_size))
        self.rounds += 1
        if self.driver.finished:
            self.ended = True
        return outs

    def __call__(self, *args):
        """One round with these input values; the list of the round's outputs. Raises End when
        the job ends in this round without answering, or has ended."""
        outs = self._round(list(args), None)
        if outs is None:
            raise End("%s ended" % self.label)
        return outs

    # --- the rounds given to emulate() ---

    def _complete(self):
        if self._completed:
            return
        self._completed = True
        limit = self._rounds_limit
        if self._given_inputs:
            self._run_given(limit)
        elif (self.in_pipes == [] or (self.in_pipes is None and self._looks_like_source())) and not self.ended:
            self._run_source(limit)

    def _run_given(self, limit):
        columns = self._given_inputs
        lengths = {len(c) for c in columns}
        if len(lengths) > 1:
            raise ValueError("%s: the inputs have different numbers of rounds: %s"
                             % (self.label, [len(c) for c in columns]))
        n = lengths.pop() if lengths else 0
        if limit is not None:
            n = min(n, limit)
        heads = self._given_heads
        for r in range(n):
            if self.ended:
                break
            round_heads = [h[r] for h in heads] if heads is not None else None
            self._round([c[r] for c in columns], round_heads)

    def _run_source(self, limit):
        cap = limit if limit is not None else SOURCE_ROUND_CAP
        while not self.ended and self.rounds < cap:
            self._round([], None)
        if not self.ended and limit is None:
            raise RuntimeError("%s: the source did not end within %d rounds (no finish(), End or exhaustion); "
                               "pass rounds=N" % (self.label, SOURCE_ROUND_CAP))

    @property
    def outputs(self):
        self._complete()
        return self._outputs

    @property
    def heads(self):
        self._complete()
        return self._heads

    @property
    def finished(self):
        self._complete()
        return self.ended


# ------------------------------------------------------------------ the CLI


def _jsonable(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _read_input_file(path):
    """A JSON list of per-round values, or JSON lines (one value a line)."""
    with open(path) as f:
        text = f.read()
    try:
        values = json.loads(text)
        if isinstance(values, list):
            return values
    except ValueError:
        pass
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _cli_args(argv):
    ap = argparse.ArgumentParser(prog="python3 -m marvelo.testing",
                                 description="Run a PythonJob's rounds in-process; print each round's outputs "
                                             "as one JSON line (bytes as hex, skipped outputs as null).")
    ap.add_argument("cls", metavar="module:Class")
    ap.add_argument("--args", default="{}", help="the constructor's keywords, a JSON object")
    ap.add_argument("--input", action="append", default=[], help="one input's per-round values, a JSON list")
    ap.add_argument("--input-file", action="append", default=[],
                    help="one input's per-round values: a JSON list or JSON lines")
    ap.add_argument("--codec", default="cbor", help="every pipe's codec (cbor, json; default cbor)")
    ap.add_argument("--outputs", type=int, default=None, help="the number of outputs (else from the answers)")
    ap.add_argument("--rounds", type=int, default=None, help="at most this many rounds")
    ap.add_argument("--arrays", default="", help='"numpy": numeric arrays arrive as ndarrays')
    return ap.parse_args(argv)


def main(argv=None):
    a = _cli_args(sys.argv[1:] if argv is None else argv)
    prefer_our_packages()
    label = label_of(0, a.cls.rpartition(":")[2])
    try:
        args = json.loads(a.args)
        if not isinstance(args, dict):
            raise SpecError("--args must be a JSON object")
        inputs = [json.loads(x) for x in a.input] + [_read_input_file(p) for p in a.input_file]
        if not all(isinstance(x, list) for x in inputs):
            raise SpecError("every --input is a JSON list of per-round values")
        cls = load_class(a.cls, label)
        in_pipes = [Pipe(k, a.codec) for k in range(len(inputs))]
        out_pipes = [Pipe(len(inputs) + k, a.codec) for k in range(a.outputs)] if a.outputs is not None else None
        job = construct(cls, args, in_pipes, out_pipes, 0, label)
        em = Emulation(job, inputs=inputs if inputs else None, input_pipes=in_pipes, output_pipes=out_pipes,
                       rounds=a.rounds, arrays=a.arrays)
        try:
            em.outputs  # runs the rounds
            error = None
        except Exception as e:
            error = e
        for r in range(em.rounds):
            print(json.dumps([_jsonable(out[r]) for out in em._outputs]))
        if error is not None:
            print(failure("%s: failed in round %d" % (label, em.rounds + 1), error), file=sys.stderr)
            return 1
        return 0
    except (SpecError, JobError) as e:
        print(e, file=sys.stderr)
        return 1
    except json.JSONDecodeError as e:
        print("%s: bad JSON argument: %s" % (label, e), file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print("%s: %s" % (label, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
