"""What one device sends to the fleet: per-class statistics or per-class head weights,
keyed by label name, with how many samples stand behind each class."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from edgecl.types import AnyArray, Label, check_label

Kind = Literal["statistics", "weights"]

#: Heads merged by their sufficient statistics; every other head with ``w``/``b`` rows
#: is federated-averaged.
STATISTICS = ("slda", "ncm")


@dataclass
class Contribution:
    """A head's share in the fleet, by label name.

    ``statistics`` (``slda``, ``ncm``): ``counts[c]`` samples, ``arrays["sums"][c]`` their
    latent sum, and for ``slda`` ``arrays["second"]`` (``D×D``) the within-class scatter
    plus ``Σ_c n_c μ_c μ_cᵀ`` and ``scalars["n_updates"]`` (samples folded into it). All
    are sums: contributions add and subtract exactly.

    ``weights`` (SGD heads): output rows ``arrays["w"]``/``arrays["b"]`` per class and
    ``counts[c]`` the samples this device learned of the class (the FedAvg weight);
    hidden layers, if any, as ``arrays["layer:<name>"]``.
    """

    kind: Kind
    strategy: str
    labels: list[Label]
    counts: AnyArray
    arrays: dict[str, AnyArray] = field(default_factory=dict)
    scalars: dict[str, float] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        a = self.arrays.get("sums", self.arrays.get("w"))
        return 0 if a is None or a.ndim != 2 else int(a.shape[1])

    def nbytes(self) -> int:
        """Bytes of the arrays (what dominates a message)."""
        return int(self.counts.nbytes + sum(a.nbytes for a in self.arrays.values()))


def _meta(c: Contribution) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "strategy": c.strategy,
        "labels": list(c.labels),
        "arrays": sorted(c.arrays),
        "scalars": c.scalars,
    }


def to_arrays(c: Contribution) -> tuple[str, list[AnyArray]]:
    """A JSON header and the arrays in the order it names (counts first): what a
    transport carries.

    >>> c = Contribution("statistics", "ncm", ["a", 7], np.array([2, 1]),
    ...                  {"sums": np.ones((2, 3))})
    >>> back = from_arrays(*to_arrays(c))
    >>> back.labels, back.counts.tolist(), back.dim
    (['a', 7], [2, 1], 3)
    """
    return json.dumps(_meta(c)), [c.counts, *(_packed(k, c.arrays[k]) for k in sorted(c.arrays))]


def _packed(name: str, a: AnyArray) -> AnyArray:
    """``second`` is symmetric: its upper triangle is all of it (half the bytes)."""
    return a[np.triu_indices(len(a))] if name == "second" else a


def _unpacked(name: str, a: AnyArray) -> AnyArray:
    if name != "second":
        return a
    dim = int(round((np.sqrt(8 * len(a) + 1) - 1) / 2))
    if a.ndim != 1 or dim * (dim + 1) // 2 != len(a):
        raise ValueError("contribution array 'second' is not an upper triangle")
    full = np.zeros((dim, dim))
    full[np.triu_indices(dim)] = a
    return np.asarray(full + np.triu(full, 1).T)


def from_arrays(header: str, arrays: list[AnyArray]) -> Contribution:
    """The contribution :func:`to_arrays` described; ``ValueError`` for a malformed one."""
    try:
        meta = json.loads(header)
        kind, names = meta["kind"], list(meta["arrays"])
        labels = [check_label(label) for label in meta["labels"]]
        scalars = {str(k): float(v) for k, v in dict(meta["scalars"]).items()}
        strategy = str(meta["strategy"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"malformed fleet contribution header: {exc}") from exc
    if kind not in ("statistics", "weights"):
        raise ValueError(f"unknown contribution kind {kind!r}")
    if len(arrays) != len(names) + 1:
        raise ValueError(f"contribution names {len(names)} arrays but carries {len(arrays) - 1}")
    counts = np.asarray(arrays[0], dtype=np.int64)
    if counts.shape != (len(labels),) or len(set(map(_key, labels))) != len(labels):
        raise ValueError("contribution counts do not match its labels (one per distinct label)")
    out = {n: _unpacked(n, np.asarray(a)) for n, a in zip(names, arrays[1:], strict=True)}
    for name, a in out.items():
        if name in ("sums", "w", "b") and (a.shape[:1] != (len(labels),)):
            raise ValueError(
                f"contribution array {name!r} has {a.shape[:1]} rows, not one per label"
            )
    return Contribution(kind, strategy, labels, counts, out, scalars)


def _key(label: Label) -> tuple[type, Label]:
    return (type(label), label)


def align(labels: list[Label], order: list[Label]) -> AnyArray:
    """For each of ``labels``, its index in ``order`` (every label must be in it)."""
    index = {_key(label): i for i, label in enumerate(order)}
    return np.array([index[_key(label)] for label in labels], dtype=np.int64)


def union(*label_lists: list[Label]) -> list[Label]:
    """Labels of all the lists, each once, in order of first appearance."""
    seen: dict[tuple[type, Label], Label] = {}
    for labels in label_lists:
        for label in labels:
            seen.setdefault(_key(label), label)
    return list(seen.values())
