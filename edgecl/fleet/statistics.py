"""Heads as contributions and back: ``slda``/``ncm`` as additive sufficient statistics,
SGD heads as per-class weight rows.

Statistics are kept as sums so that merging devices, or taking a device's part out of a
merge, is plain addition and subtraction: per class ``n_c`` and ``s_c = n_c μ_c``, and
for ``slda`` the second moment ``M = S + Σ_c n_c μ_c μ_cᵀ`` with ``S = t Σ`` the scatter
(``t = n_updates``). Back from sums: ``μ_c = s_c / n_c``, ``S = M − Σ_c n_c μ_c μ_cᵀ``,
``Σ = S / t``. Adding two devices' ``M`` and subtracting the merged ``n μ μᵀ`` is the
pooled within-class scatter with the between-device mean correction
``Σ_{d,c} n_{dc} (μ_{dc} − μ_c)(μ_{dc} − μ_c)ᵀ``.
"""

from __future__ import annotations

import numpy as np

from edgecl.fleet.contribution import STATISTICS, Contribution, align, union
from edgecl.types import AnyArray, Float64Array, Label, State


def from_head(strategy: str, state: State, labels: list[Label], own: list[int]) -> Contribution:
    """A head's state as a contribution (``own``: samples this device learned per class,
    the FedAvg weight of an SGD head)."""
    k = len(labels)
    if strategy in STATISTICS:
        counts = np.asarray(state["counts"], dtype=np.int64)[:k]
        means = np.asarray(state["means"], dtype=np.float64)[:k]
        sums = counts[:, None] * means if means.ndim == 2 else np.zeros((k, 0))
        arrays: dict[str, AnyArray] = {"sums": sums}
        scalars: dict[str, float] = {}
        if strategy == "slda":
            t = int(state["n_updates"])
            arrays["second"] = t * _sigma(state, sums.shape[1]) + _outer(counts, means)
            scalars["n_updates"] = float(t)
        return Contribution("statistics", strategy, list(labels), counts, arrays, scalars)
    problem = supported(strategy, state)
    if problem is not None:
        raise ValueError(problem)
    state = weights_view(state)
    arrays = {"w": np.asarray(state["w"])[:k].copy(), "b": np.asarray(state["b"])[:k].copy()}
    for name, value in dict(state.get("layers", {})).items():
        arrays[f"layer:{name}"] = np.asarray(value).copy()
    counts = np.zeros(k, np.int64)
    counts[: len(own)] = own[:k]
    return Contribution("weights", strategy, list(labels), counts, arrays)


def supported(strategy: str, state: State) -> str | None:
    """Why a head cannot join a fleet (None: it can).

    >>> from edgecl import strategies
    >>> supported("ncm", strategies.create("ncm").state_dict()) is None
    True
    >>> supported("gdumb", strategies.create("gdumb").state_dict())
    "strategy 'gdumb' has no per-class weights the fleet can average"
    """
    view = weights_view(state)
    if strategy in STATISTICS or ("w" in view and "b" in view and "counts" in view):
        return None
    return f"strategy {strategy!r} has no per-class weights the fleet can average"


def weights_view(state: State) -> State:
    """An SGD head's state with its output rows as ``w``, ``b`` and ``counts`` (``cwr_star``
    keeps them as ``cw`` and ``past``, without a bias)."""
    if "cw" not in state:
        return state
    cw = np.asarray(state["cw"])
    return {**state, "w": cw, "b": np.zeros(len(cw), np.float32), "counts": state["past"]}


def weights_back(state: State, w: AnyArray, b: AnyArray, counts: AnyArray) -> State:
    """``state`` with new output rows, under the head's own names."""
    if "cw" in state:
        return dict(state, cw=w, past=counts)
    return dict(state, w=w, b=b, counts=counts)


def _sigma(state: State, dim: int) -> Float64Array:
    sigma = np.zeros((dim, dim))
    if dim:
        sigma[np.triu_indices(dim)] = np.asarray(state["sigma_upper"], dtype=np.float64)
        sigma = np.triu(sigma) + np.triu(sigma, 1).T
    return sigma


def _outer(counts: AnyArray, means: Float64Array) -> Float64Array:
    """``Σ_c n_c μ_c μ_cᵀ``."""
    return np.asarray((means.T * counts) @ means, dtype=np.float64)


def statistics_state(c: Contribution, labels: list[Label]) -> State:
    """An ``slda``/``ncm`` head state from statistics, rows in ``labels`` order (labels the
    contribution lacks get empty rows)."""
    k, dim = len(labels), c.dim
    counts, sums = np.zeros(k, np.int64), np.zeros((k, dim))
    idx = align(c.labels, labels)
    counts[idx], sums[idx] = c.counts, c.arrays["sums"]
    means = np.divide(sums, np.maximum(counts, 1)[:, None])
    state: State = {"means": means, "counts": counts}
    if c.strategy == "slda":
        t = int(round(c.scalars.get("n_updates", 0.0)))
        scatter = c.arrays["second"] - _outer(counts, means)
        sigma = (scatter + scatter.T) / (2.0 * t) if t else np.zeros((dim, dim))
        state.update(sigma_upper=sigma[np.triu_indices(dim)], n_updates=t, few_rows=None)
    return state


def combine(a: Contribution, b: Contribution, sign: float = 1.0) -> Contribution:
    """``a + b`` (or ``a − b`` with ``sign=-1``) of two statistics, labels of both."""
    check_compatible(a, b)
    labels = union(a.labels, b.labels)
    ia, ib = align(a.labels, labels), align(b.labels, labels)
    counts = np.zeros(len(labels), np.int64)
    counts[ia] += a.counts
    counts[ib] += (int(sign) * b.counts).astype(np.int64)
    dim = max(a.dim, b.dim)
    sums = np.zeros((len(labels), dim))
    if a.dim:
        sums[ia] += a.arrays["sums"]
    if b.dim:
        sums[ib] += sign * b.arrays["sums"]
    arrays: dict[str, AnyArray] = {"sums": sums}
    scalars: dict[str, float] = {}
    if a.strategy == "slda":
        second = np.zeros((dim, dim))
        for part, s in ((a, 1.0), (b, sign)):
            if part.dim:
                second += s * part.arrays["second"]
        arrays["second"] = second
        scalars["n_updates"] = a.scalars.get("n_updates", 0.0) + sign * b.scalars.get(
            "n_updates", 0.0
        )
    return Contribution("statistics", a.strategy, labels, counts, arrays, scalars)


def check_compatible(a: Contribution, b: Contribution) -> None:
    """``ValueError`` unless two contributions are of one strategy and latent size."""
    if (a.kind, a.strategy) != (b.kind, b.strategy):
        raise ValueError(
            f"cannot merge a {a.strategy!r} head with a {b.strategy!r} head; a fleet shares "
            "one strategy"
        )
    if a.dim and b.dim and a.dim != b.dim:
        raise ValueError(f"cannot merge {a.dim}-d latents with {b.dim}-d latents")
