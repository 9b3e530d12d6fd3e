"""The learner's open-set side: when calibration is refitted, and predictions that say
how sure they are and whether the input is unlike every taught class (edgecl.openset)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgecl.labels import LabelMap
from edgecl.openset import Calibration, OpenHead, OpenPrediction, freeze
from edgecl.probe import ProbeSet
from edgecl.protocols import Strategy
from edgecl.types import FloatArray


class NotFittedError(RuntimeError):
    """Raised when predicting before any class has been learned."""


class OpenSetLearning:
    """Mixed into :class:`edgecl.Learner`: the calibration is refitted on the probe's
    held-back items whenever the probe is re-scored, and after a head is swapped in."""

    strategy: Strategy
    probe: ProbeSet | None
    labels: LabelMap
    samples_learned: int
    class_counts: list[int]
    model_version: int
    calibration: Calibration

    if TYPE_CHECKING:  # the learner's own methods, declared for the type checker only

        def check_latents(self, z: Any) -> FloatArray: ...

        def predict_proba_latents(self, z: Any, tasks: Any = None) -> FloatArray: ...

    def rescore(self) -> None:
        """Re-score the probe (if any) and refit the calibration on its held items."""
        if self.probe is not None:
            self.probe.rescore(self)
        self.calibrate()

    def calibrate(self) -> None:
        """Refit the temperature and the novelty threshold (see :mod:`edgecl.openset`)."""
        from edgecl.task_book import TaskBound, task_aware

        held, strategy = None, self.strategy
        if self.probe is not None:
            z, y, t = self.probe.labelled()
            held = (z, y)
            if task_aware(strategy) is not None:  # its items are scored with their tasks
                strategy = TaskBound(strategy, t)  # type: ignore[assignment]
        at, version = self.samples_learned, self.model_version
        self.calibration = self.calibration.fit(strategy, held, at, version)

    def predict_open(self, z: Any, threshold: float | None = None) -> OpenPrediction:
        """Calibrated probabilities ``(N, n_classes)`` in label order, novelty and unknown
        flags of latents; a ``threshold`` given wins over the calibration's."""
        if not len(self.labels):
            raise NotFittedError("nothing has been learned yet; learn some samples first")
        return self.calibration.predict(self.strategy, self.check_latents(z), threshold)

    def open_head(self) -> OpenHead | None:
        """:meth:`predict_open` of the head as it is now, frozen: later learning does not
        change its answers (None when the strategy cannot freeze or knows no class).

        >>> import numpy as np
        >>> from edgecl import Learner, strategies
        >>> from edgecl.backbones import IdentityBackbone
        >>> learner = Learner(IdentityBackbone(2), strategies.create("ncm"))
        >>> learner.learn_latents(np.array([[0.0, 1.0], [1.0, 0.0]]), ["up", "right"])
        >>> head = learner.open_head()
        >>> learner.learn_latents(np.array([[0.0, -1.0]]), ["down"])
        >>> head.labels, head.version, head.predict(np.array([[0.0, -1.0]], np.float32)).proba.shape
        (['up', 'right'], 1, (1, 2))
        """
        return freeze(self.strategy, self.calibration, self.labels.labels, self.model_version)
