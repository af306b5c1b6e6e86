"""marvelo's Python jobs: subclass PythonJob, override setup (optional) and run.

    from marvelo import PythonJob

    class SumJob(PythonJob):
        def run(self, a, b):
            return a + b

The worker runs a job with `python3 -m marvelo.runner`; marvelo.testing.emulate runs it in a
test without a cluster. Job modules written for MARVELO import fission.core.jobs unchanged.
"""

from .head import Head
from .job import End, Job, LocalJob, Pipe, PythonJob

__version__ = "0.1.0"

__all__ = ["End", "Head", "Job", "LocalJob", "Pipe", "PythonJob", "__version__"]
