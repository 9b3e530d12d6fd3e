"""Shared pieces for head strategies: flat latents and frozen predictors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.types import FloatArray


def flat(z: FloatArray) -> FloatArray:
    """Latents as ``(N, D)`` float32 (intermediate-cut latents are flattened)."""
    return np.ascontiguousarray(z.reshape(len(z), -1), dtype=np.float32)


def frozen_predictor(head: Any, *arrays: str) -> Callable[[FloatArray], FloatArray]:
    """``predict_proba_many`` of a copy of ``head`` that owns copies of the named arrays:
    what it answers cannot change while ``head`` learns on, so it may be called from
    other threads without the learner's lock. Name every array the head's learning
    changes in place (arrays it replaces are safe to share).

    >>> from edgecl.strategies.ncm import NCM
    >>> head = NCM()
    >>> head.add_classes(2)
    >>> head.learn_many(np.array([[0.0, 1.0], [1.0, 0.0]], np.float32), np.array([0, 1]))
    >>> predict = frozen_predictor(head, "means", "counts")
    >>> head.learn_many(np.array([[5.0, 5.0]], np.float32), np.array([0]))
    >>> predict(np.array([[0.0, 1.0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """
    clone = copy.copy(head)
    for name in arrays:
        setattr(clone, name, getattr(head, name).copy())
    predict: Callable[[FloatArray], FloatArray] = clone.predict_proba_many
    return predict
