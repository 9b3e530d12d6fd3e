"""Frozen heads: what ``/predict`` reads without waiting for the writer; predictions ranked.

After every change the writer freezes the head with its calibration, labels and model
version (:meth:`edgecl.Learner.open_head`: a copy sharing only the arrays learning replaces
rather than changes) and publishes it. A prediction takes the latest published head and
never waits behind a learning step; a strategy that cannot freeze its head is read under
the writer's lock instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecl.openset import OpenHead, OpenPrediction
from edgecl.types import Label

__all__ = ["OpenHead", "PredictResult", "Prediction", "rank"]


@dataclass(frozen=True)
class Prediction:
    label: Label
    score: float
    top_k: list[tuple[Label, float]]
    novelty: float
    unknown: bool


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    model_version: int
    threshold: float | None  # the novelty threshold used


def rank(out: OpenPrediction, labels: list[Label], version: int, top_k: int) -> PredictResult:
    """Each row's best label and its ``top_k`` labels with their calibrated scores (ties:
    first label), its novelty and whether that makes it unknown.

    >>> out = OpenPrediction(np.array([[0.2, 0.8]]), np.array([3.0]), np.array([True]), 2.0)
    >>> p = rank(out, ["a", "b"], 3, top_k=5).predictions[0]
    >>> p.top_k, p.novelty, p.unknown
    ([('b', 0.8), ('a', 0.2)], 3.0, True)
    """
    k = max(1, min(top_k, len(labels)))
    order = np.argsort(-out.proba, axis=1, kind="stable")[:, :k]
    predictions = []
    for row, best, novelty, unknown in zip(out.proba, order, out.novelty, out.unknown, strict=True):
        ranked = [(labels[int(i)], float(row[int(i)])) for i in best]
        top = ranked[0]
        predictions.append(Prediction(top[0], top[1], ranked, float(novelty), bool(unknown)))
    return PredictResult(predictions, version, out.threshold)
