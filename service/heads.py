"""Frozen heads: what ``/predict`` reads without waiting for the writer; predictions ranked.

After every change the writer freezes the head (a copy of the arrays learning changes in
place) and publishes it with its labels and model version. A prediction takes the latest
published head and never waits behind a learning step; a strategy that cannot freeze its
head (not :class:`edgecl.protocols.Freezable`) is read under the writer's lock instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecl.learner import Learner
from edgecl.protocols import Freezable
from edgecl.types import FloatArray, Label


@dataclass(frozen=True)
class Prediction:
    label: Label
    score: float
    top_k: list[tuple[Label, float]]


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    model_version: int


def rank(proba: FloatArray, labels: list[Label], version: int, top_k: int) -> PredictResult:
    """Each row's best label and its ``top_k`` labels with their scores (ties: first label).

    >>> rank(np.array([[0.2, 0.8]]), ["a", "b"], 3, top_k=5).predictions[0].top_k
    [('b', 0.8), ('a', 0.2)]
    """
    k = max(1, min(top_k, len(labels)))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    predictions = []
    for row, best in zip(proba, order, strict=True):
        ranked = [(labels[int(i)], float(row[int(i)])) for i in best]
        predictions.append(Prediction(ranked[0][0], ranked[0][1], ranked))
    return PredictResult(predictions, version)


@dataclass(frozen=True)
class PublishedHead:
    """One frozen head: class probabilities for latents, in ``labels`` order.

    >>> from edgecl import strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> learner = Learner(IdentityBackbone(2), strategies.create("ncm"))
    >>> learner.learn_latents(np.array([[0.0, 1.0], [1.0, 0.0]]), ["up", "right"])
    >>> head = freeze(learner)
    >>> learner.learn_latents(np.array([[0.0, -1.0]]), ["down"])
    >>> head.labels, head.version, head.predict_proba(np.array([[0.0, -1.0]], np.float32)).shape
    (['up', 'right'], 1, (1, 2))
    """

    predict_proba: Callable[[FloatArray], FloatArray]
    labels: list[Label]
    version: int


def freeze(learner: Learner) -> PublishedHead | None:
    """The learner's head as it is now (call under the writer's lock); None if its strategy
    cannot freeze it or nothing was learned yet."""
    strategy = learner.strategy
    if not isinstance(strategy, Freezable) or not len(learner.labels):
        return None
    return PublishedHead(strategy.predictor(), list(learner.labels.labels), learner.model_version)
