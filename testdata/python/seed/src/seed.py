"""The examples of MARVELO's page "Implementing Jobs", unchanged: they import fission.core.jobs
and run on marvelo as they ran on the original."""
from fission.core.jobs import PythonJob, LocalJob


class CountJob(PythonJob):
    HEAD = True

    def run(self):
        for i in range(1, 31):
            if i == 30:
                self.finish()
            yield (i, 31 - i)


class SumJob(PythonJob):
    def run(self, in_1, in_2):
        return in_1 + in_2


class MultiplySumJob(PythonJob):
    def run(self, multiplier, *args):
        return multiplier * sum(args)


class LocalMultiplySumJob(LocalJob, MultiplySumJob):
    def run(self, multiplier, *args):
        return multiplier * sum(args)


class MyJob(PythonJob):
    MY_ATTRIBUTE = "MY_VALUE"

    def __init__(self, my_path, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.my_path = my_path
        self.MY_ATTRIBUTE = self.MY_ATTRIBUTE

    def setup(self, *args, **kwargs):
        super().setup(*args, **kwargs)
        self.my_file = open(self.my_path, "w")

    def run(self, value):
        self.my_file.write(f"{self.MY_ATTRIBUTE} {value}\n")
        self.my_file.flush()
