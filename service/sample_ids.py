"""Sample ids remembered for idempotent learning: a retried sample is not learned twice."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class RecentIds:
    """The last ``capacity`` sample ids, for idempotent learning.

    >>> ids = RecentIds(2)
    >>> ids.add_many(["a", "b", "c"]); "a" in ids, "c" in ids
    (False, True)
    """

    def __init__(self, capacity: int, ids: Sequence[str] = ()) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._set: set[str] = set()
        self.add_many(ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._set

    def add_many(self, ids: Sequence[str | None]) -> None:
        for sample_id in ids:
            if sample_id is None or sample_id in self._set or self.capacity == 0:
                continue
            self._order.append(sample_id)
            self._set.add(sample_id)
            if len(self._order) > self.capacity:
                self._set.discard(self._order.popleft())

    def discard_many(self, ids: Sequence[str | None]) -> None:
        gone = {i for i in ids if i is not None} & self._set
        if gone:
            self._set -= gone
            self._order = deque(i for i in self._order if i not in gone)

    def to_list(self) -> list[str]:
        return list(self._order)
