"""edgecl: streaming continual learning on a frozen backbone, within a fixed memory budget."""

from __future__ import annotations

from edgecl.labels import LabelMap
from edgecl.learner import Learner, NotFittedError

__all__ = ["Learner", "LabelMap", "NotFittedError"]
__version__ = "0.1.0"
