"""Streaming LDA's incremental pieces: running class means, and the inverse of a ridged
scatter matrix kept current as it grows by rank-one terms.

How :class:`~edgecl.strategies.slda.StreamingLDA` uses them. With the scatter ``S = t Σ``:
``Λ = c (S + γ I)⁻¹``, ``c = t/(1 − ε)``, ``γ = ε t/(1 − ε)``. Each sample adds a rank-one
term to ``S``, which a Sherman–Morrison update follows exactly in O(D²)
(:class:`KeptPrecision`), and ``Pμ`` is kept current with it; but ``γ`` grows with ``t``
(the shrinkage is relative to the normalised covariance), a full-rank change. The kept ``P =
(S + γ₀ I)⁻¹`` is for the ``γ₀`` of its last factorisation, and predictions correct it to
first order, ``(S + γ I)⁻¹ ≈ P − δ P²`` with ``δ = γ − γ₀``. Every eigenvalue of the
precision used is then within a factor ``1 − (δ p)²`` of the exact one, ``p ≤ ‖P‖₂``; when
``(δ ‖P‖₂)²`` (with a bound of ``‖P‖₂``) would pass ``tolerance`` the precision is
factorised again from ``Σ`` (a Cholesky factor), exactly. A prediction costs one product
with ``P`` per input (which the learn of the same input then reuses) and O(DK) more; a
learned sample O(D² + DK).
"""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import Float64Array
from edgecl.types import IntArray

FOLD_ROWS = 64  # rank-one terms kept apart before one matrix product folds them in


