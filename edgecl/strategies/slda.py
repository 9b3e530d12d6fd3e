"""Deep Streaming LDA (Hayes & Kanan, CVPR-W 2020) on latents, in NumPy."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies import lda_rows as lr
from edgecl.strategies.base import masked_logits
from edgecl.strategies.cholesky import precision
from edgecl.strategies.lda_few import LowRankPrecision
from edgecl.strategies.lda_next import NextPrecision, SigmaFold
from edgecl.strategies.lda_update import KeptPrecision, running_means
from edgecl.strategies.linear import (
    Float64Array,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
    positive_int,
)
from edgecl.strategies.slda_forms import PrecisionForms
from edgecl.types import FloatArray, IntArray, State


class StreamingLDA(PrecisionForms, Configurable):
    """Running class means and one shared covariance, updated one sample at a time.

    For sample ``z`` of class ``y``, with ``t`` samples seen before it (the paper's
    update): ``Δ = t/(t+1) (z − μ_y)(z − μ_y)ᵀ``, ``Σ ← (t Σ + Δ)/(t+1)``, then ``μ_y``
    takes ``z`` into its running mean. A batch is folded in exactly as that sequence of
    single updates. Predictions use the precision ``Λ = ((1 − ε) Σ + ε I)⁻¹``
    (``ε = shrinkage``): scores ``W z + b`` with ``W = Λ μ`` and ``b = −½ μᵀ Λ μ``,
    softmaxed.

    The precision is kept current by rank-one updates, in the space of the scatter's
    terms while they are fewer than ``¾ D`` (:mod:`~edgecl.strategies.lda_rows`), then
    explicitly (:mod:`~edgecl.strategies.lda_update`; the switch builds it from the
    terms), and factorised again only when its correction for the shrinkage's drift would
    pass ``tolerance`` (:mod:`~edgecl.strategies.slda_forms` keeps ``Σ`` and the forms): a
    prediction costs one product per input and O(DK) more; a learned sample O(D² + DK),
    and the memory traffic per sample is in :mod:`~edgecl.strategies.lda_update`.
    :meth:`novelty_many` is the squared Mahalanobis distance to the nearest class mean
    under the same precision (Lee et al. 2018), from the same product.

    ``background``: factorise the explicit precision's successor in a thread while the
    kept one still holds (:mod:`~edgecl.strategies.lda_next`), when the process may run
    on more than one CPU; off, the step that needs it factorises. The thread spares the
    replies a pause of a few hundred ms at 1280-d, for 0.2–0.4 ms of CPU per sample
    learned while it runs (:data:`~edgecl.strategies.slda_forms.START_SAMPLES` and a
    sixteenth of the terms waiting to be folded into ``Σ``, per factorisation).

    ``covariance_samples``: ``None`` keeps the covariance plastic (updated by every
    sample); an integer stops updating it after that many samples, as the paper's
    fixed-covariance variant does after its base initialisation.

    ``state_dict`` folds pending terms into ``Σ``, drops the kept precision and starts
    factorising ``Σ`` afresh (in a thread), as a restore from that state does, so the
    head and its restored copy compute the same from then on, bit for bit.

    Differences from the paper's code: the first sample of a class has no mean to
    deviate from, so it adds nothing to ``Σ`` (the reference code compares it with a
    zero-initialised mean, which adds ``z zᵀ`` of every new class to the shared
    covariance); the precision comes from a Cholesky factor and rank-one updates
    rather than a pseudo-inverse (the shrunk covariance is positive definite); a class
    never trained scores ``−inf`` (probability 0).

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
        tolerance: float = 1e-3,
        precision_refresh: int | None = None,
        background: bool = True,
    ) -> None:
        self.shrinkage = positive_float("shrinkage", shrinkage)
        if self.shrinkage > 1:
            raise ValueError(f"shrinkage must be in (0, 1], got {shrinkage!r}")
        cs, pr = covariance_samples, precision_refresh
        self.covariance_samples = None if cs is None else positive_int("covariance_samples", cs)
        self.tolerance = positive_float("tolerance", tolerance)
        # Named by checkpoints of earlier versions; the precision is always current now.
        self.precision_refresh = None if pr is None else positive_int("precision_refresh", pr)
        if not isinstance(background, bool):
            raise ValueError(f"background must be true or false, got {background!r}")
        self.background = background
        self.means = np.zeros((0, 0), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.n_updates = 0  # samples folded into sigma (the paper's t)
        self._sigma = np.zeros((0, 0), dtype=np.float64)
        self._sigma_at = 0  # n_updates that _sigma holds; the rest wait in _pending
        self._pending: list[Float64Array] = []  # rows sqrt(w) d of later updates
        self._few: LowRankPrecision | None = None  # exact while S has few terms
        self._rows: lr.RowPrecision | None = None  # then while it has fewer than D
        self._kept: KeptPrecision | None = None  # from then on
        self._next: NextPrecision | None = None  # the kept one's successor, in a thread
        self._folding: SigmaFold | None = None  # Σ with the first pending terms, in a thread
        self._learns = True  # False for a snapshot: it starts no factorisation
        self._last: tuple[Float64Array, Any] | None = None  # x predicted, its product(s)
        self._predicted = False  # predicted since the last learn_many

    def _inverse(self, a: Float64Array) -> Float64Array:
        return precision(a)  # looked up here: a benchmark or test can count the calls

    def add_classes(self, n_classes: int) -> None:
        if n_classes > len(self.counts):
            self.means = grow_rows(self.means, n_classes)
            self.counts = grow_rows(self.counts, n_classes)
            for kept in (self._rows, self._kept):
                if kept is not None:
                    kept.grow(n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x32, labels = check_batch(z, y, len(self.counts), self.dim)
        if not len(labels):
            return
        x = x32.astype(np.float64)
        if self.dim == 0:
            self.means = np.zeros((len(self.counts), x.shape[1]))
            self._sigma = np.zeros((x.shape[1], x.shape[1]))
            self._few = LowRankPrecision(x.shape[1])
        before, after = running_means(x, labels, self.means, self.counts)
        dev = x - before
        t0, m = self.n_updates, len(x)
        limit = self.covariance_samples
        n = m if limit is None else max(0, min(m, limit - t0))
        t = t0 + np.arange(m, dtype=np.float64)
        w = np.where(np.arange(m) < n, t / (t + 1.0), 0.0)
        if n:
            self._pending.append(dev[:n] * np.sqrt(w[:n])[:, None])
            self.n_updates = t0 + n
        if self.shrinkage < 1.0:  # with ε = 1, Λ = I whatever Σ is
            self._follow(x, labels, dev, w, after)
        self._bound_pending()
        self.means = after
        self.counts = self.counts + np.bincount(labels, minlength=len(self.counts))
        self._last = None
        if self._predicted:  # the next prediction is likely near: be ready for it
            self._predicted = False
            self._ready()

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(self.scores_many(z), self.counts > 0)

    def logits_many(self, z: FloatArray) -> Float64Array:
        return masked_logits(self.scores_many(z), self.counts > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """``min_c (z − μ_c)ᵀ Λ (z − μ_c) = zᵀ Λ z − 2 max_c score_c`` over trained classes."""
        scores, quad = self._scores(z, quadratic=True)
        best = masked_logits(scores, self.counts > 0).max(axis=1, initial=-np.inf)
        return np.asarray(quad - 2.0 * best, dtype=np.float64)

    def scores_many(self, z: FloatArray) -> Float64Array:
        """The discriminant ``μ_cᵀ Λ z − ½ μ_cᵀ Λ μ_c`` of every class (the logits)."""
        return self._scores(z)[0]

    def _scores(self, z: FloatArray, quadratic: bool = False) -> tuple[Float64Array, Any]:
        """Scores and, if asked, ``zᵀ Λ z`` (from the same ``Λ z``)."""
        x = check_latents(z, self.dim).astype(np.float64)
        quad = np.einsum("ij,ij->i", x, x) if quadratic else None
        if self.dim == 0:
            return np.zeros((len(x), len(self.counts))), quad
        mu = self.means
        if self.shrinkage == 1.0:
            return x @ mu.T - 0.5 * np.sum(mu * mu, axis=1), quad
        c, gamma = max(self.n_updates, 1) / (1.0 - self.shrinkage), self._gamma(self.n_updates)
        if self._few is not None:  # exact: Λ = c (S + γ I)⁻¹
            return self._few.scores(x, mu, gamma, c, quadratic)
        self._ready()
        if (rows := self._rows) is not None:  # c/γ = 1/ε; logits then novelty: one product
            delta, eps = rows.drift(gamma)[0], self.shrinkage
            scores, quad, proj = rows.scores(x, mu, delta, eps, quadratic, self._cached(x))
            self._last, self._predicted = (x, proj), True
            return scores, quad
        px, kept = self._cached(x), self._kept  # logits then novelty: one product
        assert kept is not None
        px = kept.apply(x) if px is None else px
        self._last, self._predicted = (x, px), True
        return kept.scores(x, px, mu, c, gamma, quadratic)

    def snapshot(self) -> StreamingLDA:
        """The current head, frozen: a copy sharing only arrays this head replaces rather
        than changes, made ready now, so it never factorises or sees later learning."""
        if self.dim:
            self._ready()
        clone = copy.copy(self)
        clone._kept, clone._few = copy.copy(self._kept), copy.copy(self._few)
        clone._rows, clone._next, clone._learns = copy.copy(self._rows), None, False
        clone._folding = None  # it folds its own copy of the terms if asked for Σ
        clone._pending = list(self._pending)
        return clone

    def state_dict(self) -> State:
        sigma, few = self.sigma, self._few
        # What a restore recomputes, recomputed here too, so both go on alike.
        self._kept, self._rows, self._last = None, None, None
        self._start_fresh()
        if few is not None:
            few.gram = few.d @ few.d.T
        upper = sigma[np.triu_indices(self.dim)] if self.dim else np.zeros(0)
        return {
            "means": self.means.copy(),
            "counts": self.counts.copy(),
            "sigma_upper": upper,  # symmetric: the upper triangle is all of it
            "n_updates": self.n_updates,
            "few_rows": None if few is None else few.d.copy(),
        }

    def load_state_dict(self, state: State) -> None:
        self.means = np.array(state["means"], dtype=np.float64)
        self.counts = np.array(state["counts"], dtype=np.int64)
        dim = self.means.shape[1] if self.means.ndim == 2 else 0
        if "sigma_upper" in state:
            sigma = np.zeros((dim, dim))
            sigma[np.triu_indices(dim)] = np.asarray(state["sigma_upper"], dtype=np.float64)
            sigma = np.triu(sigma) + np.triu(sigma, 1).T
        else:  # checkpoints of earlier versions hold the whole matrix
            sigma = np.array(state["sigma"], dtype=np.float64)
        self._sigma, self.n_updates = sigma, int(state["n_updates"])
        self._sigma_at, self._pending, self._kept, self._last = self.n_updates, [], None, None
        self._folding = None
        self._rows = None
        self._few, rows = None, state.get("few_rows")
        if rows is not None:
            self._few = LowRankPrecision(dim)
            self._few.d = np.array(rows, dtype=np.float64).reshape(-1, dim)
            self._few.gram = self._few.d @ self._few.d.T
        self._predicted = False
        self._start_fresh()
