"""Shared pieces for head strategies: flat latents, frozen copies, logits and novelty."""

from __future__ import annotations

import copy
from typing import Any, TypeVar

import numpy as np

from edgecl.types import Float64Array, FloatArray

T = TypeVar("T")


def flat(z: FloatArray) -> FloatArray:
    """Latents as ``(N, D)`` float32 (intermediate-cut latents are flattened)."""
    return np.ascontiguousarray(z.reshape(len(z), -1), dtype=np.float32)


def frozen_copy(head: T, *arrays: str) -> T:
    """A shallow copy of ``head`` owning copies of the named arrays: a snapshot that later
    learning by ``head`` leaves alone, so it may answer from other threads without the
    learner's lock. Name every array the head's learning changes in place (arrays it
    replaces are safe to share).

    >>> from edgecl.strategies.ncm import NCM
    >>> head = NCM()
    >>> head.add_classes(2)
    >>> head.learn_many(np.array([[0.0, 1.0], [1.0, 0.0]], np.float32), np.array([0, 1]))
    >>> frozen = frozen_copy(head, "means", "counts")
    >>> head.learn_many(np.array([[5.0, 5.0]], np.float32), np.array([0]))
    >>> frozen.predict_proba_many(np.array([[0.0, 1.0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """
    clone = copy.copy(head)
    for name in arrays:
        setattr(clone, name, getattr(head, name).copy())
    return clone


def masked_logits(scores: Any, trained: Any) -> Float64Array:
    """``scores`` as float64 with the columns of classes never trained at ``-inf``.

    >>> masked_logits(np.array([[1.0, 2.0]]), np.array([True, False])).tolist()
    [[1.0, -inf]]
    """
    s = np.asarray(scores, dtype=np.float64)
    return np.asarray(np.where(np.asarray(trained)[None, :], s, -np.inf), dtype=np.float64)


def energy(logits: Float64Array) -> Float64Array:
    """The energy score ``-logsumexp(logits)`` per row (Liu et al. 2020, ``T = 1``): low for
    inputs the head answers with large logits, higher = more novel. ``+inf`` if no class
    is trained.

    >>> energy(np.array([[0.0, 0.0, -np.inf]])).round(4).tolist()
    [-0.6931]
    """
    top = np.max(logits, axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        lse = safe + np.log(np.exp(logits - safe[:, None]).sum(axis=1))
    return np.asarray(-lse, dtype=np.float64)
