"""fission.core.jobs: marvelo's job classes under the original's names."""

from marvelo.head import Head
from marvelo.job import End, Job, LocalJob, PythonJob

__all__ = ["End", "Head", "Job", "LocalJob", "PythonJob"]
