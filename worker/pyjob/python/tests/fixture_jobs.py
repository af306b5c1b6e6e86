"""Jobs the tests run through the runner and emulate (imported as fixture_jobs:Class)."""

from marvelo import End, Head, LocalJob, PythonJob


class Forward(PythonJob):
    def run(self, x):
        return x


class Scale(PythonJob):
    def __init__(self, factor=1, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def run(self, x):
        return x * self.factor


class SumJob(PythonJob):
    def run(self, *args):
        return sum(args)


class MultiplySumJob(PythonJob):
    def run(self, multiplier, *args):
        return multiplier * sum(args)


class StarJob(PythonJob):
    """The seed page's emulate example: job("*", 1, 2, 3) == [6, 6, "*"]."""

    def run(self, star, *args):
        return sum(args), sum(args), star


class CountTwo(PythonJob):
    """A generator source with two outputs: i up, n + 1 - i down; finished on the last."""

    def __init__(self, n=5, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def run(self):
        for i in range(1, self.n + 1):
            if i == self.n:
                self.finish()
            yield (i, self.n + 1 - i)


class CountPlain(PythonJob):
    """The seed page's plain-method source."""

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        self.counter = 0
        self.limit = 4

    def run(self):
        self.counter += 1
        if self.counter == self.limit:
            self.finish()
        return self.counter


class Exhausting(PythonJob):
    """A generator source that just stops: exhaustion ends it."""

    def run(self):
        yield from range(3)


class BlockSum(PythonJob):
    """A reducer over a block_count input: the sum of the round's blocks, and how many."""

    def run(self, blocks):
        return sum(blocks), len(blocks)


class SkipOdd(PythonJob):
    """None for odd values: "nothing this round"."""

    def run(self, x):
        return None if x % 2 else x


class SkipFirstOutput(PythonJob):
    """A tuple with None skips one output; an out_heads entry with bit 0 set skips the other."""

    def run(self, x):
        if x == 2:
            self.out_heads[1] = Head(0x80)
        return (None if x == 1 else x, x)


class FinishAt(PythonJob):
    def __init__(self, at=3, **kwargs):
        super().__init__(**kwargs)
        self.at = at

    def run(self, x):
        if x == self.at:
            self.finish()
        return x


class EndAt(PythonJob):
    def __init__(self, at=3, **kwargs):
        super().__init__(**kwargs)
        self.at = at

    def run(self, x):
        if x == self.at:
            raise End
        return x


class HeadEcho(PythonJob):
    """Outputs its self.head as an int, and a user bit (bit 5) on every output's head."""

    def run(self, *args):
        head = Head(self.head)
        head[5] = True
        self.out_heads = [head] * len(self.outputs)
        return int(self.head)


class AndReduce(PythonJob):
    """head_reduce overridden: the AND of the input heads."""

    def head_reduce(self):
        value = int(self.in_heads[0])
        for h in self.in_heads[1:]:
            value &= int(h)
        return Head(value, self.in_heads[0].size)

    def run(self, a, b):
        return int(self.head)


class Divide(PythonJob):
    def run(self, x):
        return 10 // x


class FailingSource(PythonJob):
    def run(self):
        for i in range(5):
            if i == 2:
                raise RuntimeError("sensor unplugged")
            yield i


class Unencodable(PythonJob):
    def run(self, x):
        return {x}


class NaNJob(PythonJob):
    def run(self, x):
        return float("nan")


class Printer(PythonJob):
    def run(self, x):
        print("%s -> %s" % (self.id, x))
        return x


class GeneratorWithInput(PythonJob):
    def run(self, x):
        yield x


class SetupFails(PythonJob):
    def setup(self, *args, **kwargs):
        raise OSError("no such sound card")


class InPlace(PythonJob):
    """Doubles a bytes+dtype frame in place: it arrives as a writable ndarray."""

    def run(self, samples):
        samples *= 2
        return samples


class Doubler(PythonJob):
    def run(self, x):
        return x * 2


class Describe(PythonJob):
    """What the job received: its type's name and, for arrays, the dtype."""

    def run(self, x):
        return "%s %s" % (type(x).__name__, getattr(x, "dtype", ""))


class SetupOnce(PythonJob):
    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        self.calls = getattr(self, "calls", 0) + 1
        self.offset = 100

    def run(self, x):
        return x + self.offset, self.calls


class PipesSeen(PythonJob):
    """The ids and codecs of its pipes, and its id."""

    def run(self, x):
        return [self.id, [p.id for p in self.inputs], [p.codec for p in self.outputs]]


class SourceLocal(LocalJob, PythonJob):
    def run(self):
        yield 1


class LocalSource(PythonJob, LocalJob):
    def run(self):
        yield 2


class ExitsAt(PythonJob):
    def run(self, x):
        if x == 3:
            raise SystemExit(4)
        return x


class WaitAt(PythonJob):
    """Forwards its input; at the value `at` it first waits until someone writes to the named
    pipe `fifo` (the test, once it has read the answers before that round)."""

    def __init__(self, at=0, fifo="", **kwargs):
        super().__init__(**kwargs)
        self.at, self.fifo = at, fifo

    def run(self, x):
        if x == self.at:
            with open(self.fifo) as f:
                f.read()
        return x
