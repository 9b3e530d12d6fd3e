"""Nearest class mean: a running mean per class, predict the closest."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecl.strategies.base import flat, softmax
from edgecl.types import FloatArray, IntArray, State


class NCM:
    """Nearest class mean on latents; scores are a softmax over negative distances.

    >>> s = NCM()
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[0.0, 0.0], [4.0, 4.0]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[3.5, 3.9]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "ncm"
    replay_size = 0

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.means = np.zeros((0, 0), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def add_classes(self, n_classes: int) -> None:
        grow = n_classes - len(self.counts)
        if grow > 0:
            dim = self.means.shape[1]
            self.means = np.vstack([self.means, np.zeros((grow, dim))])
            self.counts = np.concatenate([self.counts, np.zeros(grow, dtype=np.int64)])

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        z = flat(z)
        if self.means.shape[1] == 0:
            self.means = np.zeros((len(self.counts), z.shape[1]))
        for c in np.unique(y):
            zc = z[y == c].astype(np.float64)
            n_old, n_new = self.counts[c], len(zc)
            self.means[c] = (self.means[c] * n_old + zc.sum(axis=0)) / (n_old + n_new)
            self.counts[c] = n_old + n_new

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        z = flat(z).astype(np.float64)
        # Squared distances via |z|^2 - 2 z.m + |m|^2; classes never seen score -inf.
        d = (
            np.sum(z**2, axis=1, keepdims=True)
            - 2.0 * z @ self.means.T
            + np.sum(self.means**2, axis=1)[None, :]
        )
        logits = -np.sqrt(np.maximum(d, 0.0)) / self.temperature
        logits[:, self.counts == 0] = -np.inf
        if np.all(self.counts == 0):
            logits[:] = 0.0
        return softmax(logits.astype(np.float32))

    def state_dict(self) -> State:
        return {"means": self.means, "counts": self.counts}

    def load_state_dict(self, state: State) -> None:
        self.means = np.asarray(state["means"], dtype=np.float64)
        self.counts = np.asarray(state["counts"], dtype=np.int64)
