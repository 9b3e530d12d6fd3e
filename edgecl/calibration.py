"""Calibration and open-set measures on plain arrays: temperature scaling (Guo et al. 2017),
expected calibration error, AUROC, and the novelty threshold that accepts a share of the
known samples. No learner here: :mod:`edgecl.openset` applies these to a head."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from edgecl.types import AnyArray, IntArray

Float64Array = npt.NDArray[np.float64]

#: Temperatures searched when fitting.
T_MIN, T_MAX = 1e-3, 1e4
#: Standard deviation of the normal prior on ``log T`` (centred on T = 1, the head's own
#: scale): worth a few items of evidence, so a few dozen held samples that happen to be all
#: right no longer fit T -> 0 (every score 1.0); chosen on the validation splits (see
#: BENCHMARKS.md, "Calibration and open set").
PRIOR_SD = 1.0
_STEPS = 60  # golden-section steps: the bracket shrinks by 0.618^60, below 1e-12


def softmax_t(logits: Float64Array, temperature: float) -> Float64Array:
    """Row softmax of ``logits / temperature``; ``-inf`` columns (classes never trained)
    get probability 0.

    >>> softmax_t(np.array([[0.0, np.log(3.0), -np.inf]]), 1.0).round(3).tolist()
    [[0.25, 0.75, 0.0]]
    """
    s = np.asarray(logits, dtype=np.float64) / temperature
    top = np.max(s, axis=1, keepdims=True)
    top[~np.isfinite(top)] = 0.0
    e = np.exp(s - top)
    total = e.sum(axis=1, keepdims=True)
    total[total == 0] = 1.0
    return np.asarray(e / total, dtype=np.float64)


def nll(logits: Float64Array, y: IntArray, temperature: float) -> float:
    """Mean negative log-likelihood of classes ``y`` under ``softmax(logits / temperature)``
    (a class at ``-inf``, one never trained, counts 1e6 rather than infinity)."""
    s = np.asarray(logits, dtype=np.float64) / temperature
    top = np.max(s, axis=1)
    lse = top + np.log(np.exp(s - top[:, None]).sum(axis=1))
    picked = s[np.arange(len(y)), y]
    return float(np.mean(np.where(np.isfinite(picked), lse - picked, 1e6)))


def fit_temperature(logits: Float64Array, y: IntArray, prior_sd: float | None = PRIOR_SD) -> float:
    """The ``T`` in ``[T_MIN, T_MAX]`` of most posterior: the summed :func:`nll` of
    ``(logits, y)`` plus ``(log T)^2 / (2 prior_sd^2)``, a normal prior on ``log T``
    (``None``: no prior, the plain maximum-likelihood fit of Guo et al. 2017). The prior
    weighs as much as a few items, so it matters only when they are few or say nothing
    (all right: the likelihood alone runs T down to ``T_MIN``).

    The NLL is convex in ``1/T``, so a golden-section search on ``log T`` finds its
    minimum: deterministic, and no gradient of a head's scores is needed.

    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 2000)
    >>> logits = np.stack([y == 0, y == 1], axis=1) * 2.0 + rng.normal(size=(2000, 2))
    >>> round(fit_temperature(10.0 * logits, y))  # the exact posterior: softmax(2 logits)
    5
    >>> right = np.array([[3.0, 0.0], [0.0, 3.0]] * 10)  # 20 items, all right
    >>> round(fit_temperature(right, np.array([0, 1] * 10), None), 6)  # T_MIN
    0.001
    >>> round(fit_temperature(right, np.array([0, 1] * 10)), 2)
    0.57
    """
    n = max(len(y), 1)
    penalty = 0.0 if prior_sd is None else 1.0 / (2.0 * prior_sd * prior_sd * n)

    def cost(u: float) -> float:  # the mean NLL plus the prior's share per item
        return nll(logits, y, math.exp(u)) + penalty * u * u

    lo, hi = math.log(T_MIN), math.log(T_MAX)
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = cost(a), cost(b)
    for _ in range(_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = cost(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = cost(b)
    return math.exp((lo + hi) / 2.0)


def ece(proba: AnyArray, y: IntArray, bins: int = 15) -> float:
    """Expected calibration error: over ``bins`` equal-width bins of the top probability,
    the sample-weighted mean of ``|accuracy - mean confidence|`` (Guo et al. 2017).

    >>> ece(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]))
    0.35
    """
    p = np.asarray(proba, dtype=np.float64)
    conf, right = p.max(axis=1), p.argmax(axis=1) == np.asarray(y)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for k in np.unique(which).tolist():
        sel = which == k
        total += sel.sum() * abs(right[sel].mean() - conf[sel].mean())
    return round(float(total / len(p)), 12) if len(p) else float("nan")


def ece_floor(proba: AnyArray, draws: int = 20, seed: int = 0, bins: int = 15) -> float:
    """The ECE a model exactly as calibrated as ``proba`` claims would measure on this many
    samples: the mean :func:`ece` of labels drawn from ``proba`` itself. Not zero: on a few
    hundred samples the bins' accuracies are noisy, and ECE, a sum of their absolute
    errors, is biased upward by that noise.

    >>> p = np.tile([[0.8, 0.2]], (100, 1))
    >>> 0.0 < ece_floor(p) < 0.1 < ece_floor(p[:10])
    True
    """
    p = np.asarray(proba, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(p, axis=1)
    out = []
    for _ in range(draws):
        u = rng.random((len(p), 1))
        y = np.minimum((cdf < u).sum(axis=1), p.shape[1] - 1)
        out.append(ece(p, y, bins))
    return float(np.mean(out))


def auroc(known: AnyArray, unknown: AnyArray) -> float:
    """Probability that an unknown sample scores higher than a known one (ties count half):
    the Mann-Whitney rank statistic.

    >>> auroc(np.array([0.1, 0.2, 0.3]), np.array([0.25, 0.4]))
    0.8333333333333334
    """
    k, u = np.asarray(known, np.float64), np.asarray(unknown, np.float64)
    if not len(k) or not len(u):
        return float("nan")
    both = np.concatenate([k, u])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(len(both))
    ranks[order] = np.arange(1, len(both) + 1)
    sorted_vals = both[order]  # midranks for ties
    _, start, count = np.unique(sorted_vals, return_index=True, return_counts=True)
    mid = start + (count + 1) / 2.0
    ranks[order] = np.repeat(mid, count)
    r_u = ranks[len(k) :].sum()
    return float((r_u - len(u) * (len(u) + 1) / 2.0) / (len(k) * len(u)))


def acceptance_threshold(novelty: AnyArray, acceptance: float) -> float:
    """The least novelty at or below which ``acceptance`` of these known samples fall.

    >>> acceptance_threshold(np.arange(100.0), 0.95)
    94.0
    """
    n = np.sort(np.asarray(novelty, dtype=np.float64))
    k = max(1, math.ceil(acceptance * len(n)))
    return float(n[k - 1])
