"""fission.core.head: marvelo's Head."""

from marvelo.head import Head

__all__ = ["Head"]
