"""Streaming LDA's precision while the scatter has a handful of terms: exact for every
``γ``, in the space of the terms (Woodbury)."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import Float64Array


class LowRankPrecision:
    """``(S + γ I)⁻¹`` for a scatter of few terms, ``S = Dᵀ D``, exact for every ``γ``.

    By Woodbury, ``(S + γ I)⁻¹ y = (y − Dᵀ (γ I + D Dᵀ)⁻¹ D y) / γ``: O(D r) per input
    for ``r`` rows, however ``γ`` moves, which is what a head that has seen a handful of
    samples needs. Past :data:`MAX_ROWS` rows a kept inverse costs less (a solve per
    prediction grows as ``r³``): :class:`~edgecl.strategies.lda_rows.RowPrecision`, then
    :class:`~edgecl.strategies.lda_update.KeptPrecision`. Rows are only ever appended.

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

    def scores(
        self, x: Float64Array, mu: Float64Array, gamma: float, c: float, quadratic: bool
    ) -> tuple[Float64Array, Float64Array | None]:
        """Scores with ``Λ = c (S + γ I)⁻¹`` (and ``xᵀ Λ x`` if asked), exactly."""
        lam_mu = c * self.apply(mu, gamma)
        quad = None
        if quadratic:
            quad = c * np.einsum("ij,ij->i", x, self.apply(x, gamma))
        return x @ lam_mu.T - 0.5 * np.sum(mu * lam_mu, axis=1), quad
