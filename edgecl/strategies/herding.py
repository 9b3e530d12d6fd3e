"""iCaRL's exemplar memory: herding selection per class within a budget, streaming."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecl.replay.compress import dequantize_int8, quantize_int8
from edgecl.strategies.linear import grow_rows
from edgecl.types import Float64Array, FloatArray, IntArray, State

#: Latents to the features iCaRL averages and compares (a head's last hidden layer).
Features = Callable[[FloatArray], Float64Array]


def normalize(x: FloatArray | Float64Array) -> Float64Array:
    """Rows scaled to unit L2 norm (iCaRL's normalised features); zero rows stay zero."""
    v = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return np.asarray(v / np.where(norm > 0, norm, 1.0), dtype=np.float64)


def herding(features: Float64Array, mean: Float64Array, m: int) -> IntArray:
    """Rebuffi et al.'s herding: ``m`` rows of ``features`` picked one at a time, each
    the one that brings the mean of those picked so far closest to ``mean``
    (``p_k = argmin_x |mean - (x + sum_{j<k} p_j) / k|``), without repetition; ties go to
    the earlier row. Returns their indices in the order picked.

    >>> herding(np.array([[0.0], [1.0], [2.0]]), np.array([1.0]), 2).tolist()
    [1, 0]
    """
    n = len(features)
    chosen: list[int] = []
    taken = np.zeros(n, dtype=bool)
    total = np.zeros(features.shape[1], dtype=np.float64)
    for k in range(1, min(m, n) + 1):
        gap = np.sum((mean - (total + features) / k) ** 2, axis=1)
        gap[taken] = np.inf
        i = int(np.argmin(gap))
        chosen.append(i)
        taken[i] = True
        total += features[i]
    return np.asarray(chosen, dtype=np.int64)


def class_sums(x: Float64Array, labels: IntArray, n_classes: int) -> Float64Array:
    """Per class, the sum of its rows of ``x`` (a one-hot product: ``np.add.at`` is slow)."""
    onehot = np.zeros((n_classes, len(labels)))
    onehot[labels, np.arange(len(labels))] = 1.0
    return np.asarray(onehot @ x, dtype=np.float64)


class Exemplars:
    """Exemplar sets per class (latents, each class's rows in herding order) within
    ``budget`` items, and each class's running mean of normalised latents over every sample
    it ever brought (what herding aims at). Exemplars are held as int8 with a per-item
    scale, as the replay stores hold latents, so that the same number of items costs iCaRL
    the bytes it costs the other strategies.

    Each class may hold ``quota = max(1, budget // classes seen)`` items. Arrivals are
    appended while they fit; when they do not, the class's set and the arrivals are herded
    down to ``quota - quota // 4``, leaving a quarter of the quota for later arrivals (so
    herding, ``O(quota^2 D)``, runs once per ``quota // 4`` arrivals, not per batch). When
    a new class lowers the quota, each larger set is herded down to it (the paper keeps the
    first ``quota`` of its herding order; a set with recent arrivals has no full order).

    >>> ex = Exemplars(budget=2)
    >>> ex.add(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]], np.float32), np.array([0, 0, 1]))
    >>> ex.y.tolist()
    [0, 1]
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.codes = np.zeros((0, 0), dtype=np.int8)
        self.scales = np.zeros(0, dtype=np.float32)
        self.y = np.zeros(0, dtype=np.int64)
        self.sums = np.zeros((0, 0), dtype=np.float64)  # per class: sum of normalised latents
        self.seen = np.zeros(0, dtype=np.int64)

    @property
    def x(self) -> FloatArray:
        """The exemplars as float32 (decoded from their int8 codes)."""
        return dequantize_int8(self.codes, self.scales)

    def quota(self) -> int:
        return max(1, self.budget // max(1, int(np.count_nonzero(self.seen))))

    def add(self, x: FloatArray, labels: IntArray) -> None:
        """Take a batch in: update the running means, then each class's set."""
        if not len(labels):
            return
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        if self.codes.shape[1] == 0:
            self.codes = np.zeros((0, x.shape[1]), dtype=np.int8)
            self.sums = np.zeros((len(self.seen), x.shape[1]))
        self.sums = grow_rows(self.sums, n_classes)
        self.seen = grow_rows(self.seen, n_classes)
        self.sums = self.sums + class_sums(normalize(x), labels, len(self.sums))
        np.add.at(self.seen, labels, 1)
        quota = self.quota()
        classes = sorted(set(self.y.tolist()) | set(labels.tolist()))
        parts = [self.update(c, x[labels == c], quota) for c in classes]
        self.codes, self.scales = quantize_int8(np.concatenate(parts).astype(np.float32))
        self.y = np.concatenate(
            [np.full(len(p), c, np.int64) for c, p in zip(classes, parts, strict=True)]
        )

    def update(self, c: int, arrivals: FloatArray, quota: int) -> FloatArray:
        held = self.x[self.y == c]
        pool = np.concatenate([held, arrivals])
        if len(pool) <= quota:
            return pool
        keep = quota - quota // 4 if len(arrivals) else quota
        mean = self.sums[c] / self.seen[c]
        out: FloatArray = pool[herding(normalize(pool), mean, keep)]
        return out

    def means(
        self, n_classes: int, features: Features | None = None
    ) -> tuple[Float64Array, np.ndarray[tuple[int], np.dtype[np.bool_]]]:
        """Each class's mean of normalised exemplar features, normalised (iCaRL's
        prototypes), and which classes have exemplars. ``features`` maps latents to the
        features averaged (the latents themselves by default)."""
        x = self.x
        f = features(x) if features is not None else np.asarray(x, np.float64)
        sums = np.zeros((n_classes, f.shape[1]))
        counts = np.zeros(n_classes, dtype=np.int64)
        if len(self.y):
            sums = class_sums(normalize(f), self.y, n_classes)
            counts = np.bincount(self.y, minlength=n_classes)
        return normalize(sums / np.maximum(counts, 1)[:, None]), counts > 0

    def nbytes(self) -> int:
        """Bytes held: the exemplars, their labels and the running means."""
        held = self.codes.nbytes + self.scales.nbytes + self.y.nbytes
        return int(held + self.sums.nbytes + self.seen.nbytes)

    def state_dict(self) -> State:
        return {
            "codes": self.codes.copy(),
            "scales": self.scales.copy(),
            "y": self.y.copy(),
            "sums": self.sums.copy(),
            "seen": self.seen.copy(),
        }

    def load_state_dict(self, state: State) -> None:
        self.codes = np.array(state["codes"], dtype=np.int8)
        self.scales = np.array(state["scales"], dtype=np.float32)
        self.y = np.array(state["y"], dtype=np.int64)
        self.sums = np.array(state["sums"], dtype=np.float64)
        self.seen = np.array(state["seen"], dtype=np.int64)
