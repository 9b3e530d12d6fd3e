"""Streaming LDA's precision while the scatter has fewer terms than dimensions, kept in the
space of its terms, where a new ``γ`` costs an ``r × r`` factorisation rather than a
``D × D`` one.

With the rows ``D`` (``r × D``, ``S = Dᵀ D``) and ``G = D Dᵀ``, Woodbury gives
``(S + γ I)⁻¹ = (I − Dᵀ (G + γ I)⁻¹ D)/γ``: exact on the null space of ``S`` whatever
``γ`` is, which is where the explicit precision drifts most. ``M = (G + γ₀ I)⁻¹`` is kept
for the ``γ₀`` of its last factorisation, grown by a bordered (Schur complement) term per
new row, and corrected for ``δ = γ − γ₀`` as ``(G + γ I)⁻¹ ≈ M − δ' M²`` with the ``δ'``
of least largest relative error (:func:`~edgecl.strategies.lda_drift.row_drift`): with
``ρ = δ/γ₀`` every eigenvalue of the precision used is within a relative ``α ρ²/((1 + α
ρ)(1 + ρ))``, ``α = 3 − 2√2``, of the exact one (a first-order ``δ' = δ`` would allow
``ρ²/(4 (1 + ρ))``), and within ``q ρ²/((1 + q ρ)(1 + ρ))`` with a ``q`` far below ``α``
while a kept bound ``F ≥ ‖M‖₂`` shows no eigenvalue of ``G`` near ``γ₀``
(:func:`~edgecl.strategies.lda_drift.spread`; usual while ``r`` is well below ``D``, and it
cut the factorisations of the benchmark's 100–1000 samples from 15 to 4);
past ``tolerance``, ``M`` is factorised again (``r³``). A
prediction costs ``D x`` and ``M D x``: ``r D + r²`` per input, less than the ``D²`` of
an explicit precision while ``r`` is below about ``0.6 D``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.strategies.cholesky import Cholesky
from edgecl.strategies.lda_drift import row_drift, spread
from edgecl.strategies.lda_update import running_means
from edgecl.strategies.linear import Float64Array, grow_rows
from edgecl.types import IntArray

#: Terms, as a share of ``D``, up to which ``slda`` keeps this form: past ``0.6 D`` a
#: prediction costs more than with the explicit precision, but a drift refresh far less.
ROW_SHARE = 0.75
#: Bordered rows kept apart before one product folds them into ``M``: each prediction
#: reads them twice, and ``M`` is far smaller than ``D × D``, so fewer than the explicit
#: form's ``FOLD_ROWS``.
BORDER_ROWS = 64


class RowPrecision:
    """``(S + γ I)⁻¹`` in the space of the scatter's rows (see the module text).

    Buffers have room for more rows than held; rows, the Gram matrix's new entries and
    the bordered terms are only ever written past what a shallow copy holds, and the
    rest is replaced rather than changed, so a shallow copy is a frozen snapshot.
    ``a = D μ`` and ``b = M D μ`` (one row per class) are kept current with the means.

    >>> rng = np.random.default_rng(0)
    >>> rows, mu = rng.normal(size=(5, 8)), rng.normal(size=(2, 8))
    >>> kept = RowPrecision(rows, rows @ rows.T, mu)
    >>> kept.refactor(0.5, np.linalg.inv)
    >>> x = rng.normal(size=(1, 8))
    >>> dx, y = kept.project(x)
    >>> exact = np.linalg.inv(rows.T @ rows + 0.5 * np.eye(8))
    >>> used = x @ mu.T - dx @ kept.b.T  # γ x (S + γ I)⁻¹ μᵀ at γ = γ₀
    >>> bool(np.allclose(used, 0.5 * x @ exact @ mu.T))
    True
    """

    def __init__(self, rows: Float64Array, gram: Float64Array, means: Float64Array) -> None:
        r, dim = rows.shape
        cap = max(2 * r, 64)
        self.d = np.zeros((cap, dim))
        self.d[:r] = rows
        self.g = np.zeros((cap, cap))
        self.g[:r, :r] = gram
        self.r = r
        self.gamma = 0.0
        self.m = np.zeros((r, r))  # M for the first len(m) rows; the terms border it
        self.a = means @ rows.T
        self.b = np.zeros_like(self.a)
        self.bound = float("inf")  # F ≥ ‖M‖_F ≥ ‖M‖₂ (see add)
        self._new_terms()

    def spread(self) -> float:
        """:func:`~edgecl.strategies.lda_drift.spread`'s ``q`` now: ``‖M‖₂ ≤ F`` puts
        every eigenvalue ``s`` of ``G`` at ``s + γ₀ ≥ 1/F``, so ``x = γ₀/(s + γ₀) ≤ γ₀
        F``."""
        return spread(min(1.0, self.gamma * self.bound))

    def drift(self, gamma: float) -> tuple[float, float]:
        """``δ'`` of ``(G + γ I)⁻¹ ≈ M − δ' M²`` now, and its relative error."""
        if not self.gamma:
            return gamma, float("inf")
        delta = gamma - self.gamma
        shrink, err = row_drift(delta / self.gamma, self.spread())
        return delta * shrink, err

    def grow(self, n_classes: int) -> None:
        """Rows for new classes (mean 0: ``D·0``)."""
        self.a, self.b = grow_rows(self.a, n_classes), grow_rows(self.b, n_classes)

    def _new_terms(self) -> None:
        self._v = np.zeros((BORDER_ROWS, len(self.g)))  # [M e; −1] of each bordered row
        self._s = np.zeros(BORDER_ROWS)  # 1/schur of each
        self.k = 0

    def refactor(self, gamma: float, inverse: Callable[[Float64Array], Float64Array]) -> None:
        """``M = (G + γ I)⁻¹`` afresh (``inverse`` of a symmetric positive definite)."""
        self.gamma = gamma
        self.m = np.asarray(inverse(self._ridged(gamma)), dtype=np.float64)
        self.bound = float(np.sqrt(np.vdot(self.m, self.m)))
        self._new_terms()
        self.b = self.a @ self.m

    def _ridged(self, gamma: float) -> Float64Array:
        """``G + γ I``. Rows added since the first ``r`` are written into ``G``'s lower
        half only (a row, not also a column strided across the whole buffer)."""
        r = self.r
        low = np.tril(self.g[:r, :r])
        ridged = low + np.tril(low, -1).T
        ridged.flat[:: r + 1] += gamma
        return ridged

    def explicit(self, gamma: float) -> Float64Array | None:
        """``(S + γ I)⁻¹ = (I − Kᵀ K)/γ``, ``K = C⁻¹ D``, ``C Cᵀ = G + γ I`` (Cholesky):
        the explicit precision from the terms, ``r² D + D² r/2`` arithmetic rather than a
        ``D × D`` factorisation and inverse (``None`` if rounding broke the factorisation).
        Its rounding is the terms' form's own (``1 − s/(s + γ)`` on an eigenvalue ``s``)."""
        r, dim = self.d[: self.r].shape
        ridged = self._ridged(gamma)
        try:
            k = Cholesky(ridged).solve_lower(self.d[:r])
        except np.linalg.LinAlgError:
            return None
        out = k.T @ k  # one symmetric product
        out *= -1.0 / gamma
        out.flat[:: dim + 1] += 1.0 / gamma
        return out

    def _apply(self, e: Float64Array) -> Float64Array:
        """``M e`` for each row of ``e`` (``r`` columns)."""
        n = len(self.m)
        out = np.zeros_like(e)
        out[:, :n] = e[:, :n] @ self.m
        if self.k:
            v, s = self._v[: self.k, : e.shape[1]], self._s[: self.k]
            out += ((e @ v.T) * s) @ v
        return out

    def project(self, x: Float64Array) -> tuple[Float64Array, Float64Array]:
        """``D x`` and ``M D x`` for each row of ``x``."""
        dx = x @ self.d[: self.r].T
        return dx, self._apply(dx)

    def scores(
        self,
        x: Float64Array,
        mu: Float64Array,
        delta: float,
        eps: float,
        quadratic: bool,
        projected: tuple[Float64Array, Float64Array] | None = None,
    ) -> tuple[Float64Array, Float64Array | None, tuple[Float64Array, Float64Array]]:
        """The scores ``μᵀ Λ x − ½ μᵀ Λ μ`` (and ``xᵀ Λ x`` if asked) with ``ε Λ = I − Dᵀ
        (M − δ M²) D`` (``δ``: :meth:`drift`'s ``δ'``); also ``(D x, M D x)`` for a learn
        to reuse (``projected``: that pair from a previous call on ``x``, to reuse here)."""
        dx, y = self.project(x) if projected is None else projected
        a, b = self.a, self.b
        bias = np.sum(mu * mu, axis=1) - np.sum(a * b, axis=1) + delta * np.sum(b * b, axis=1)
        scores = (x @ mu.T - dx @ b.T + delta * (y @ b.T) - 0.5 * bias) / eps
        quad = None
        if quadratic:
            xx, yy = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
            quad = (xx - np.einsum("ij,ij->i", dx, y) + delta * yy) / eps
        return scores, quad, (dx, y)

    def add(
        self,
        dev: Float64Array,
        w: Float64Array,
        labels: IntArray,
        counts: IntArray,
        after: Float64Array,
        projected: tuple[Float64Array, Float64Array],
    ) -> None:
        """Add the rows ``√w dev`` (the batch's deviations from their class's running
        mean, ``projected`` its inputs' ``(D x, M D x)``), then the means move to
        ``after``."""
        dx, y = projected
        if len(dev) == 1:
            c = int(labels[0])
            self._add_one(dev[0], float(w[0]), c, int(counts[c]), after, dx[0], y[0])
            return
        a_before, a_after = running_means(dx, labels, self.a, counts)
        b_before, b_after = running_means(y, labels, self.b, counts)
        keep = (w > 0.0) & dev.any(axis=1)
        root = np.sqrt(w[keep])[:, None]
        e, de, me = dev[keep] * root, (dx - a_before)[keep] * root, (y - b_before)[keep] * root
        cross = e @ e.T
        r0, m = self.r, len(e)
        self._reserve(r0 + m)
        borders: list[tuple[Float64Array, float]] = []  # this batch's, in order
        for j in range(m):
            n = r0 + j
            full = np.concatenate([de[j], cross[j, :j]])
            v = np.zeros(n)
            v[:r0] = me[j]  # M e_j as it was before the batch
            for vi, si in borders:  # and the batch's earlier rows, bordered in since
                v[: len(vi)] += vi * (si * float(vi @ full[: len(vi)]))
            schur = cross[j, j] + self.gamma - float(full @ v)
            term = np.append(v, -1.0)
            # ‖M + s t tᵀ‖²_F = ‖M‖²_F + 2 s vᵀ M v + s² ‖t‖⁴, and vᵀ M v ≤ F ‖v‖².
            vv, f = float(v @ v), self.bound
            self.bound = float(np.sqrt(f * f + (2.0 * f * vv + (vv + 1.0) ** 2 / schur) / schur))
            borders.append((term, 1.0 / schur))
            if self.k == BORDER_ROWS:
                self._fold(n)
            self._v[self.k, : n + 1], self._s[self.k] = term, 1.0 / schur
            self.k += 1
            self.d[n] = e[j]
            self.g[n, :n], self.g[n, n] = full, cross[j, j]  # the lower half: see _ridged
        self.r = r0 + m
        new_a = np.concatenate([a_after, after @ e.T], axis=1)
        new_b = np.zeros_like(new_a)
        new_b[:, :r0] = b_after
        for vi, si in borders:
            new_b[:, : len(vi)] += np.outer((new_a[:, : len(vi)] @ vi) * si, vi)
        self.a, self.b = new_a, new_b

    def _add_one(
        self, dev: Float64Array, w: float, c: int, n: int, after: Float64Array, dx: Any, y: Any
    ) -> None:
        """:meth:`add` of one sample of class ``c`` (``n`` earlier ones), without the
        batch's bookkeeping: the same bordering, with ``v = M e`` straight from ``y``."""
        a, b, r0 = self.a.copy(), self.b.copy(), self.r  # replaced, not changed
        a_c, b_c = a[c].copy(), b[c].copy()
        a[c], b[c] = (n * a_c + dx) / (n + 1), (n * b_c + y) / (n + 1)
        if not n or w == 0.0 or not dev.any():  # no term: only the means move
            self.a, self.b = a, b
            return
        root = np.sqrt(w)
        e, full, v = dev * root, (dx - a_c) * root, (y - b_c) * root
        ee = float(e @ e)
        schur = ee + self.gamma - float(full @ v)
        vv, f = float(v @ v), self.bound  # the bound as in add
        self.bound = float(np.sqrt(f * f + (2.0 * f * vv + (vv + 1.0) ** 2 / schur) / schur))
        self._reserve(r0 + 1)
        if self.k == BORDER_ROWS:
            self._fold(r0)
        self._v[self.k, :r0], self._v[self.k, r0], self._s[self.k] = v, -1.0, 1.0 / schur
        self.k += 1
        self.d[r0], self.g[r0, :r0], self.g[r0, r0] = e, full, ee
        self.r = r0 + 1
        new_a = np.empty((len(a), r0 + 1))
        new_a[:, :r0], new_a[:, r0] = a, after @ e
        new_b = np.zeros_like(new_a)
        new_b[:, :r0] = b
        term = np.append(v, -1.0)
        new_b += np.outer((new_a @ term) / schur, term)
        self.a, self.b = new_a, new_b

    def _reserve(self, rows: int) -> None:
        if rows <= len(self.g):
            return
        cap = 2 * rows
        d, g = np.zeros((cap, self.d.shape[1])), np.zeros((cap, cap))
        v = np.zeros((BORDER_ROWS, cap))
        d[: self.r], g[: self.r, : self.r] = self.d[: self.r], self.g[: self.r, : self.r]
        v[:, : self._v.shape[1]] = self._v
        self.d, self.g, self._v = d, g, v

    def _fold(self, n: int) -> None:
        """The pending borders (of the first ``n`` rows) into a new ``M`` (``1/schur >
        0``: a symmetric product)."""
        v = self._v[: self.k, :n] * np.sqrt(self._s[: self.k])[:, None]
        new = v.T @ v
        new[: len(self.m), : len(self.m)] += self.m
        self.m = new
        self._new_terms()
