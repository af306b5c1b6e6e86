"""What the runner and emulate share: loading and building the job, and one round's call and
answer (the return-value rules of the seed page, heads, finish, skips)."""

import importlib
import inspect
import os
import sys
import traceback
import types

from .head import Head, bit_mask, CORRUPTED, FINISHED
from .job import Job

# Frames from these files are ours (or the import machinery's), never the job author's.
_NOT_THE_AUTHORS = tuple(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), d) + os.sep
                         for d in ("marvelo", "fission")) + (
    os.path.dirname(importlib.__file__) + os.sep, "<frozen importlib")

# The worker shows the last 20 lines of stderr: the summary line and at most this many lines of
# traceback fit.
TRACEBACK_LINES = 18


class SpecError(Exception):
    """The job's description is unusable (exit status 2)."""


class JobError(Exception):
    """The job failed; the message names the job and says what happened (exit status 1)."""


class ReturnError(ValueError):
    """run returned a value that does not fit the job's outputs."""


def label_of(job_id, name):
    return "job %s (%s)" % (job_id, name)


def user_traceback(exc, max_lines=TRACEBACK_LINES):
    """The tail of exc's traceback without marvelo's own frames: the lines the author needs."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_NOT_THE_AUTHORS)]
    if not frames:
        return []
    lines = []
    for chunk in traceback.format_list(frames):
        lines.extend(chunk.rstrip("\n").split("\n"))
    if len(lines) > max_lines - 1:
        lines = lines[-(max_lines - 1):]
    return ["Traceback (most recent call last, the job's code):"] + lines


def describe_exception(exc):
    text = str(exc)
    return "%s: %s" % (type(exc).__name__, text) if text else type(exc).__name__


def failure(summary, exc):
    """A JobError whose message is summary, exc and exc's user traceback."""
    lines = ["%s: %s" % (summary, describe_exception(exc))] + user_traceback(exc)
    return JobError("\n".join(lines))


# ------------------------------------------------------------------ loading and building


def split_class_string(class_string):
    parts = class_string.split(":") if isinstance(class_string, str) else []
    if len(parts) != 2 or not all(p and all(s.isidentifier() for s in p.split(".")) for p in parts):
        raise SpecError("class %r is not of the form module:Class (e.g. mypkg.jobs:SumJob)" % (class_string,))
    return parts[0], parts[1]


def prefer_our_packages():
    """Put the folder holding marvelo and fission first on sys.path. `python -m` puts the working
    directory (the job's import root) first, and a project that still carries a copy of the
    original fission package would otherwise import that instead of this shim; the import root
    stays on the path, right after."""
    ours = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:] = [ours] + [p for p in sys.path if os.path.abspath(p or os.curdir) != ours]


def import_root():
    return "import root %s; sys.path %s" % (os.getcwd(), sys.path[:6])


def load_class(class_string, label):
    """The class named by "module:Class", imported from the job's import root."""
    module_name, qualname = split_class_string(class_string)
    try:
        module = importlib.import_module(module_name)
    except BaseException as e:  # SystemExit, SyntaxError, anything the module raises
        if isinstance(e, KeyboardInterrupt):
            raise
        raise failure("%s: cannot import module %s (class %s) with %s; %s"
                      % (label, module_name, class_string, sys.executable, import_root()), e) from None
    obj = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = sorted(n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Job)
                           and v.__module__ == module.__name__)
            raise JobError("%s: module %s (%s) has no class %s; its job classes: %s (interpreter %s; %s)"
                           % (label, module_name, getattr(module, "__file__", "?"), qualname,
                              ", ".join(found) or "none", sys.executable, import_root())) from None
    if not (isinstance(obj, type) and issubclass(obj, Job)):
        raise JobError("%s: %s is not a PythonJob class (subclass marvelo.PythonJob or "
                       "fission.core.jobs.PythonJob)" % (label, class_string))
    return obj


def accepts_keyword(cls, name):
    """Whether cls(...) takes the keyword `name` (a parameter of that name, or **kwargs)."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return True
    for p in params.values():
        if p.kind == p.VAR_KEYWORD:
            return True
        if p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            return True
    return False


def construct(cls, args, inputs, outputs, job_id, label):
    """cls(**args), given inputs=/outputs= when its constructor takes them; then self.inputs,
    self.outputs and self.id are the runtime's, whatever the constructor did with them."""
    kwargs = dict(args or {})
    for name, pipes in (("inputs", inputs), ("outputs", outputs)):
        if name in kwargs:
            raise SpecError("%s: args must not set %r: a job's pipes come from the document" % (label, name))
        if accepts_keyword(cls, name):
            kwargs[name] = pipes
    try:
        job = cls(**kwargs)
    except Exception as e:
        raise failure("%s: constructing %s(**args) with args %s failed" % (label, cls.__name__, sorted(args or {})), e) from None
    job.inputs = inputs
    job.outputs = outputs
    job.id = job_id
    return job


