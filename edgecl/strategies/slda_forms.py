"""Streaming LDA's covariance and the precision kept from it, in its three forms.

:class:`~edgecl.strategies.slda.StreamingLDA` keeps ``Σ`` as a matrix plus the rank-one
terms not yet folded into it, and the precision ``(S + γ I)⁻¹`` (``S = t Σ``) current
with every term: exactly for every ``γ`` while ``S`` has few terms
(:class:`~edgecl.strategies.lda_few.LowRankPrecision`), in the terms' space while they
are fewer than ``ROW_SHARE · D`` (:class:`~edgecl.strategies.lda_rows.RowPrecision`),
then explicitly (:class:`~edgecl.strategies.lda_update.KeptPrecision`), each factorised
again only when its correction for ``γ``'s growth would pass ``tolerance``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.strategies import lda_rows as lr
from edgecl.strategies.lda_drift import below, below_rows
from edgecl.strategies.lda_few import LowRankPrecision
from edgecl.strategies.lda_update import KeptPrecision
from edgecl.strategies.linear import Float64Array
from edgecl.types import IntArray

# A batch at least this large is folded into Σ and the precision factorised again:
# its rank-one updates (O(D² m + D m²)) would cost more than one factorisation.
REFACTOR_BATCH = 256


class PrecisionForms:
    """``Σ`` with its pending terms, and the kept precision (a mixin of the head)."""

    shrinkage: float
    tolerance: float
    covariance_samples: int | None
    means: Float64Array
    counts: IntArray
    n_updates: int  # samples folded into sigma (the paper's t)
    _sigma: Float64Array
    _sigma_at: int  # n_updates that _sigma holds; the rest wait in _pending
    _pending: list[Float64Array]  # rows sqrt(w) d of later updates
    _few: LowRankPrecision | None  # exact while S has few terms
    _rows: lr.RowPrecision | None  # then while it has fewer than ROW_SHARE · D
    _kept: KeptPrecision | None  # from then on
    _last: tuple[Float64Array, Any] | None  # x predicted, its product(s)

    # A⁻¹ of a symmetric positive definite A, a fresh factorisation (the head's method).
    _inverse: Callable[[Float64Array], Float64Array]

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def sigma(self) -> Float64Array:
        """The covariance ``Σ`` (pending rank-one terms folded in first)."""
        if self._pending:
            d = np.concatenate(self._pending)
            sigma = d.T @ d  # in place from here: each fresh D×D array costs page faults
            sigma += self._sigma_at * self._sigma
            sigma /= self.n_updates
            self._sigma = sigma  # replaced, not changed: a snapshot may hold the old one
            self._pending, self._sigma_at = [], self.n_updates
        return self._sigma

    def _follow(
        self, x: Float64Array, labels: IntArray, dev: Float64Array, w: Float64Array, after: Any
    ) -> None:
        """Keep the precision current with this batch's rank-one terms."""
        few, kept, rows = self._few, self._kept, self._rows
        small = len(x) <= REFACTOR_BATCH
        if few is not None:
            terms = (w > 0.0) & dev.any(axis=1)
            if len(few.d) + int(terms.sum()) > 2 * few.MAX_ROWS:
                self._few = None  # many at once: factorise Σ when next needed
                return
            few.add(dev[terms] * np.sqrt(w[terms])[:, None])
            if few.full:  # from now on a kept inverse costs less (explicit from ¾ D)
                keep = len(few.d) < lr.ROW_SHARE * self.dim
                self._rows = lr.RowPrecision(few.d, few.gram, after) if keep else None
                self._few = None
        elif rows is not None and small:
            rows.add(dev, w, labels, self.counts, after, self._cached(x) or rows.project(x))
            if rows.r > lr.ROW_SHARE * self.dim:  # from here the explicit form costs less
                gamma = self._ahead(below(0.98 * self.tolerance))
                base = rows.explicit(gamma)
                self._kept = None if base is None else KeptPrecision(base, gamma, after)
                self._rows = self._last = None
        elif kept is not None and small:
            px = self._cached(x)
            kept.learn(kept.apply(x) if px is None else px, dev, w, labels, self.counts, after)
        else:  # a large batch: one explicit factorisation costs less
            self._kept = self._rows = None

    def _gamma(self, n_updates: int) -> float:
        """``γ = ε t/(1 − ε)``: the ridge of ``S`` that the shrinkage amounts to."""
        return self.shrinkage * max(n_updates, 1) / (1.0 - self.shrinkage)

    def _cached(self, x: Float64Array) -> Any:
        """The last prediction's product(s) with the precision, if it was of ``x``."""
        last = self._last
        if last is not None and last[0].shape == x.shape and np.array_equal(last[0], x):
            return last[1]
        return None

    def _ready(self) -> None:
        """Factorise again if nothing is kept or the drift correction is out of bounds."""
        rows, gamma = self._rows, self._gamma(self.n_updates)
        if self._few is not None or self.shrinkage == 1.0:
            return
        if rows is not None:
            if rows.drift(gamma)[1] > self.tolerance:
                ahead = below_rows(0.98 * self.tolerance, rows.spread())
                rows.refactor(self._ahead(ahead), self._inverse)
                self._last = None
        elif self._kept is None or self._kept.drift(gamma)[2] > self.tolerance:
            self._refactor()

    def _ahead(self, below: float, bound: float | None = None) -> float:
        """The ``γ₀`` to factorise for: a little ahead, so the correction spans growth on
        both sides of it (half the factorisations; 0.98 of the way, so rounding never
        puts it past the bound at once); now if the covariance is frozen.

        ``ρ = δ/γ₀`` reaches ``below`` at ``γ₀ = γ/(1 + below)``; with ``bound`` ``≥ b``
        of the coming factorisation (:class:`KeptPrecision`'s ``ρ = δ b``), ``γ₀ = γ −
        below/bound`` keeps ``ρ ≥ below`` too, and is further ahead when ``b < 1/γ``."""
        t = max(self.n_updates, 1)
        gamma = self._gamma(t)
        if self.covariance_samples is not None and t >= self.covariance_samples:
            return gamma
        ahead = gamma / (1.0 + below)
        return ahead if bound is None else max(ahead, gamma - below / bound)

    def _refactor(self) -> None:
        sigma, dim, t = self.sigma, self.dim, max(self.n_updates, 1)
        # S and γ₀ only grow, so the old factorisation's ‖P‖_F bounds the new one's.
        frob = None if self._kept is None else self._kept.frob
        gamma = self._ahead(below(0.98 * self.tolerance), frob)
        a = (1.0 - self.shrinkage) / t
        shrunk = (1.0 - self.shrinkage) * sigma
        shrunk.flat[:: dim + 1] += a * gamma
        base = self._inverse(shrunk)
        base *= a  # (S + γI)⁻¹ = a ((1 − ε) Σ + a γ I)⁻¹, S = t Σ
        self._kept = KeptPrecision(base, gamma, self.means)
        self._last = None
