"""Streaming LDA's covariance and the precision kept from it, in its three forms.

:class:`~edgecl.strategies.slda.StreamingLDA` keeps ``Σ`` as a matrix plus the rank-one
terms not yet folded into it, and the precision ``(S + γ I)⁻¹`` (``S = t Σ``) current
with every term: exactly for every ``γ`` while ``S`` has few terms
(:class:`~edgecl.strategies.lda_few.LowRankPrecision`), in the terms' space while they
are fewer than ``ROW_SHARE · D`` (:class:`~edgecl.strategies.lda_rows.RowPrecision`),
then explicitly (:class:`~edgecl.strategies.lda_update.KeptPrecision`), each factorised
again only when its correction for ``γ``'s growth would pass ``tolerance``. Each explicit
precision (the first one too, which replaces the terms' space form) is factorised early,
in a thread (:class:`~edgecl.strategies.lda_next.NextPrecision`), so learning and
predicting need not wait for it; the terms are folded into ``Σ`` in groups of
:data:`SIGMA_ROWS`, in a thread too (:class:`~edgecl.strategies.lda_next.SigmaFold`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgecl.cpus import usable_cpus
from edgecl.strategies import lda_rows as lr
from edgecl.strategies.lda_drift import above, below, below_rows
from edgecl.strategies.lda_few import LowRankPrecision
from edgecl.strategies.lda_next import Call, NextPrecision, SigmaFold, factorised, folded
from edgecl.strategies.lda_update import KeptPrecision
from edgecl.strategies.linear import Float64Array
from edgecl.types import IntArray

# A batch at least this large is folded into Σ and the precision factorised again:
# its rank-one updates (O(D² m + D m²)) would cost more than one factorisation.
REFACTOR_BATCH = 256
#: The next explicit factorisation starts in a thread once the drift's edge is this
#: many samples away (at once when the span between factorisations is shorter), plus
#: one per :data:`FOLD_LEAD` terms waiting to be folded into ``Σ``, which the thread
#: does first. The thread took 0.3–0.5 s on a busy AVX2-only CPU, then takes in every
#: sample learned since it started (0.2–0.4 ms each at 1280-d, against about 1.2 to
#: learn one), so the lead is a fixed count, not a share of the span (which grows with
#: the stream, to about a fifth of the samples learned so far): 256 samples last 0.8 s
#: at 320 samples/s, and the teaching /learn's p99 was no better with 512
#: (benchmarks/learn_to_visible.py).
START_SAMPLES = 256
#: A waiting term takes the thread about a thirtieth of the time a sample takes to learn
#: (one row of a large symmetric product against two passes over half of ``P``); 16 for
#: the thread sharing the cores. Without it, 4000 waiting terms at 800 samples/s (the
#: in-process benchmark) left the thread 150–500 ms late at the edge.
FOLD_LEAD = 16
#: Terms folded into ``Σ`` at once: the step that finds this many waiting folds them, or
#: starts a thread that does (about 25 ms at 1280-d, 45–50 µs a term), taken in this many
#: samples later. Folded only for a factorisation, they grew with the span between
#: factorisations, a fifth of the stream: 41,000–48,600 terms (420–500 MB) by 100k samples
#: learned one by one, folded in one 1.3–2.4 s step where no thread factorises.
SIGMA_ROWS = 512


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
    _next: NextPrecision | None  # the kept one's successor, being factorised
    _folding: SigmaFold | None  # Σ with the first pending terms, being folded
    _learns: bool  # False for a snapshot: it never starts a factorisation
    background: bool  # factorise the next explicit precision in a thread
    _last: tuple[Float64Array, Any] | None  # x predicted, its product(s)

    # A⁻¹ of a symmetric positive definite A, a fresh factorisation (the head's method).
    _inverse: Callable[[Float64Array], Float64Array]

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def sigma(self) -> Float64Array:
        """The covariance ``Σ`` (pending rank-one terms folded in first)."""
        self._fold_pending()
        return self._sigma

    def _fold_pending(self) -> None:
        self._take_fold()
        if self._pending:
            # Replaced, not changed: a snapshot or the next precision may hold the old one.
            self._sigma = folded(self._sigma, self._sigma_at, self._pending, self.n_updates)
            self._pending, self._sigma_at = [], self.n_updates

    def _take_fold(self) -> None:
        """``Σ`` from the fold thread, if one runs (waiting for it)."""
        job, self._folding = self._folding, None
        if job is None:
            return
        sigma = job.finish()
        if sigma is not None and self._sigma is job.sigma_before:
            self._sigma, self._sigma_at = sigma, job.t
            self._pending = self._pending[job.n_pending :]

    def _bound_pending(self) -> None:
        """Fold the pending terms into ``Σ`` in groups of :data:`SIGMA_ROWS`: in a thread
        where one may run and no factorisation's thread is folding them already, else in
        this step. Counts of samples decide when a fold starts and when it is taken in, so
        a head and its restored copy hold the same ``Σ``, whatever the threads' timing."""
        job = self._folding
        if job is not None and self.n_updates - job.t >= SIGMA_ROWS:
            self._take_fold()
        waiting = self.n_updates - self._sigma_at
        if self._folding is not None or waiting < SIGMA_ROWS:
            return
        threads = self._threads()
        if threads and self._next is None:
            self._folding = SigmaFold(self._sigma, self._sigma_at, self._pending, self.n_updates)
        elif not threads or waiting >= 4 * SIGMA_ROWS:  # the next one is late
            self._fold_pending()

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
            self._feed_next(x, dev, w, labels, after)
            if rows.r > lr.ROW_SHARE * self.dim:  # from here the explicit form costs less
                self._rows = self._last = None
                if self._next is None:  # else the thread's is swapped in when needed
                    gamma = self._ahead(below(0.98 * self.tolerance))
                    base = rows.explicit(gamma)
                    threads = self._threads()
                    self._kept = (
                        None if base is None else KeptPrecision(base, gamma, after, threads)
                    )
        elif (kept is not None or self._next is not None) and small:
            if kept is not None:
                px = self._cached(x)
                px = kept.apply(x) if px is None else px
                kept.learn(px, dev, w, labels, self.counts, after)
            self._feed_next(x, dev, w, labels, after)
        else:  # a large batch: one explicit factorisation costs less
            self._kept = self._rows = None
            self._drop_next()

    def _feed_next(
        self, x: Float64Array, dev: Float64Array, w: Float64Array, labels: IntArray, after: Any
    ) -> None:
        """The same learn call for the next precision, if one is being built."""
        if self._next is not None:
            self._next.feed(Call(x, dev, w, labels.copy(), self.counts, after))

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
            terms_left = lr.ROW_SHARE * self.dim - rows.r  # to the explicit form
            soon = terms_left < self._lead() and not self._frozen()
            if self._next is None and soon and self._threads():
                # The explicit precision from Σ in the thread, for the γ of the switch.
                switch = self._gamma(self.n_updates + max(int(terms_left), 0) + 1)
                self._start(self._ahead(below(0.98 * self.tolerance), None, switch))
        elif self._kept is None or self._kept.drift(gamma)[2] > self.tolerance:
            self._replace(gamma)
        elif self._next is None:
            self._maybe_start(self._kept, gamma)
        elif self._frozen():  # γ stays: no swap would come
            self._drop_next()

    def _maybe_start(self, kept: KeptPrecision, gamma: float) -> None:
        """Start the next factorisation when :data:`START_SAMPLES` says, for the ``γ₀`` a
        factorisation at the drift's edge would choose."""
        at_edge = kept.gamma + above(self.tolerance) / kept.bound
        far = at_edge - gamma > self._gamma(self._lead())  # γ grows linearly with t
        if far or self._frozen() or not self._threads():
            return
        self._start(self._ahead(below(0.98 * self.tolerance), kept.frob, at_edge))

    def _start(self, gamma0: float) -> None:
        """The next explicit precision, for ``γ₀ = gamma0``, from ``Σ`` as it is now."""
        self._drop_next()
        self._take_fold()  # else the thread would fold the same terms again
        args = (self._sigma, self._sigma_at, self._pending, self.n_updates, self.means)
        self._next = NextPrecision(self, *args, self.shrinkage, gamma0, self._inverse)

    def _start_fresh(self) -> None:
        """After a checkpoint (or its restore): start the factorisation a restore makes,
        so the head and its restored copy wait for the same one (and go on alike), the
        checkpoint's write running beside it."""
        if self.dim and self._few is None and self.shrinkage < 1.0 and self._threads():
            self._start(self._ahead(below(0.98 * self.tolerance)))

    def _replace(self, gamma: float) -> None:
        """Swap in the next precision (waiting for it if it is still busy), or factorise."""
        nxt, self._next = self._next, None
        done = None if nxt is None else nxt.finish()
        if nxt is None or done is None:
            self._refactor()
            return
        sigma, kept = done
        if self._sigma is nxt.sigma_before:  # else Σ was folded since: it is newer
            self._sigma, self._sigma_at = sigma, nxt.t
            self._pending = self._pending[nxt.n_pending :]
        kept.grow(len(self.counts))
        kept.threads = self._threads()  # its folds, from now on beside learning
        self._kept, self._last = kept, None
        if kept.drift(gamma)[2] > self.tolerance:  # not met while γ₀ is chosen as above
            self._refactor()

    def _lead(self) -> int:
        """Samples before the edge at which the thread starts (:data:`START_SAMPLES`)."""
        return START_SAMPLES + (self.n_updates - self._sigma_at) // FOLD_LEAD

    def _threads(self) -> bool:
        """Whether to factorise in a thread: asked for, and a second CPU to run it on
        (on one, the thread's catching up with learning would be pure cost)."""
        return self.background and self._learns and spare_cpu()

    def _drop_next(self) -> None:
        if self._next is not None:
            self._next.cancel()
            self._next = None

    def _frozen(self) -> bool:
        limit = self.covariance_samples
        return limit is not None and self.n_updates >= limit

    def _ahead(self, below: float, bound: float | None = None, gamma: float | None = None) -> float:
        """The ``γ₀`` to factorise for: a little ahead, so the correction spans growth on
        both sides of it (half the factorisations; 0.98 of the way, so rounding never
        puts it past the bound at once); now if the covariance is frozen.

        ``ρ = δ/γ₀`` reaches ``below`` at ``γ₀ = γ/(1 + below)``; with ``bound`` ``≥ b``
        of the coming factorisation (:class:`KeptPrecision`'s ``ρ = δ b``), ``γ₀ = γ −
        below/bound`` keeps ``ρ ≥ below`` too, and is further ahead when ``b < 1/γ``.
        ``gamma``: for that ``γ`` rather than the current one."""
        if self._frozen():
            return self._gamma(self.n_updates)
        gamma = self._gamma(self.n_updates) if gamma is None else gamma
        ahead = gamma / (1.0 + below)
        return ahead if bound is None else max(ahead, gamma - below / bound)

    def _refactor(self) -> None:
        self._drop_next()
        # S and γ₀ only grow, so the old factorisation's ‖P‖_F bounds the new one's.
        frob = None if self._kept is None else self._kept.frob
        gamma = self._ahead(below(0.98 * self.tolerance), frob)
        base = factorised(self.sigma, self.shrinkage, self.n_updates, gamma, self._inverse)
        self._kept = KeptPrecision(base, gamma, self.means, self._threads())
        self._last = None


def spare_cpu() -> bool:
    """Whether this process may run on more than one CPU."""
    return usable_cpus() > 1
