"""A job module written for MARVELO, unchanged: fission imports, pipes passed to
super().__init__, constructor arguments of the original's shape."""

from fission.core.jobs import LocalJob, PythonJob
from fission.core.pipes import BytesPipe, JSONPipe, PicklePipe  # noqa: F401 - imported as the originals did


class ReadSoundFile(PythonJob):
    def __init__(self, soundFile, outputs=None):
        self.soundFile = soundFile
        super().__init__(outputs=outputs)

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        self.samples = [len(self.soundFile), 2, 3]

    def run(self):
        for s in self.samples:
            yield s


class CountJob(PythonJob):
    HEAD = True

    def __init__(self, start=1, step=1, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = start
        self.step = step

    def run(self):
        for i in range(self.start, self.start + 3 * self.step, self.step):
            if i == self.start + 2 * self.step:
                self.finish()
            yield (i, -i)


class MultiplySumJob(PythonJob):
    def run(self, multiplier, *args):
        return multiplier * sum(args)


class LocalMultiplySumJob(LocalJob, MultiplySumJob):
    def run(self, multiplier, *args):
        return multiplier * sum(args)


class OtherOrder(MultiplySumJob, LocalJob):
    pass
