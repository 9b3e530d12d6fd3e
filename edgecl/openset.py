"""Calibrated probabilities and an open-set answer from any head.

A head's softmax says how the taught classes compare, not how sure it is: streaming LDA
in 1280 dimensions puts 1.0 on its top class for almost anything, photos of things never
taught included. Two fixes, both fitted on samples the head never learned (the probe's
held-back items, :mod:`edgecl.probe`), and refitted whenever the probe is re-scored:

- one temperature ``T`` divides the head's logits (Guo et al. 2017): the ``T`` minimising
  the negative log-likelihood of the held-back samples' classes, under a weak normal
  prior on ``log T`` (:data:`~edgecl.calibration.PRIOR_SD`) so that a few dozen items that
  happen to be all right do not fit every score to 1.0. A strategy with
  :class:`~edgecl.protocols.Logits` gives its logits; for the others the log of its
  probabilities serves (the same up to a constant per row).
- a novelty score per input, higher = more novel: the head's own when it has
  :class:`~edgecl.protocols.Novelty` (Mahalanobis distance for ``slda``, distance to the
  nearest class mean for ``ncm``, energy for the softmax heads), else one minus the top
  calibrated probability. The threshold is the novelty below which ``acceptance``
  (0.95) of the held-back known samples fall; an explicit threshold wins over it.

Without a probe nothing is fitted (``T = 1``, no threshold): the replay store holds
learned samples, on which any head looks surer than it is, so fitting there would make
it over-confident.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl.calibration import acceptance_threshold, ece, fit_temperature, nll, softmax_t
from edgecl.protocols import Logits, Novelty, Snapshot, Strategy
from edgecl.types import Float64Array, FloatArray, IntArray, Label, State

BoolArray = npt.NDArray[np.bool_]

#: Held-back samples (of at least two classes) needed before anything is fitted.
MIN_SAMPLES = 20


def logits(strategy: Strategy, z: FloatArray) -> Float64Array:
    """The head's logits ``(N, K)``, ``-inf`` for classes it gives probability 0."""
    if isinstance(strategy, Logits):
        return np.asarray(strategy.logits_many(z), dtype=np.float64)
    p = np.asarray(strategy.predict_proba_many(z), dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.asarray(np.log(p), dtype=np.float64)


def novelty(strategy: Strategy, z: FloatArray, proba: Float64Array) -> Float64Array:
    """The head's novelty score, else one minus the top (calibrated) probability."""
    if isinstance(strategy, Novelty):
        return np.asarray(strategy.novelty_many(z), dtype=np.float64)
    return np.asarray(1.0 - proba.max(axis=1, initial=0.0), dtype=np.float64)


@dataclass(frozen=True)
class OpenPrediction:
    """For each latent: calibrated probabilities ``(N, K)`` in label order, its novelty
    and whether that is above the threshold used (all False while there is none)."""

    proba: Float64Array
    novelty: Float64Array
    unknown: BoolArray
    threshold: float | None


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and novelty threshold, and how they were fitted.

    Immutable: a fit returns a new one, so a frozen head may keep a reference.
    ``acceptance`` and ``override`` are options (the daemon's settings), not fitted;
    ``override``, when set, is the threshold used instead of the fitted one.

    >>> cal = Calibration()
    >>> cal.temperature, cal.threshold_for(None), cal.threshold_for(2.5)
    (1.0, None, 2.5)
    """

    temperature: float = 1.0
    threshold: float | None = None
    acceptance: float = 0.95
    override: float | None = None
    samples: int = 0
    classes: int = 0
    fitted_at: int | None = None  # the learner's samples_learned at the fit
    model_version: int | None = None
    nll: tuple[float, float] | None = None  # held-back NLL before (T = 1) and after
    ece: tuple[float, float] | None = None  # held-back ECE before and after
    status: str = "unfitted"
    reason: str = "not fitted yet"

    def __post_init__(self) -> None:
        if not 0.0 < self.acceptance <= 1.0:
            raise ValueError(f"acceptance must be in (0, 1], got {self.acceptance!r}")

    def threshold_for(self, threshold: float | None) -> float | None:
        """The threshold to use: the one given, else the override, else the fitted one."""
        if threshold is not None:
            return float(threshold)
        return self.override if self.override is not None else self.threshold

    def predict(
        self, strategy: Strategy, z: FloatArray, threshold: float | None = None
    ) -> OpenPrediction:
        """Calibrated probabilities, novelty and unknown flags of checked latents."""
        proba = softmax_t(logits(strategy, z), self.temperature)
        score = novelty(strategy, z, proba)
        used = self.threshold_for(threshold)
        unknown = np.zeros(len(score), bool) if used is None else score > used
        return OpenPrediction(proba, score, unknown, used)

    def fit(
        self,
        strategy: Strategy,
        held: tuple[FloatArray, IntArray] | None,
        at: int,
        version: int,
    ) -> Calibration:
        """Refitted on the held-back latents and class indices ``held`` (``None``: there
        is no probe); keeps the last fit, with a reason, when they are too few."""
        if held is None:
            return replace(self, status="no_probe", reason="no probe: no held-back samples")
        z, y = held
        classes = len(np.unique(y))
        if len(y) < MIN_SAMPLES or classes < 2:
            reason = (
                f"the probe holds {len(y)} items of {classes} classes; calibration needs "
                f"at least {MIN_SAMPLES} items of 2 classes"
            )
            return replace(self, status="too_few", reason=reason)
        raw = logits(strategy, z)
        t = fit_temperature(raw, y)
        proba = softmax_t(raw, t)
        score = novelty(strategy, z, proba)
        return replace(
            self,
            temperature=t,
            threshold=acceptance_threshold(score, self.acceptance),
            samples=len(y),
            classes=classes,
            fitted_at=at,
            model_version=version,
            nll=(nll(raw, y, 1.0), nll(raw, y, t)),
            ece=(ece(softmax_t(raw, 1.0), y), ece(proba, y)),
            status="fitted",
            reason=f"fitted on {len(y)} held-back items of {classes} classes",
        )

    def report(self) -> dict[str, Any]:
        """Plain data for ``/stats``."""
        return {**self.state_dict(), "override": self.override, "in_use": self.threshold_for(None)}

    def state_dict(self) -> State:
        return {
            "temperature": self.temperature,
            "threshold": self.threshold,
            "acceptance": self.acceptance,
            "samples": self.samples,
            "classes": self.classes,
            "fitted_at": self.fitted_at,
            "model_version": self.model_version,
            "nll": None if self.nll is None else list(self.nll),
            "ece": None if self.ece is None else list(self.ece),
            "status": self.status,
            "reason": self.reason,
        }

    def loaded(self, state: State) -> Calibration:
        """The fitted figures of ``state`` with this one's options (``acceptance``,
        ``override``: settings, which may have changed since)."""
        at, version, threshold = state["fitted_at"], state["model_version"], state["threshold"]
        return replace(
            self,
            temperature=float(state["temperature"]),
            threshold=None if threshold is None else float(threshold),
            samples=int(state["samples"]),
            classes=int(state["classes"]),
            fitted_at=None if at is None else int(at),
            model_version=None if version is None else int(version),
            nll=_pair(state["nll"]),
            ece=_pair(state["ece"]),
            status=str(state["status"]),
            reason=str(state["reason"]),
        )


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


@dataclass(frozen=True)
class OpenHead:
    """A frozen head with its calibration, labels and model version: what predictions
    read without waiting for learning (see :func:`freeze`)."""

    head: Strategy
    calibration: Calibration
    labels: list[Label]
    version: int

    def predict(self, z: FloatArray, threshold: float | None = None) -> OpenPrediction:
        return self.calibration.predict(self.head, z, threshold)

    def predict_proba(self, z: FloatArray) -> Float64Array:
        """Calibrated probabilities only."""
        return softmax_t(logits(self.head, z), self.calibration.temperature)


def freeze(
    strategy: Strategy, calibration: Calibration, labels: list[Label], version: int
) -> OpenHead | None:
    """The head as it is now (call under the writer's lock); None if the strategy cannot
    hand out a frozen copy (:class:`~edgecl.protocols.Snapshot`) or knows no class."""
    if not isinstance(strategy, Snapshot) or not labels:
        return None
    return OpenHead(strategy.snapshot(), calibration, list(labels), version)
