"""Deep Streaming LDA (Hayes & Kanan, CVPR-W 2020) on latents, in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecl.strategies.linear import (
    Float64Array,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
    positive_int,
)
from edgecl.types import FloatArray, IntArray, State


class StreamingLDA:
    """Running class means and one shared covariance, updated one sample at a time.

    For sample ``z`` of class ``y``, with ``t`` samples seen before it (the paper's
    update): ``Δ = t/(t+1) (z − μ_y)(z − μ_y)ᵀ``, ``Σ ← (t Σ + Δ)/(t+1)``, then ``μ_y``
    takes ``z`` into its running mean. A batch is folded in exactly as that sequence of
    single updates, with one matrix product. Predictions use the precision
    ``Λ = ((1 − ε) Σ + ε I)⁻¹`` (``ε = shrinkage``): scores ``W z + b`` with
    ``W = Λ μ`` and ``b = −½ μᵀ Λ μ``, softmaxed. ``W`` and ``b`` are recomputed only
    when predicting after an update, then cached.

    ``covariance_samples``: ``None`` keeps the covariance plastic (updated by every
    sample); an integer stops updating it after that many samples, as the paper's
    fixed-covariance variant does after its base initialisation.

    ``precision_refresh``: with 1 (the paper) every prediction after an update uses the
    exact precision, an O(D³) solve. With ``n > 1`` the precision is kept and reused
    until ``n`` more samples have changed the covariance; the means stay exact
    (``W = Λ μ`` is only O(D²K)). A daemon scoring every sample before learning it
    (test-then-train) pays the solve on every ``learn_one`` otherwise. A kept, stale
    precision is part of the state, so a restored head predicts the same.

    Differences from the paper's code: the first sample of a class has no mean to
    deviate from, so it adds nothing to ``Σ`` (the reference code compares it with a
    zero-initialised mean, which adds ``z zᵀ`` of every new class to the shared
    covariance); the precision comes from a linear solve rather than a pseudo-inverse
    (the shrunk covariance is positive definite); a class never trained scores ``−inf``
    (probability 0).

    >>> s = StreamingLDA()
    >>> s.add_classes(2)
    >>> z = np.array([[0, 0], [0.2, 0.1], [4, 4], [4.1, 3.8]], np.float32)
    >>> s.learn_many(z, np.array([0, 0, 1, 1]))
    >>> s.predict_proba_many(np.array([[3.5, 3.9]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "slda"
    replay_size = 0

    def __init__(
        self,
        shrinkage: float = 1e-4,
        covariance_samples: int | None = None,
        precision_refresh: int = 1,
    ) -> None:
        self.shrinkage = positive_float("shrinkage", shrinkage)
        if self.shrinkage > 1:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage!r}")
        self.covariance_samples = (
            None
            if covariance_samples is None
            else positive_int("covariance_samples", covariance_samples)
        )
        self.precision_refresh = positive_int("precision_refresh", precision_refresh)
        self.means = np.zeros((0, 0), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.sigma = np.zeros((0, 0), dtype=np.float64)
        self.n_updates = 0  # samples folded into sigma (the paper's t)
        self._w: Float64Array | None = None
        self._b: Float64Array | None = None
        # Kept precision and the n_updates it was computed at (see precision_refresh).
        self._lam: Float64Array | None = None
        self._lam_at = 0

    def options(self) -> dict[str, Any]:
        return {
            "shrinkage": self.shrinkage,
            "covariance_samples": self.covariance_samples,
            "precision_refresh": self.precision_refresh,
        }

    @property
    def _keeps_precision(self) -> bool:
        # Worth an explicit inverse only when it can be reused across updates.
        return self.precision_refresh > 1 or self.covariance_samples is not None

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def add_classes(self, n_classes: int) -> None:
        if n_classes > len(self.counts):
            self.means = grow_rows(self.means, n_classes)
            self.counts = grow_rows(self.counts, n_classes)
            self._w = self._b = None

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x32, labels = check_batch(z, y, len(self.counts), self.dim)
        if not len(labels):
            return
        x = x32.astype(np.float64)
        if self.dim == 0:
            self.means = np.zeros((len(self.counts), x.shape[1]))
            self.sigma = np.zeros((x.shape[1], x.shape[1]))
        # Deviation of each sample from its class mean just before it, in batch order.
        dev = np.zeros_like(x)
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            xc, n0 = x[idx], int(self.counts[c])
            csum = np.cumsum(xc, axis=0)
            before_sum = n0 * self.means[c] + np.vstack([np.zeros((1, x.shape[1])), csum[:-1]])
            before_n = n0 + np.arange(len(idx))
            dev[idx] = xc - before_sum / np.maximum(before_n, 1)[:, None]
            dev[idx[before_n == 0]] = 0.0
            self.means[c] = (n0 * self.means[c] + csum[-1]) / (n0 + len(idx))
            self.counts[c] = n0 + len(idx)
        self._update_sigma(dev)
        self._w = self._b = None

    def _update_sigma(self, dev: Float64Array) -> None:
        limit = self.covariance_samples
        n = len(dev) if limit is None else max(0, min(len(dev), limit - self.n_updates))
        if n == 0:
            return
        t0 = self.n_updates
        t = t0 + np.arange(n, dtype=np.float64)
        d = dev[:n]
        weighted = d * (t / ((t + 1.0) * (t0 + n)))[:, None]
        self.sigma *= t0 / (t0 + n)
        self.sigma += weighted.T @ d
        self.n_updates = t0 + n

    def _shrunk_sigma(self) -> Float64Array:
        a = (1.0 - self.shrinkage) * self.sigma
        a.flat[:: self.dim + 1] += self.shrinkage
        return a

    def _weights(self) -> tuple[Float64Array, Float64Array]:
        if self._w is None or self._b is None:
            if not self._keeps_precision:
                # Λ μ by a linear solve: the shrunk covariance is positive definite, and
                # a solve costs a third of an explicit (pseudo-)inverse.
                w = np.linalg.solve(self._shrunk_sigma(), self.means.T)
            else:
                lam = self._lam
                if lam is None or self.n_updates - self._lam_at >= self.precision_refresh:
                    lam = np.asarray(np.linalg.inv(self._shrunk_sigma()), dtype=np.float64)
                    self._lam, self._lam_at = lam, self.n_updates
                w = lam @ self.means.T
            self._w = np.ascontiguousarray(w)
            self._b = -0.5 * np.sum(self.means.T * w, axis=0)
        return self._w, self._b

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        x = check_latents(z, self.dim)
        trained = self.counts > 0
        if self.dim == 0:
            return masked_softmax(np.zeros((len(x), len(self.counts))), trained)
        w, b = self._weights()
        return masked_softmax(x.astype(np.float64) @ w + b, trained)

    def state_dict(self) -> State:
        return {
            "means": self.means.copy(),
            "counts": self.counts.copy(),
            "sigma": self.sigma.copy(),
            "n_updates": self.n_updates,
            # A stale kept precision cannot be recomputed from sigma: keep it.
            "precision": None if self._lam is None or not self._stale else self._lam.copy(),
            "precision_at": self._lam_at,
        }

    @property
    def _stale(self) -> bool:
        return self._lam_at != self.n_updates

    def load_state_dict(self, state: State) -> None:
        self.means = np.array(state["means"], dtype=np.float64)
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.sigma = np.array(state["sigma"], dtype=np.float64)
        self.n_updates = int(state["n_updates"])
        lam = state.get("precision")
        self._lam = None if lam is None else np.array(lam, dtype=np.float64)
        self._lam_at = int(state.get("precision_at", 0))
        self._w = self._b = None
