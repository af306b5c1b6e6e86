"""A compatibility shim: job modules written for MARVELO/FISSION import from here unchanged
(`from fission.core.jobs import PythonJob, LocalJob`), and run on marvelo's classes."""
