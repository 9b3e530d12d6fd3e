"""Streaming LDA's incremental pieces: running class means, and the inverse of a ridged
scatter matrix kept current as it grows by rank-one terms.

How :class:`~edgecl.strategies.slda.StreamingLDA` uses them. With the scatter ``S = t Σ``:
``Λ = c (S + γ I)⁻¹``, ``c = t/(1 − ε)``, ``γ = ε t/(1 − ε)``. Each sample adds a rank-one
term to ``S``, which a Sherman–Morrison update follows exactly in O(D²)
(:class:`KeptPrecision`), and ``Pμ`` is kept current with it; but ``γ`` grows with ``t``
(the shrinkage is relative to the normalised covariance), a full-rank change. The kept ``P =
(S + γ₀ I)⁻¹`` is for the ``γ₀`` of its last factorisation, and predictions correct it with
the polynomial ``β (P − δ' P²)``, ``δ = γ − γ₀``, that is closest to the exact
``(S + γ I)⁻¹ = P (I + δ P)⁻¹`` in relative terms over every eigenvalue ``p ≤ b`` of ``P``
(``b`` a bound of ``‖P‖₂``; Chebyshev's equioscillation, see
:func:`~edgecl.strategies.lda_drift.drift`): with ``ρ = δ
b`` every eigenvalue of the precision used is within a relative ``ρ²/(8(1 + ρ) + ρ²)`` of
the exact one, about an eighth of the plain first-order term's ``ρ²``. When that would pass
``tolerance`` the precision is factorised again from ``Σ`` (a Cholesky factor), exactly,
for a ``γ₀`` ahead of ``γ`` (so one factorisation spans growth on both sides of it). ``b``
is the least of ``1/γ₀``, ``P``'s largest absolute row sum and its Frobenius norm (well
below ``1/γ₀`` once ``S`` has no eigenvalue near 0, which lets ``γ`` move further).

Memory traffic per learned sample, with ``P`` of ``8 D²`` bytes (13.1 MB at ``D = 1280``):

- the test-then-train prediction reads half of ``P`` (its product with the input: one
  triangle where :mod:`~edgecl.strategies.symv` finds a symmetric product, all of ``P``
  elsewhere), which the learn of the same input reuses (``u = P d`` is that product less
  the kept ``P μ``), and the ``k < 176`` terms not folded yet (``8 k D`` bytes, twice);
  the learn itself touches O(``D K``);
- every :data:`FOLD_ROWS` (128) terms a fold: one symmetric 128-row product writes a
  ``D × D`` update, then one pass reads it and the old ``P`` and writes the new one (four
  passes over ``P``, so ``4/128`` of a pass per sample, and ``D²`` arithmetic per sample),
  in a thread where the head may run one, taken in :data:`FOLD_STEPS` terms later;
- a minibatch of ``m ≤`` :data:`THIN_ROWS` reads ``P`` once for all ``m``
  (:func:`thin_product`): ``1/m + 4/128`` passes per sample; up to :data:`SYMV_ROWS`
  rows, one triangle per row instead (half a pass per sample), which is faster there;
- the term also waits as one row (``8 D`` bytes) to be folded into ``Σ`` by the next
  factorisation's symmetric product (``D²`` arithmetic per sample); a factorisation itself
  (about ``D³`` arithmetic and a dozen passes over ``D × D`` arrays) is spread over the
  hundreds to thousands of samples its drift bound lasts.
"""

from __future__ import annotations

import numpy as np

from edgecl.cpus import cpu_flags
from edgecl.strategies.lda_drift import drift
from edgecl.strategies.lda_jobs import Job
from edgecl.strategies.linear import Float64Array, grow_rows
from edgecl.strategies.symv import available as symv_available
from edgecl.strategies.symv import sym_apply
from edgecl.types import IntArray

FOLD_ROWS = 128  # rank-one terms kept apart before one matrix product folds them in
#: Terms after which a fold is taken in: it runs in a thread meanwhile (where allowed),
#: which spares the step that meets it the fold's 8–13 ms at 1280-d (AVX-512); without
#: a thread that step folds. 16 often left the step waiting for the thread, which
#: shares the memory bus with learning; 48 did not, at 2000 samples/s. Only the terms'
#: count decides when, so the precision is the same, bit for bit, with or without one.
FOLD_STEPS = 48
THIN_ROWS = 12  # inputs up to which thin_product beats one matrix product (not 14)


def symv_rows(flags: frozenset[str]) -> int:
    """Inputs up to which one-triangle products row by row beat thin_product on a CPU
    with these flags (benchmarks/slda_products.py, P from memory). Two AVX2-only EPYCs:
    rows 0.7–1.6 ms against 1.5–3.1 for 2 or 3 inputs (OpenBLAS's kernels for so thin a
    product are slow there), 1.6–2.6 against 1.8–2.8 at 6, and they lose at 8. An
    AVX-512 EPYC: 1.06 against 1.25 at 3, and they lose from 4. Other CPUs were not
    measured: 3, which held on all three."""
    return 6 if "avx2" in flags and "avx512f" not in flags else 3


