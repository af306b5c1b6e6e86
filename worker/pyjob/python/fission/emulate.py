"""fission.emulate: marvelo.testing.emulate under the original's name; `emulate(job)(*args)`
returns the list of the round's outputs, as before (now after setup(), bug 11)."""

from marvelo.testing import emulate

__all__ = ["emulate"]
