"""The learner's open-set side: when calibration is refitted, and predictions that say
how sure they are and whether the input is unlike every taught class (edgecl.openset)."""

from __future__ import annotations

from typing import Any

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

    def check_latents(self, z: Any) -> FloatArray:
        raise NotImplementedError  # the learner's

    def predict_proba_latents(self, z: Any) -> FloatArray:
        raise NotImplementedError  # the learner's

    def rescore(self) -> None:
        """Re-score the probe (if any) and refit the calibration on its held items."""
        if self.probe is not None:
            self.probe.rescore(self)
        self.calibrate()

    def calibrate(self) -> None:
        """Refit the temperature and the novelty threshold (see :mod:`edgecl.openset`)."""
        held = None if self.probe is None else self.probe.store.items()
        at, version = self.samples_learned, self.model_version
        self.calibration = self.calibration.fit(self.strategy, held, at, version)

    def predict_open(self, z: Any, threshold: float | None = None) -> OpenPrediction:
        """Calibrated probabilities ``(N, n_classes)`` in label order, novelty and unknown
        flags of latents; a ``threshold`` given wins over the calibration's."""
        if not len(self.labels):
            raise NotFittedError("nothing has been learned yet; learn some samples first")
        return self.calibration.predict(self.strategy, self.check_latents(z), threshold)

    def open_head(self) -> OpenHead | None:
        """:meth:`predict_open` of the head as it is now, frozen: later learning does not
        change its answers (None when the strategy cannot freeze or knows no class)."""
        return freeze(self.strategy, self.calibration, self.labels.labels, self.model_version)
