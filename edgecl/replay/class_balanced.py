"""GDumb's greedy class-balanced sampler within a byte budget."""

from __future__ import annotations

import numpy as np

from edgecl.replay.base import EncodedStore
from edgecl.replay.table import Encoded
from edgecl.types import AnyArray, IntArray, State


class ClassBalancedStore(EncodedStore):
    """GDumb's greedy class-balanced sampler (Prabhu et al., 2020), within ``max_bytes``.

    An item is admitted while it fits. Once it does not, with ``Y`` the classes seen so far
    (its own included), an item of class ``y`` is admitted only if ``y`` holds fewer than
    ``len(store) / |Y|`` items; room is then made by evicting a random item of the largest
    class (a random one among tied largest classes). For lz4 frames of varying size this
    repeats until the item fits, and the item is turned away (nothing evicted) if its own
    class would have to become the one to evict from. When every class keeps arriving the
    class counts settle within one of each other.

    >>> store = ClassBalancedStore(max_bytes=28 * 6, encoding="int8", seed=0)  # 6 items
    >>> store.add_many(np.ones((6, 16)), np.array([0, 0, 0, 0, 0, 0]))
    >>> store.add_many(np.ones((4, 16)), np.array([1, 1, 2, 2]))
    >>> store.class_counts, store.evictions
    ({0: 2, 1: 2, 2: 2}, 4)
    >>> store.add(np.ones(16), 0)  # class 0 already holds its share: turned away
    >>> store.class_counts
    {0: 2, 1: 2, 2: 2}
    """

    name = "class_balanced"

    def __init__(self, max_bytes: int, encoding: str = "int8", seed: int = 0) -> None:
        super().__init__(max_bytes, encoding, seed)
        self._counts: dict[int, int] = {}

    @property
    def class_counts(self) -> dict[int, int]:
        """Held items per class seen, in the order classes first arrived."""
        return dict(self._counts)

    def add_many(self, z: AnyArray, y: AnyArray) -> None:
        values, labels = self._check(z, y)
        enc = self._items.encode(values)
        # Validation is done: from here on the state changes.
        if self._items.nbytes + int(enc.sizes.sum()) <= self.max_bytes:
            if len(values):
                self._items.append(enc, np.arange(len(values)), labels)
            for c in labels.tolist():
                self._counts[c] = self._counts.get(c, 0) + 1
            return
        for row in range(len(values)):
            self._offer(enc, row, labels)

    def _offer(self, enc: Encoded, row: int, labels: IntArray) -> None:
        y = int(labels[row])
        counts = self._counts
        counts.setdefault(y, 0)
        table = self._items
        rows = np.array([row])
        excess = table.nbytes + int(enc.sizes[row]) - self.max_bytes
        if excess <= 0:
            table.append(enc, rows, labels)
            counts[y] += 1
            return
        if counts[y] * len(counts) >= len(table):  # y already holds its share
            return
        victims = self._plan_evictions(y, excess)
        if not victims:
            return
        for slot in victims:
            counts[int(table.labels[slot])] -= 1
        self.evictions += len(victims)
        slots = np.array(victims, dtype=np.int64)
        table.put(slots[:1], enc, rows, labels)
        if len(slots) > 1:
            table.remove(slots[1:])
        counts[y] += 1

    def _plan_evictions(self, y: int, excess: int) -> list[int]:
        """Slots to free for an item of class ``y``: random items of the largest class."""
        table = self._items
        held, sizes = table.labels, table.sizes
        left = dict(self._counts)
        victims: list[int] = []
        freed = 0
        while freed < excess:
            top = max((k for c, k in left.items() if c != y), default=0)
            if top <= left[y]:
                return []
            tied = [c for c, k in left.items() if c != y and k == top]
            c = tied[int(self._rng.integers(len(tied)))] if len(tied) > 1 else tied[0]
            members = np.flatnonzero(held == c)
            if victims:
                members = members[~np.isin(members, victims)]
            slot = int(members[int(self._rng.integers(len(members)))])
            victims.append(slot)
            freed += int(sizes[slot])
            left[c] -= 1
        return victims

    def state_dict(self) -> State:
        state = self._base_state()
        state["classes"] = list(self._counts)
        return state

    def load_state_dict(self, state: State) -> None:
        items, rng = self._load_base_state(state)
        classes = [int(c) for c in state["classes"]]
        held = items.labels
        counts = {c: int(np.count_nonzero(held == c)) for c in classes}
        if sum(counts.values()) != len(items):
            raise ValueError("state holds items of classes it does not list")
        self._items, self._rng, self._counts = items, rng, counts
        self.evictions = int(state["evictions"])