#: Inputs up to which one-triangle products row by row replace thin_product here.
SYMV_ROWS = symv_rows(cpu_flags())
_PANEL = 64  # rows of P per product in thin_product


def thin_product(p: Float64Array, x: Float64Array) -> Float64Array:
    """``x P`` for a symmetric ``P`` and a few rows ``x``, as ``(P xᵀ)ᵀ`` by panels of
    :data:`_PANEL` rows of ``P``. For so thin an ``x`` one product packs all of ``P``
    first; panels this small take OpenBLAS's small-matrix path instead: 1.0 against
    1.4 ms for 10 rows at 1280 here, 3.1 against 2.0 for 14 (one row is a matrix-vector
    product either way).

    >>> p = np.arange(1.0, 10001.0).reshape(100, 100) % 13
    >>> p = p + p.T
    >>> x = np.arange(300.0).reshape(3, 100) % 7
    >>> bool(np.allclose(thin_product(p, x), x @ p))
    True
    """
    xt = np.ascontiguousarray(x.T)
    out = np.empty((len(p), len(x)))
    for i in range(0, len(p), _PANEL):
        np.matmul(p[i : i + _PANEL], xt, out=out[i : i + _PANEL])
    return np.ascontiguousarray(out.T)


class KeptPrecision:
    """``P = (S + γ I)⁻¹`` for a scatter ``S`` that grows by terms ``w d dᵀ``, ``γ`` fixed.

    Each term is a Sherman–Morrison update, ``P ← P − β u uᵀ`` with ``u = P d`` and
    ``β = w / (1 + w dᵀ u)``: O(D²) arithmetic, never a factorisation. The terms are kept
    as rows ``U`` beside the matrix, ``P = base − Uᵀ diag(β) U``, and every
    :data:`FOLD_ROWS` terms those are folded into a new ``base`` by one matrix product,
    so a sample costs one read of ``base`` (to apply ``P``), not a write of it. With
    ``threads`` the product runs in a thread, and the old ``base`` and every term serve
    until :data:`FOLD_STEPS` terms later, when the fold is taken in (without, it is
    computed then). ``base`` is replaced, never changed in place, and rows are only ever
    appended to ``U`` (taking a fold in starts a new buffer): a shallow copy is a frozen
    snapshot.

    ``bound`` is an upper bound of ``‖P‖₂`` that holds for every later ``P`` too (adding
    to ``S`` only shrinks ``P``): the least of ``1/γ``, the largest absolute row sum and
    the Frobenius norm of the first ``base`` (far below ``1/γ`` once ``S`` has no small
    eigenvalues, which lets ``γ`` drift further between factorisations).

    >>> s = np.array([[2.0, 0.0], [0.0, 0.0]])
    >>> kept = KeptPrecision(np.linalg.inv(s + np.eye(2)), 1.0, np.zeros((1, 2)))
    >>> d = np.array([[1.0, 1.0]])
    >>> _ = kept.update(d, kept.apply(d), np.array([0.5]))
    >>> bool(np.allclose(kept.apply(np.eye(2)), np.linalg.inv(s + 0.5 * d.T @ d + np.eye(2))))
    True
    """

    def __init__(
        self, base: Float64Array, gamma: float, means: Float64Array, threads: bool = False
    ) -> None:
        self.base = base
        self.gamma = gamma
        self.threads = threads  # fold in a thread; may change: the result is the same
        self.wp = means @ base  # P μ_c, one row per class, kept current with P and μ
        self._new_buffers()
        # By panels: no D×D temporary (a fresh one costs page faults about as long).
        panels = (np.abs(base[i : i + 128]).sum(axis=1) for i in range(0, len(base), 128))
        rows = max((float(p.max()) for p in panels), default=0.0)
        self.frob = float(np.sqrt(np.vdot(base, base)))
        self.bound = min(1.0 / gamma, rows, self.frob)

    def _new_buffers(self) -> None:
        self._u = np.empty((FOLD_ROWS + FOLD_STEPS, len(self.base)))
        self._beta = np.empty(FOLD_ROWS + FOLD_STEPS)
        self.k = 0
        self._fold: Job | None = None  # the first FOLD_ROWS terms folded, in a thread

    @property
    def u(self) -> Float64Array:
        """The rank-one terms not folded yet, one row each."""
        return self._u[: self.k]

    @property
    def beta(self) -> Float64Array:
        return self._beta[: self.k]

    def grow(self, n_classes: int) -> None:
        self.wp = grow_rows(self.wp, n_classes)  # P·0 for the new classes

    def drift(self, gamma: float) -> tuple[float, float, float]:
        """``β``, ``δ'`` of ``(S + γ I)⁻¹ ≈ β (P − δ' P²)`` (:func:`drift`), and its error."""
        delta = gamma - self.gamma
        beta, shrink, err = drift(delta * self.bound)
        return beta, delta * shrink, err

    def scores(
        self,
        x: Float64Array,
        px: Float64Array,
        mu: Float64Array,
        c: float,
        gamma: float,
        quadratic: bool,
    ) -> tuple[Float64Array, Float64Array | None]:
        """Scores with ``Λ = c (S + γ I)⁻¹`` (and ``xᵀ Λ x`` if asked); ``px = P x``."""
        beta, delta, _ = self.drift(gamma)
        c, wp = c * beta, self.wp
        quad = None
        if quadratic:
            quad = c * (np.einsum("ij,ij->i", x, px) - delta * np.einsum("ij,ij->i", px, px))
        scores = x @ wp.T - 0.5 * np.sum(mu * wp, axis=1)
        if delta:
            scores -= delta * (px @ wp.T - 0.5 * np.sum(wp * wp, axis=1))
        return np.asarray(c * scores, dtype=np.float64), quad

    def learn(
        self,
        px: Float64Array,
        dev: Float64Array,
        w: Float64Array,
        labels: IntArray,
        counts: IntArray,
        after: Float64Array,
    ) -> None:
        """:meth:`update` with a batch's deviations from their running class means
        (``px`` is ``P`` of its inputs), then ``P μ`` for the means ``after`` it."""
        if len(px) == 1:  # learn_one's path, without the batch's bookkeeping (same sums)
            c, n = int(labels[0]), int(counts[labels[0]])
            wp = self.wp.copy()  # replaced, not changed: a snapshot may hold the old one
            u = px[0] - wp[c]
            wp[c] = (n * wp[c] + px[0]) / (n + 1)
            if n and w[0] != 0.0 and dev[0].any():  # else the term is zero
                beta = w[0] / (1.0 + w[0] * float(dev[0] @ u))
                self._keep(u, beta)
                wp -= np.outer((after @ u) * beta, u)
            self.wp = wp
            return
        pbefore, pafter = running_means(px, labels, self.wp, counts)
        u, beta = self.update(dev, px - pbefore, w)
        self.wp = pafter - ((after @ u.T) * beta) @ u

    def apply(self, x: Float64Array) -> Float64Array:
        """``P`` applied to each row of ``x``."""
        if len(x) == 1 or (len(x) <= SYMV_ROWS and symv_available()):
            # One triangle of P per row: half the traffic of learn_one's product, and for
            # a few rows faster than one thin product (how few depends on the CPU).
            px = np.stack([sym_apply(self.base, row) for row in x])
        else:
            px = x @ self.base if len(x) > THIN_ROWS else thin_product(self.base, x)
        if self.k:
            u = self.u
            px -= ((x @ u.T) * self.beta) @ u
        return np.asarray(px, dtype=np.float64)

    def _take_fold(self) -> None:
        """The first :data:`FOLD_ROWS` terms folded into a new ``base`` (the thread's
        result, or computed here); the terms since stay as rows."""
        job, n = self._fold, FOLD_ROWS
        base = None if job is None else job.finish()
        if base is None:
            base = folded(self.base, self._u[:n], self._beta[:n])
        later, later_beta = self._u[n : self.k], self._beta[n : self.k]
        self.base = base
        self._new_buffers()  # the old buffer stays as it was: a snapshot may hold it
        self.k = len(later)
        self._u[: self.k], self._beta[: self.k] = later, later_beta

    def update(
        self, d: Float64Array, pd: Float64Array, w: Float64Array
    ) -> tuple[Float64Array, Float64Array]:
        """Add ``Σ w_j d_j d_jᵀ`` to ``S`` in row order; ``pd`` is ``P d_j`` before any of
        them. Returns the rows ``u_j`` and the ``β_j`` of this batch's terms (rows whose
        ``w`` or ``d`` is zero add nothing and get ``β = 0``). A Python step per row is
        faster here for small batches than one factorisation of all of them (the LDLᵀ of
        ``W⁻¹ + D P Dᵀ``): 0.18 against 0.37 ms for 10 rows."""
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
            self._keep(u[j], beta[j])
        return u, beta

    def _keep(self, u: Float64Array, beta: float) -> None:
        """The term ``− β u uᵀ`` into the rows not folded yet; the fold of the first
        :data:`FOLD_ROWS` started with the last of them, taken in :data:`FOLD_STEPS`
        later."""
        self._u[self.k], self._beta[self.k] = u, beta
        self.k += 1
        if self.k == FOLD_ROWS and self.threads:
            n = FOLD_ROWS
            self._fold = Job("slda-fold-p", folded, self.base, self._u[:n], self._beta[:n])
        elif self.k == FOLD_ROWS + FOLD_STEPS:
            self._take_fold()


def folded(base: Float64Array, u: Float64Array, beta: Float64Array) -> Float64Array:
    """``base − Vᵀ V``, ``V = diag(√β) U`` (``β > 0``), subtracted in the product's own
    buffer: one fresh D×D array per fold instead of two (the allocation and its page
    faults cost nearly as much as the product). The symmetric product does half the
    arithmetic, which pays from 128 rows on: 4.0 against 4.9 ms per 64 terms (at 64 rows
    it is no faster than the general one). ``u`` and ``beta`` are only read: a thread
    may fold them while later terms are written after them."""
    v = u * np.sqrt(beta)[:, None]
    new = v.T @ v  # NumPy's symmetric rank-k product for a matrix and its transpose
    np.subtract(base, new, out=new)
    return np.asarray(new, dtype=np.float64)


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
