"""fission.core.pipes: the original's pipe classes, thin, so job modules and their tests import.

marvelo's pipes are declared in the pipeline document; these classes only carry the framing
marvelo maps them to (PicklePipe -> cbor, JSONPipe -> json, BytesPipe -> bytes with its
block_size), which emulate() reads when a job is built with inputs=/outputs= of them.
"""

__all__ = ["BasePipe", "PicklePipe", "JSONPipe", "BytesPipe",
           "OptionalPicklePipe", "OptionalJSONPipe", "OptionalBytesPipe"]


class BasePipe:
    CODEC = "cbor"
    BLOCK_COUNT = 1
    ASYNC = False
    # The original's Optional*Pipe settings; marvelo's "optional" pipe key replaces them.
    OPTIONAL = False
    OPTIONAL_DEFAULT = None
    OPTIONAL_STORE = False
    OPTIONAL_BUFFER_SIZE = None
    OPTIONAL_DELETE_MODE = None

    def __init__(self, id, *args, **kwargs):
        self.id = id
        self.codec = self.CODEC
        self.block_size = 0
        self.block_count = kwargs.get("block_count", self.BLOCK_COUNT)
        self.dtype = kwargs.get("dtype", "")

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.id)


class PicklePipe(BasePipe):
    """Any Python object in the original; on marvelo a cbor pipe (numbers, strings, bytes,
    lists, maps, numpy arrays)."""


class JSONPipe(BasePipe):
    CODEC = "json"


class BytesPipe(BasePipe):
    CODEC = "bytes"

    def __init__(self, id, block_size=None, *args, **kwargs):
        super().__init__(id, *args, **kwargs)
        self.block_size = block_size if block_size is not None else getattr(self, "BLOCK_SIZE", 0)


class OptionalPicklePipe(PicklePipe):
    OPTIONAL = True


class OptionalJSONPipe(JSONPipe):
    OPTIONAL = True


class OptionalBytesPipe(BytesPipe):
    OPTIONAL = True
