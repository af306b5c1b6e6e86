"""The classes job authors subclass: PythonJob and LocalJob, and End.

LocalJob is a sibling of PythonJob on the common base Job, not a subclass of it, so job modules
that inherit both in either order — class X(LocalJob, PythonJob) and class Y(PythonJob,
LocalJob) in one file — still get a consistent method resolution order.
"""

from .head import Head


class End(Exception):
    """Raise in run to end the job now: this round writes nothing, the outputs are closed and
    the job finishes cleanly."""


class Pipe:
    """What a job sees in self.inputs / self.outputs: the pipe's id and how it is framed."""

    __slots__ = ("id", "codec", "block_size", "block_count", "dtype")

    def __init__(self, id=0, codec="cbor", block_size=0, block_count=1, dtype=""):
        self.id = id
        self.codec = codec
        self.block_size = block_size
        self.block_count = block_count
        self.dtype = dtype

    def __repr__(self):
        extra = ""
        if self.block_size:
            extra += ", block_size=%d" % self.block_size
        if self.block_count != 1:
            extra += ", block_count=%d" % self.block_count
        if self.dtype:
            extra += ", dtype=%r" % self.dtype
        return "Pipe(%r, %r%s)" % (self.id, self.codec, extra)


class Job:
    """The common base of PythonJob and LocalJob.

    The defaults live on the class, not only in __init__, so a subclass whose constructor
    forgets super().__init__() still runs.
    """

    # Placement attributes of the original; marvelo places jobs by the document, so they are
    # kept only so that job modules that set or read them keep working.
    HEAD = False
    GROUPS = "ALL"
    DEFAULT_NODE = None
    MAX_QUEUE = None
    DEPENDENCIES = []

    id = None
    inputs = None
    outputs = None
    head = None
    in_heads = ()
    out_heads = ()
    _finished = False
    _head_size = 1

    def __init__(self, inputs=None, outputs=None, *args, **kwargs):
        # Extra positional and keyword arguments are accepted and ignored: the original's
        # subclasses pass theirs on through super().__init__(*args, **kwargs).
        self.inputs = inputs
        self.outputs = outputs
        self._finished = False

    def setup(self, *args, **kwargs):
        """Called once before the first round; override it (and call super().setup)."""

    def run(self, *inputs):
        raise NotImplementedError("%s does not define run" % type(self).__name__)

    def head_reduce(self):
        """self.head for the round: by default the OR of every input head."""
        value = 0
        for head in self.in_heads:
            if isinstance(head, list):
                for h in head:
                    value |= int(h)
            else:
                value |= int(head)
        return Head._of(value, self._head_size)

    def finish(self):
        """Set the finished bit on this round's outputs; the job ends after this round."""
        self._finished = True


class PythonJob(Job):
    """A job written in Python: override setup (optional) and run."""


class LocalJob(Job):
    """The original's client-side job; marvelo places it like any job by the document."""

    GROUPS = "LOCAL"
