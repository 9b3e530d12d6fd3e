"""Shared pieces for head strategies: softmax and lazy input-dimension handling."""

from __future__ import annotations

import numpy as np

from edgecl.types import FloatArray


def softmax(logits: FloatArray) -> FloatArray:
    """Row-wise softmax, stable for large logits.

    >>> softmax(np.array([[0.0, 0.0]], dtype=np.float32)).tolist()
    [[0.5, 0.5]]
    """
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    e = np.exp(shifted)
    out: FloatArray = (e / np.sum(e, axis=1, keepdims=True)).astype(np.float32)
    return out


def flat(z: FloatArray) -> FloatArray:
    """Latents as ``(N, D)`` float32 (intermediate-cut latents are flattened)."""
    return np.ascontiguousarray(z.reshape(len(z), -1), dtype=np.float32)