# ------------------------------------------------------------------ one round


class Driver:
    """Calls a job's rounds: heads in, run, the answer out as (values, heads) per output.

    n_outputs may be None (emulate without declared outputs): it is then taken from the first
    answer, a tuple's length or 1."""

    def __init__(self, job, label, block_counts, n_outputs, head_size=1):
        self.job = job
        self.label = label
        self.block_counts = list(block_counts)
        self.n_inputs = len(self.block_counts)
        self.n_outputs = n_outputs
        self.head_size = head_size
        self.corrupted = bit_mask(CORRUPTED, head_size)
        self.finished_bit = bit_mask(FINISHED, head_size)
        self.full = (1 << (8 * head_size)) - 1
        self.custom_reduce = type(job).head_reduce is not Job.head_reduce
        self.generator = None
        self.round_corrupted = False
        self.run = job.run
        job._head_size = head_size

    @property
    def is_generator(self):
        return inspect.isgeneratorfunction(self.job.run)

    def check(self):
        """Refuse at start what would fail or misbehave later."""
        if self.is_generator and self.n_inputs:
            raise JobError("%s: run is a generator function but the job has %d input(s); a generator run is "
                           "only for sources (no inputs): return one value per round instead"
                           % (self.label, self.n_inputs))
        if not self.is_generator:
            try:
                inspect.signature(self.job.run).bind(*range(self.n_inputs))
            except TypeError as e:
                raise JobError("%s: run cannot take the job's %d input(s), one positional argument each: %s"
                               % (self.label, self.n_inputs, e)) from None
            except ValueError:
                pass

    def setup(self):
        self.job.setup()
        self.run = self.job.run
        if self.n_inputs == 0 and inspect.isgeneratorfunction(self.run):
            self.generator = self.run()

    def _set_heads(self, raw_heads):
        job, size = self.job, self.head_size
        of = Head._of
        in_heads = []
        value = 0
        for h in raw_heads:
            if type(h) is int:
                value |= h
                in_heads.append(of(h, size))
            else:
                for x in h:
                    value |= x
                in_heads.append([of(x, size) for x in h])
        job.in_heads = in_heads
        self.round_corrupted = bool(value & self.corrupted)
        if self.custom_reduce:
            head = job.head_reduce()
            if not isinstance(head, Head):
                head = of(int(head or 0) & self.full, size)
            job.head = head
        else:
            job.head = of(value, size)
        job.out_heads = [None] * (self.n_outputs if self.n_outputs is not None else 1)

    def call(self, args, raw_heads):
        """run(*args) for one round; raw_heads is one int per input (a list for block_count)."""
        self._set_heads(raw_heads)
        return self.run(*args)

    def call_source(self):
        """The next source round's result. Raises StopIteration when a generator is exhausted
        (or a plain run raises it)."""
        self._set_heads(())
        if self.generator is not None:
            return next(self.generator)
        result = self.run()
        if isinstance(result, types.GeneratorType):  # run returned a generator: use it
            self.generator = result
            return next(result)
        return result

    def answers(self, result):
        """(values, heads) per output: values[k] is None for a skipped output, whose head has
        bit 0 set; a real answer's head has bit 0 cleared (the worker sets it back).

        An output is skipped when its value is None, or when its out_heads entry sets bit 0 in
        a round whose inputs had none: in a round made from a dummy, bit 0 in an out_heads entry
        is taken as copied from self.head (out_heads[k] = self.head | mine), not as a skip."""
        n = self.n_outputs
        if n == 0:  # a sink: whatever it returns goes nowhere
            return [], []
        if isinstance(result, tuple):
            if n is None:
                n = self.n_outputs = len(result)
            elif len(result) != n:
                raise ReturnError(
                    "run returned a tuple of %d value(s) but the job has %d output(s) (a tuple gives one value "
                    "per output; to send one tuple t to every output return (t,) * %d)" % (len(result), n, n))
            values = list(result)
        else:
            if n is None:
                n = self.n_outputs = 1
            values = [result] * n
        job = self.job
        derived = int(job.head or 0) & self.full & ~self.corrupted
        finished = self.finished_bit if job._finished else 0
        out_heads = job.out_heads
        heads = []
        for k in range(n):
            explicit = out_heads[k] if k < len(out_heads) else None
            if explicit is None:
                h = derived
            else:
                h = int(explicit) & self.full
            if values[k] is None or (h & self.corrupted and explicit is not None and not self.round_corrupted):
                values[k] = None
                h |= self.corrupted
            else:
                h &= ~self.corrupted
            heads.append(h | finished)
        return values, heads

    @property
    def finished(self):
        return self.job._finished
