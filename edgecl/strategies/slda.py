"""Deep Streaming LDA (Hayes & Kanan, CVPR-W 2020) on latents, in NumPy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.strategies.base import frozen_predictor
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

_BLOCK = 32  # rows per block of the triangular solves


class _Cholesky:
    """Lower Cholesky factor ``L`` of a symmetric positive definite matrix, with solves.

    NumPy has no triangular solve; by blocks of rows it becomes matrix products with the
    inverted diagonal blocks, about as fast here as LAPACK's (SciPy is no dependency).
    """

    def __init__(self, a: Float64Array) -> None:
        self.l = np.asarray(np.linalg.cholesky(a), dtype=np.float64)
        n = len(a)
        self.blocks = [(i, min(i + _BLOCK, n)) for i in range(0, n, _BLOCK)]
        self.inv = [np.linalg.inv(self.l[i:j, i:j]) for i, j in self.blocks]

    def solve_lower(self, b: Float64Array) -> Float64Array:
        """``x`` with ``L x = b``."""
        x = np.empty_like(b)
        for (i, j), inv in zip(self.blocks, self.inv, strict=True):
            x[i:j] = inv @ (b[i:j] - self.l[i:j, :i] @ x[:i])
        return x

    def solve_upper(self, b: Float64Array) -> Float64Array:
        """``x`` with ``Lᵀ x = b``."""
        x = np.empty_like(b)
        for (i, j), inv in zip(reversed(self.blocks), reversed(self.inv), strict=True):
            x[i:j] = inv.T @ (b[i:j] - self.l[j:, i:j].T @ x[j:])
        return x

    def inverse(self) -> Float64Array:
        """``(L Lᵀ)⁻¹``, from ``L⁻¹`` (lower triangular: only its lower blocks are solved)."""
        n = len(self.l)
        linv = np.zeros((n, n))
        for (i, j), inv in zip(self.blocks, self.inv, strict=True):
            linv[i:j, :j] = -inv @ (self.l[i:j, :i] @ linv[:i, :j])
            linv[i:j, i:j] += inv
        return np.asarray(linv.T @ linv, dtype=np.float64)


class StreamingLDA:
    """Running class means and one shared covariance, updated one sample at a time.

    For sample ``z`` of class ``y``, with ``t`` samples seen before it (the paper's
    update): ``Δ = t/(t+1) (z − μ_y)(z − μ_y)ᵀ``, ``Σ ← (t Σ + Δ)/(t+1)``, then ``μ_y``
    takes ``z`` into its running mean. A batch is folded in exactly as that sequence of
    single updates, with one matrix product. Predictions use the precision
    ``Λ = ((1 − ε) Σ + ε I)⁻¹`` (``ε = shrinkage``): scores ``W z + b`` with
    ``W = Λ μ`` and ``b = −½ μᵀ Λ μ``, softmaxed.

    ``W`` and ``b`` come from a Cholesky factor ``L`` of the shrunk covariance: with
    ``Y = L⁻¹ μ``, ``b = −½ |Y|²`` and ``W = L⁻ᵀ Y``; ``Λ`` itself is never formed (the
    factor is half the arithmetic of an LU solve, a sixth of an explicit inverse). They
    are recomputed once per change: when predicting, or already at the end of a
    ``learn_many`` if the previous ones were used by a prediction, as the
    :class:`~edgecl.Learner`'s test-then-train does before every learn. A prediction
    right after learning then finds them ready, and a run of ``learn_many`` calls with
    no prediction between them pays nothing.

    An exact rank-one (Sherman–Morrison) update of the factor or of ``Λ`` does not
    apply: each sample scales ``Σ`` by ``t/(t+1)`` while ``ε I`` stays, so the shrunk
    matrix also changes by the full-rank ``ε I/(t+1)``. Only an eigendecomposition
    follows both changes exactly, and it costs far more than the factor it would save.

    ``covariance_samples``: ``None`` keeps the covariance plastic (updated by every
    sample); an integer stops updating it after that many samples, as the paper's
    fixed-covariance variant does after its base initialisation.

    ``precision_refresh``: with 1 (the paper) every prediction after an update uses the
    exact precision. With ``n > 1`` the precision ``Λ`` is formed, kept and reused until
    ``n`` more samples have changed the covariance; the means stay exact (``W = Λ μ``
    is only O(D²K)). A kept, stale precision is part of the state, so a restored head
    predicts the same.

    Differences from the paper's code: the first sample of a class has no mean to
    deviate from, so it adds nothing to ``Σ`` (the reference code compares it with a
    zero-initialised mean, which adds ``z zᵀ`` of every new class to the shared
    covariance); the precision comes from a Cholesky factor rather than a
    pseudo-inverse (the shrunk covariance is positive definite); a class never trained
    scores ``−inf`` (probability 0).

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
        self._predicted = False  # W, b were used since the last learn_many
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
        if self._predicted:  # the next prediction is likely near: be ready for it
            self._predicted = False
            self._weights()

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
            mu = np.ascontiguousarray(self.means.T)
            if not self._keeps_precision:
                self._w, self._b = _solve_weights(self._shrunk_sigma(), mu)
            else:
                lam = self._lam
                if lam is None or self.n_updates - self._lam_at >= self.precision_refresh:
                    lam = _precision(self._shrunk_sigma())
                    self._lam, self._lam_at = lam, self.n_updates
                self._w = np.ascontiguousarray(lam @ mu)
                self._b = -0.5 * np.sum(mu * self._w, axis=0)
        return self._w, self._b

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        x = check_latents(z, self.dim)
        trained = self.counts > 0
        if self.dim == 0:
            return masked_softmax(np.zeros((len(x), len(self.counts))), trained)
        w, b = self._weights()
        self._predicted = True
        return masked_softmax(x.astype(np.float64) @ w + b, trained)

    def predictor(self) -> Callable[[FloatArray], FloatArray]:
        """The current head, frozen (see :func:`~edgecl.strategies.base.frozen_predictor`):
        its weights are computed now, so the copy never touches the covariance."""
        if self.dim:
            self._weights()
        return frozen_predictor(self, "means", "counts")

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
        self._predicted = False


def _solve_weights(a: Float64Array, mu: Float64Array) -> tuple[Float64Array, Float64Array]:
    """``W = A⁻¹ μ`` and ``b = −½ diag(μᵀ A⁻¹ μ)`` for symmetric positive definite ``A``."""
    try:
        chol = _Cholesky(a)
    except np.linalg.LinAlgError:
        # Positive definite in exact arithmetic; rounding can break that for huge latents.
        w = np.asarray(np.linalg.solve(a, mu), dtype=np.float64)
        return w, -0.5 * np.sum(mu * w, axis=0)
    y = chol.solve_lower(mu)
    return chol.solve_upper(y), -0.5 * np.einsum("ij,ij->j", y, y)


def _precision(a: Float64Array) -> Float64Array:
    """``A⁻¹`` for symmetric positive definite ``A``."""
    try:
        return _Cholesky(a).inverse()
    except np.linalg.LinAlgError:
        return np.asarray(np.linalg.inv(a), dtype=np.float64)
