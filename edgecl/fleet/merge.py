"""The server's side: merge the devices' contributions into one head."""

from __future__ import annotations

import numpy as np

from edgecl.fleet.contribution import Contribution, align, from_arrays, to_arrays, union
from edgecl.fleet.statistics import check_compatible, combine
from edgecl.types import AnyArray, State


def merge(parts: list[Contribution]) -> Contribution:
    """One contribution from several devices' (at least one).

    Statistics add: the merged head is the head of every device's samples. Weights are
    averaged per class, aligned by label name, each device's row weighted by how many
    samples of that class it learned (a device that never saw a class has no say on it);
    hidden layers, if any, by each device's total. The merged ``counts`` are the sums.

    >>> a = Contribution("weights", "naive", ["x", "y"], np.array([3, 1]),
    ...                  {"w": np.array([[1.0], [5.0]]), "b": np.zeros(2)})
    >>> b = Contribution("weights", "naive", ["y", "z"], np.array([3, 2]),
    ...                  {"w": np.array([[1.0], [7.0]]), "b": np.zeros(2)})
    >>> m = merge([a, b])
    >>> m.labels, m.arrays["w"].ravel().tolist(), m.counts.tolist()
    (['x', 'y', 'z'], [1.0, 2.0, 7.0], [3, 4, 2])
    """
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    for part in parts[1:]:
        check_compatible(first, part)
    if first.kind == "statistics":
        out = first
        for part in parts[1:]:
            out = combine(out, part)
        return out
    return _average(parts)


def _average(parts: list[Contribution]) -> Contribution:
    labels = union(*(p.labels for p in parts))
    k, dim = len(labels), max(p.dim for p in parts)
    counts = np.zeros(k, np.int64)
    w, b = np.zeros((k, dim)), np.zeros(k)
    for p in parts:
        idx = align(p.labels, labels)
        counts[idx] += p.counts
        if p.dim:
            w[idx] += p.counts[:, None] * p.arrays["w"]
            b[idx] += p.counts * p.arrays["b"]
    seen = np.maximum(counts, 1)
    arrays: dict[str, AnyArray] = {
        "w": (w / seen[:, None]).astype(np.float32),
        "b": (b / seen).astype(np.float32),
    }
    totals = np.array([float(p.counts.sum()) for p in parts])
    for name in (n for n in first_layers(parts)):
        stack = np.stack([p.arrays[name] for p in parts]).astype(np.float64)
        weights = totals / max(totals.sum(), 1.0)
        arrays[name] = np.tensordot(weights, stack, axes=1).astype(np.float32)
    return Contribution("weights", parts[0].strategy, labels, counts, arrays)


def first_layers(parts: list[Contribution]) -> list[str]:
    """Hidden-layer arrays every part has, of one shape (averaged whole)."""
    names = [n for n in parts[0].arrays if n.startswith("layer:")]
    return [
        n
        for n in names
        if all(p.arrays.get(n, np.empty(0)).shape == parts[0].arrays[n].shape for p in parts)
    ]


class Aggregator:
    """The fleet's memory on the server: each device's latest contribution by device id.

    A device sends everything it learned itself (not only since the last round) and its
    entry is replaced, so a device that resends after a crash is never counted twice, and
    a device absent from a round still counts with what it sent before.
    """

    def __init__(self) -> None:
        self.parts: dict[str, Contribution] = {}
        self.round = 0

    def update(self, device: str, part: Contribution) -> None:
        """Take a device's contribution; ``ValueError`` (nothing changes) when it does not
        fit the fleet's."""
        for other_id, other in self.parts.items():
            if other_id != device:
                check_compatible(other, part)
        self.parts[device] = part

    def state_dict(self) -> State:
        """Every device's entry, to keep the fleet across server restarts."""
        parts = {}
        for device, part in self.parts.items():
            header, arrays = to_arrays(part)
            parts[device] = {"header": header, "arrays": arrays}
        return {"parts": parts, "round": self.round}

    @classmethod
    def from_state(cls, state: State) -> Aggregator:
        """``ValueError`` for a state that is not an aggregator's."""
        out = cls()
        try:
            for device, part in dict(state["parts"]).items():
                arrays = [np.asarray(a) for a in part["arrays"]]
                out.update(str(device), from_arrays(part["header"], arrays))
            out.round = int(state.get("round", 0))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a fleet server's state: {exc}") from None
        return out

    def merged(self) -> Contribution | None:
        if not self.parts:
            return None
        return merge([self.parts[d] for d in sorted(self.parts)])

    def origins(self) -> dict[str, list[str]]:
        """Per label (as text), the devices that taught it."""
        out: dict[str, list[str]] = {}
        for device in sorted(self.parts):
            part = self.parts[device]
            for label, n in zip(part.labels, part.counts.tolist(), strict=True):
                if n > 0:
                    out.setdefault(str(label), []).append(device)
        return out
