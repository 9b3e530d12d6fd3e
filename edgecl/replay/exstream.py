"""ExStream's memory (Hayes, Cahill & Kanan, ICRA 2019): per-class buffers of merged prototypes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edgecl.replay.base import EncodedStore, check_int
from edgecl.replay.table import Encoded
from edgecl.types import AnyArray, IntArray, State

Float32Array = npt.NDArray[np.float32]
#: Per item: its merge count (int64), its nearest neighbour's position (int64) and squared
#: distance (float32).
BOOKKEEPING_NBYTES = 8 + 8 + 4
ROWS_PER_CHUNK = 256


def _sqdist(rows: Float32Array, members: Float32Array) -> Float32Array:
    """Squared distances ``(k, n)`` from each of ``rows`` to each of ``members``."""
    d = (
        np.sum(rows**2, axis=1)[:, None]
        + np.sum(members**2, axis=1)[None, :]
        - 2.0 * (rows @ members.T)
    )
    out: Float32Array = np.maximum(d, 0.0).astype(np.float32)
    return out


class _Neighbours:
    """Nearest other member of each member of one class (lowest position among ties).

    It is part of the store's state: a store loaded from it continues with the very same
    numbers, so it makes the same merges as the one that saved it.
    """

    def __init__(self, x: Float32Array) -> None:
        n = len(x)
        self.nn = np.zeros(n, dtype=np.int64)
        self.dist = np.full(n, np.inf, dtype=np.float32)
        for s in range(0, n, ROWS_PER_CHUNK):
            self._refresh(x, np.arange(s, min(s + ROWS_PER_CHUNK, n)))

    @classmethod
    def restored(cls, nn: IntArray, dist: Float32Array) -> _Neighbours:
        out = cls.__new__(cls)
        out.nn, out.dist = nn.astype(np.int64), dist.astype(np.float32)
        return out

    def _refresh(self, x: Float32Array, rows: IntArray) -> Float32Array:
        """Recompute the entries ``rows`` from scratch; returns their distance rows."""
        d = _sqdist(x[rows], x)
        d[np.arange(len(rows)), rows] = np.inf
        if len(rows) and len(x) > 1:
            self.nn[rows] = np.argmin(d, axis=1)
            self.dist[rows] = d[np.arange(len(rows)), self.nn[rows]]
        return d

    def closest_pair(self) -> tuple[int, int]:
        i = int(np.argmin(self.dist))
        return min(i, int(self.nn[i])), max(i, int(self.nn[i]))

    def changed(self, x: Float32Array, rows: list[int]) -> None:
        """Members ``rows`` (ascending) of ``x`` took new values: bring every entry up to date."""
        stale = np.isin(self.nn, rows)
        d = self._refresh(x, np.array(rows))
        for k, i in enumerate(rows):
            # Others may now have i as nearest (ties go to the lower position).
            closer = (d[k] < self.dist) | ((d[k] == self.dist) & (i < self.nn))
            closer[rows] = False
            self.nn[closer], self.dist[closer] = i, d[k][closer]
            stale &= ~closer
        stale[rows] = False
        self._refresh(x, np.flatnonzero(stale))

    def appended(self, x: Float32Array) -> None:
        """The last member of ``x`` is new."""
        i = len(x) - 1
        self.nn = np.append(self.nn, i)
        self.dist = np.append(self.dist, np.float32(np.inf))
        d = self._refresh(x, np.array([i]))[0]
        closer = d < self.dist  # a tie keeps the lower position
        self.nn[closer], self.dist[closer] = i, d[closer]

    def deleted(self, x: Float32Array, i: int) -> None:
        """Member ``i`` was removed; ``x`` holds the remaining members."""
        keep = np.arange(len(self.nn)) != i
        nn, self.dist = self.nn[keep], self.dist[keep]
        stale = nn == i
        self.nn = nn - (nn > i)
        self._refresh(x, np.flatnonzero(stale))


class ExStreamStore(EncodedStore):
    """ExStream's memory: one buffer of prototypes per class, full buffers merge.

    Each held item is a prototype with a count (the samples merged into it). A class buffer
    holds at most ``capacity`` prototypes: ``class_capacity`` if given (the paper fixes a
    capacity per class), and never more than the class's share of the byte budget
    (``max_bytes`` over the bytes per item, divided by the number of classes seen). An
    arriving sample of class ``y`` joins ``y``'s buffer with count 1 while there is room;
    once it is full, the two nearest prototypes of ``y`` (Euclidean) are replaced by their
    count-weighted mean, as in the paper's reference code, and the sample takes the freed
    slot. When a new class arrives and the shares shrink, each buffer over its new share
    merges its nearest pairs until it fits. With more classes than items fit, a class that
    finds no room gets no buffer. ``sample`` draws prototypes uniformly (the reference code
    trains on every prototype once per sample); ``counts`` are the merge counts, and
    ``evictions`` counts merges (items no longer held on their own).

    Merging needs the latents as numbers: ``lz4`` (raw images) is refused. The nearest
    neighbour of each prototype is cached and kept up to date per merge (memory linear in
    the items, counted in ``nbytes`` with the counts: :data:`BOOKKEEPING_NBYTES` per item).

    >>> store = ExStreamStore(max_bytes=4 * (2 + 4 + 8 + 20), encoding="int8")  # 4 items
    >>> store.add_many(np.array([[0, 0], [0, 1], [5, 5], [9, 9]]), np.zeros(4, np.int64))
    >>> store.add(np.array([9, 8]), 0)  # full: [0, 0] and [0, 1] merge, [9, 8] comes in
    >>> z, _ = store.items()
    >>> np.round(z, 1).tolist(), store.counts.tolist()
    ([[0.0, 0.5], [9.0, 8.0], [5.0, 5.0], [9.0, 9.0]], [2, 1, 1, 1])
    >>> store.add(np.array([1, 1]), 1)  # a new class: each class may keep 2 prototypes
    >>> len(store), store.class_counts
    (3, {0: 2, 1: 1})
    """

    name = "exstream"
    extra_nbytes = BOOKKEEPING_NBYTES

    def __init__(
        self,
        max_bytes: int,
        encoding: str = "int8",
        seed: int = 0,
        class_capacity: int | None = None,
    ) -> None:
        super().__init__(max_bytes, encoding, seed)
        if self.encoding == "lz4":
            raise ValueError("encoding lz4 holds raw images; exstream merges latents")
        self.class_capacity = (
            None if class_capacity is None else check_int(class_capacity, "class_capacity", 1)
        )
        self._counts = np.zeros(0, dtype=np.int64)
        self._classes: list[int] = []  # in order of arrival
        self._neighbours: dict[int, _Neighbours] = {}

    @property
    def counts(self) -> IntArray:
        """Samples merged into each held prototype, in storage order."""
        return self._counts[: len(self)].copy()

    @property
    def class_counts(self) -> dict[int, int]:
        """Prototypes held per class, in the order classes first arrived."""
        held = self._items.labels
        return {c: int(np.count_nonzero(held == c)) for c in self._classes}

    def capacity(self, n_classes: int, item_nbytes: int) -> int:
        """Prototypes one class may hold when ``n_classes`` share the budget (at least 1)."""
        share = max(1, self.max_bytes // item_nbytes // max(n_classes, 1))
        return share if self.class_capacity is None else min(share, self.class_capacity)

    def add_many(self, z: AnyArray, y: AnyArray) -> None:
        values, labels = self._check(z, y)
        enc = self._items.encode(values)  # raises if one item alone is over the budget
        # Validation is done: from here on the state changes.
        flat = values.reshape(len(values), -1).astype(np.float32)
        for row in range(len(values)):
            self._offer(flat[row], int(labels[row]), enc, row, labels)

    def _members(self, c: int) -> tuple[IntArray, Float32Array]:
        """Slots of class ``c`` (ascending) and their decoded values, flattened."""
        slots = np.flatnonzero(self._items.labels == c)
        return slots, self._decode(slots)

    def _decode(self, slots: IntArray) -> Float32Array:
        size = int(np.prod(self._items.shape or (0,)))
        return self._items.decode(slots).reshape(len(slots), size).astype(np.float32)

    def _neighbours_of(self, c: int, x: Float32Array) -> _Neighbours:
        nb = self._neighbours.get(c)
        if nb is None or len(nb.nn) != len(x):
            nb = self._neighbours[c] = _Neighbours(x)
        return nb

    def _offer(self, value: Float32Array, c: int, enc: Encoded, row: int, labels: IntArray) -> None:
        table = self._items
        per_item = int(enc.sizes[row])
        if c not in self._classes:
            self._classes.append(c)
            self._shrink(self.capacity(len(self._classes), per_item))
        slots, x = self._members(c)
        if len(slots) < self.capacity(len(self._classes), per_item) and (
            table.nbytes + per_item <= self.max_bytes
        ):
            nb = self._neighbours_of(c, x) if len(slots) else None
            table.append(enc, np.array([row]), labels)
            self._counts = np.append(self._counts[: len(table) - 1], 1)
            if nb is not None:
                nb.appended(np.vstack([x, self._decode(np.array([len(table) - 1]))]))
            return
        if not len(slots):
            return  # no room left for another class buffer
        if len(slots) == 1:
            # A single prototype: the sample merges into it.
            self._merge_into(slots[0], x[0], value, 1, c)
            return
        nb = self._neighbours_of(c, x)
        i, j = nb.closest_pair()
        self._merge_into(slots[i], x[i], x[j], int(self._counts[slots[j]]), c)
        table.put(slots[j : j + 1], enc, np.array([row]), labels)
        self._counts[slots[j]] = 1
        x[[i, j]] = self._decode(slots[[i, j]])
        nb.changed(x, [i, j])

    def _merge_into(
        self, slot: int, a: Float32Array, b: Float32Array, count_b: int, c: int
    ) -> None:
        """Hold at ``slot`` (value ``a``) the count-weighted mean of ``a`` and ``b``."""
        count_a = int(self._counts[slot])
        mean = (count_a * a.astype(np.float64) + count_b * b) / (count_a + count_b)
        shape = self._items.shape or (len(mean),)
        enc = self._items.encode(mean.astype(np.float32).reshape(1, *shape))
        self._items.put(np.array([slot]), enc, np.array([0]), np.array([c], dtype=np.int64))
        self._counts[slot] = count_a + count_b
        self.evictions += 1

    def _shrink(self, cap: int) -> None:
        """Merge nearest pairs in every buffer over ``cap`` prototypes until it fits."""
        freed: list[int] = []
        for c in self._classes:
            slots, x = self._members(c)
            if len(slots) <= cap:
                continue
            nb = self._neighbours_of(c, x)
            while len(slots) > cap:
                i, j = nb.closest_pair()
                self._merge_into(slots[i], x[i], x[j], int(self._counts[slots[j]]), c)
                freed.append(int(slots[j]))
                x[i] = self._decode(slots[i : i + 1])[0]
                slots, x = np.delete(slots, j), np.delete(x, j, axis=0)
                nb.deleted(x, j)
                nb.changed(x, [i])  # i < j: its position did not move
        if freed:
            kept = self._items.remove(np.array(freed, dtype=np.int64))
            self._counts = self._counts[kept]
            # Slots moved: the cached neighbours follow slot order, so they are rebuilt.
            self._neighbours.clear()

    def state_dict(self) -> State:
        state = self._base_state()
        state["counts"] = self.counts
        state["classes"] = list(self._classes)
        # The nearest-neighbour cache, per item: the slot of its neighbour (-1: the class
        # has no cache yet and will build one when next touched) and the squared distance.
        neighbour = np.full(len(self), -1, dtype=np.int64)
        distance = np.full(len(self), np.inf, dtype=np.float32)
        for c, nb in self._neighbours.items():
            slots = np.flatnonzero(self._items.labels == c)
            neighbour[slots], distance[slots] = slots[nb.nn], nb.dist
        state["neighbour"], state["distance"] = neighbour, distance
        return state

    def load_state_dict(self, state: State) -> None:
        items, rng = self._load_base_state(state)
        counts = np.asarray(state["counts"], dtype=np.int64)
        if counts.shape != (len(items),):
            raise ValueError(f"state has {len(counts)} counts for {len(items)} items")
        classes = [int(c) for c in state["classes"]]
        if not set(items.labels.tolist()) <= set(classes):
            raise ValueError("state holds items of classes it does not list")
        neighbour = np.asarray(state["neighbour"], dtype=np.int64)
        distance = np.asarray(state["distance"], dtype=np.float32)
        if neighbour.shape != (len(items),) or distance.shape != (len(items),):
            raise ValueError("state has a neighbour cache of the wrong length")
        self._neighbours = {}
        for c in classes:
            slots = np.flatnonzero(items.labels == c)
            if len(slots) and np.all(neighbour[slots] >= 0):
                nn = np.searchsorted(slots, neighbour[slots])
                self._neighbours[c] = _Neighbours.restored(nn, distance[slots])
        self._items, self._rng, self._counts, self._classes = items, rng, counts, classes
        self.evictions = int(state["evictions"])