class KeptPrecision:
    """``P = (S + γ I)⁻¹`` for a scatter ``S`` that grows by terms ``w d dᵀ``, ``γ`` fixed.

    Each term is a Sherman–Morrison update, ``P ← P − β u uᵀ`` with ``u = P d`` and
    ``β = w / (1 + w dᵀ u)``: O(D²) arithmetic, never a factorisation. The terms are kept
    as rows ``U`` beside the matrix, ``P = base − Uᵀ diag(β) U``, and folded into
    ``base`` by one matrix product every :data:`FOLD_ROWS` terms, so a sample costs one
    read of ``base`` (to apply ``P``), not a write of it. ``base`` is replaced, never
    changed in place, and rows are only ever appended to ``U`` (a fold starts a new
    buffer): a shallow copy is a frozen snapshot.

    ``bound`` is an upper bound of ``‖P‖₂`` that holds for every later ``P`` too (adding
    to ``S`` only shrinks ``P``): the least of ``1/γ`` and the largest absolute row sum
    of the first ``base``.

    >>> s = np.array([[2.0, 0.0], [0.0, 0.0]])
    >>> kept = KeptPrecision(np.linalg.inv(s + np.eye(2)), gamma=1.0)
    >>> d = np.array([[1.0, 1.0]])
    >>> _ = kept.update(d, kept.apply(d), np.array([0.5]))
    >>> bool(np.allclose(kept.apply(np.eye(2)), np.linalg.inv(s + 0.5 * d.T @ d + np.eye(2))))
    True
    """

    def __init__(self, base: Float64Array, gamma: float) -> None:
        self.base = base
        self.gamma = gamma
        self._new_buffers()
        self.bound = min(1.0 / gamma, float(np.abs(base).sum(axis=1).max(initial=0.0)))

    def _new_buffers(self) -> None:
        self._u = np.empty((FOLD_ROWS, len(self.base)))
        self._beta = np.empty(FOLD_ROWS)
        self.k = 0

    @property
    def u(self) -> Float64Array:
        """The rank-one terms not folded yet, one row each."""
        return self._u[: self.k]

    @property
    def beta(self) -> Float64Array:
        return self._beta[: self.k]

    def apply(self, x: Float64Array) -> Float64Array:
        """``P`` applied to each row of ``x``."""
        px = x @ self.base
        if self.k:
            u = self.u
            px -= ((x @ u.T) * self.beta) @ u
        return np.asarray(px, dtype=np.float64)

    def update(
        self, d: Float64Array, pd: Float64Array, w: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        """Add ``Σ w_j d_j d_jᵀ`` to ``S`` in row order; ``pd`` is ``P d_j`` before any of
        them. Returns the rows ``u_j`` and the ``β_j`` of this batch's terms (rows whose
        ``w`` or ``d`` is zero add nothing and get ``β = 0``)."""
        m = len(d)
        u = np.zeros_like(pd)
        beta = np.zeros(m)
        for j in range(m):
            if w[j] == 0.0 or not d[j].any():
                continue
            # P_{j-1} d_j: the batch's earlier terms correct P d_j from before the batch.
            u[j] = pd[j] - (beta[:j] * (u[:j] @ d[j])) @ u[:j]
            beta[j] = w[j] / (1.0 + w[j] * float(d[j] @ u[j]))
        for j in np.flatnonzero(beta).tolist():
            if self.k == FOLD_ROWS:
                self.base = self.base - (self.u.T * self.beta) @ self.u
                self._new_buffers()
            self._u[self.k], self._beta[self.k] = u[j], beta[j]
            self.k += 1
        return u, beta


class LowRankPrecision:
    """``(S + γ I)⁻¹`` for a scatter of few terms, ``S = Dᵀ D``, exact for every ``γ``.

    By Woodbury, ``(S + γ I)⁻¹ y = (y − Dᵀ (γ I + D Dᵀ)⁻¹ D y) / γ``: O(D r) per input
    for ``r`` rows, however ``γ`` moves, which is what a head that has seen a handful of
    samples needs. Past :data:`MAX_ROWS` rows the explicit matrix (:meth:`matrix`) and
    :class:`KeptPrecision` cost less. Rows are only ever appended.

    >>> low = LowRankPrecision(2)
    >>> low.add(np.array([[1.0, 1.0]]))
    >>> s = np.array([[1.0, 1.0], [1.0, 1.0]])
    >>> bool(np.allclose(low.apply(np.eye(2), 0.5), np.linalg.inv(s + 0.5 * np.eye(2))))
    True
    """

    MAX_ROWS = 96

    def __init__(self, dim: int) -> None:
        self.d = np.zeros((0, dim))
        self.gram = np.zeros((0, 0))

    def add(self, rows: Float64Array) -> None:
        cross = rows @ self.d.T
        self.gram = np.block([[self.gram, cross.T], [cross, rows @ rows.T]])
        self.d = np.concatenate([self.d, rows])

    @property
    def full(self) -> bool:
        return len(self.d) > self.MAX_ROWS

    def apply(self, y: Float64Array, gamma: float) -> Float64Array:
        """``(S + γ I)⁻¹`` applied to each row of ``y``."""
        if not len(self.d):
            return y / gamma
        inner = self.gram.copy()
        inner.flat[:: len(inner) + 1] += gamma
        coef = np.linalg.solve(inner, self.d @ y.T)
        return np.asarray((y - coef.T @ self.d) / gamma, dtype=np.float64)

    def matrix(self, gamma: float) -> Float64Array:
        """``(S + γ I)⁻¹`` itself."""
        return self.apply(np.eye(self.d.shape[1]), gamma)


def running_means(
    rows: Float64Array, labels: IntArray, base: Float64Array, counts: IntArray
) -> tuple[Float64Array, Float64Array]:
    """For each row, its class's running mean just before it (``base[c]`` standing for
    ``counts[c]`` earlier rows; a class's first row gets itself, so it deviates by
    zero), and ``base`` with every row taken in. Linear in ``rows`` and ``base``: on
    ``P x`` and ``P μ`` it gives ``P`` of the same means.

    >>> before, after = running_means(
    ...     np.array([[1.0], [3.0]]), np.array([0, 0]), np.array([[0.0]]), np.array([0])
    ... )
    >>> before.tolist(), after.tolist()
    ([[1.0], [1.0]], [[2.0]])
    """
    if len(rows) <= 32:  # small batches: one running mean per row beats cumulative sums
        before, after, n = rows.copy(), base.copy(), counts.copy()
        for j, c in enumerate(labels.tolist()):
            if n[c]:
                before[j] = after[c]
            after[c] = (n[c] * after[c] + rows[j]) / (n[c] + 1)
            n[c] += 1
        return before, after
    before, after = rows.copy(), base.copy()
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n0, rc = int(counts[c]), rows[idx]
        csum = np.cumsum(rc, axis=0)
        before_sum = n0 * base[c] + np.vstack([np.zeros((1, rows.shape[1])), csum[:-1]])
        before_n = n0 + np.arange(len(idx))
        seen = before_n > 0
        before[idx[seen]] = before_sum[seen] / before_n[seen, None]
        after[c] = (n0 * base[c] + csum[-1]) / (n0 + len(idx))
    return before, after
