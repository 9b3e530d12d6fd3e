"""Nearest class mean: a running mean per class, predict the closest."""

from __future__ import annotations

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import frozen_copy, masked_logits
from edgecl.strategies.linear import (
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
)
from edgecl.types import Float64Array, FloatArray, IntArray, State


class NCM(Configurable):
    """Nearest class mean on latents; scores are a softmax over negative distances.

    Classes never trained score ``-inf`` (probability 0).

    >>> s = NCM()
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[0.0, 0.0], [4.0, 4.0]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[3.5, 3.9]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "ncm"
    replay_size = 0

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = positive_float("temperature", temperature)
        self.means = np.zeros((0, 0), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)

    def add_classes(self, n_classes: int) -> None:
        self.means = grow_rows(self.means, n_classes)
        self.counts = grow_rows(self.counts, n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = check_batch(z, y, len(self.counts), self.means.shape[1])
        if self.means.shape[1] == 0 and len(x):
            self.means = np.zeros((len(self.counts), x.shape[1]))
        for c in np.unique(labels):
            zc = x[labels == c].astype(np.float64)
            n_old, n_new = self.counts[c], len(zc)
            self.means[c] = (self.means[c] * n_old + zc.sum(axis=0)) / (n_old + n_new)
            self.counts[c] = n_old + n_new

    def distances(self, z: FloatArray) -> Float64Array:
        """Euclidean distance of each latent to each class mean ``(N, n_classes)``."""
        x = check_latents(z, self.means.shape[1]).astype(np.float64)
        if self.means.shape[1] == 0:
            return np.zeros((len(x), len(self.counts)))
        # Squared distances via |z|^2 - 2 z.m + |m|^2.
        d = (
            np.sum(x**2, axis=1, keepdims=True)
            - 2.0 * x @ self.means.T
            + np.sum(self.means**2, axis=1)[None, :]
        )
        return np.asarray(np.sqrt(np.maximum(d, 0.0)), dtype=np.float64)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(-self.distances(z) / self.temperature, self.counts > 0)

    def logits_many(self, z: FloatArray) -> Float64Array:
        """``-distance / temperature`` to each trained class's mean."""
        return masked_logits(-self.distances(z) / self.temperature, self.counts > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """Distance to the nearest trained class mean (``inf`` before any class)."""
        d = masked_logits(-self.distances(z), self.counts > 0)
        return np.asarray(-d.max(axis=1, initial=-np.inf), dtype=np.float64)

    def snapshot(self) -> NCM:
        """The current head, frozen (see :func:`~edgecl.strategies.base.frozen_copy`)."""
        return frozen_copy(self, "means", "counts")

    def state_dict(self) -> State:
        return {"means": self.means.copy(), "counts": self.counts.copy()}

    def load_state_dict(self, state: State) -> None:
        self.means = np.array(state["means"], dtype=np.float64)
        self.counts = np.array(state["counts"], dtype=np.int64)
