"""Frozen heads: what ``/predict`` reads without waiting for the writer.

After every change the writer freezes the head (a copy of the arrays learning changes in
place) and publishes it with its labels and model version. A prediction takes the latest
published head and never waits behind a learning step; a strategy that cannot freeze its
head (not :class:`edgecl.protocols.Freezable`) is read under the writer's lock instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from edgecl.learner import Learner
from edgecl.protocols import Freezable
from edgecl.types import FloatArray, Label


@dataclass(frozen=True)
class PublishedHead:
    """One frozen head: class probabilities for latents, in ``labels`` order.

    >>> import numpy as np
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
