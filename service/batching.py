"""A bounded queue that hands its consumer micro-batches (max samples, max wait)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from service.errors import NotAcceptingError, QueueFullError

T = TypeVar("T")
_STOP = object()


class MicroBatchQueue(Generic[T]):
    """FIFO of items; :meth:`take` gathers up to ``max_batch`` samples within ``max_wait_s``.

    ``size(item)`` is how many samples an item counts for (0 for control items).
    ``coming()`` says whether more items are on their way (e.g. requests being embedded):
    only then does :meth:`take` wait for them, so a lone item is not delayed.

    >>> q = MicroBatchQueue[list[int]](capacity=4, max_batch=3, max_wait_s=0.0, size=len)
    >>> q.open()
    >>> for item in ([1], [2, 3], [4]):
    ...     q.put(item)
    >>> q.take(), q.take()  # [4] would overflow the first batch: it waits for the next
    ([[1], [2, 3]], [[4]])
    >>> q.close(); q.take() is None
    True
    """

    def __init__(
        self,
        capacity: int,
        max_batch: int,
        max_wait_s: float,
        size: Callable[[T], int],
        coming: Callable[[], object] = lambda: True,
    ) -> None:
        self.capacity, self.max_batch, self.max_wait_s = capacity, max_batch, max_wait_s
        self.size, self.coming = size, coming
        self.rejected = 0
        self._queue: queue.Queue[object] = queue.Queue()
        self._lock = threading.Lock()  # orders puts against close()
        self._carry: object | None = None
        self._open = False

    @property
    def accepting(self) -> bool:
        return self._open

    def __len__(self) -> int:
        return self._queue.qsize()

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        """Refuse new items; :meth:`take` returns what is queued, then None."""
        with self._lock:
            if self._open:
                self._open = False
                self._queue.put(_STOP)

    def put(self, item: T, bounded: bool = True) -> None:
        """Queue ``item``; ``bounded=False`` is for control items that must not be refused."""
        with self._lock:
            if not self._open:
                raise NotAcceptingError("the service is not accepting work (starting or stopping)")
            if bounded and self._queue.qsize() >= self.capacity:
                self.rejected += 1
                raise QueueFullError(
                    f"the learn queue is full ({self.capacity} requests); retry later"
                )
            self._queue.put(item)

    def take(self, idle_timeout: float = 0.5) -> list[T] | None:
        """The next micro-batch; ``[]`` after ``idle_timeout`` without work; None once closed
        and drained. An item that would overflow the batch waits for the next one."""
        first, self._carry = self._carry, None
        if first is None:
            try:
                first = self._queue.get(timeout=idle_timeout)
            except queue.Empty:
                return []
        if first is _STOP:
            return None
        batch = [cast(T, first)]
        n = self.size(batch[0])
        deadline = time.monotonic() + self.max_wait_s
        while n < self.max_batch:
            try:
                remaining = deadline - time.monotonic()
                if remaining > 0 and self.coming():
                    item = self._queue.get(timeout=remaining)
                else:
                    item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP or n + self.size(cast(T, item)) > self.max_batch:
                self._carry = item
                break
            batch.append(cast(T, item))
            n += self.size(batch[-1])
        return batch


class InFlight:
    """Counts work on its way to a queue (``with in_flight:`` around it); calling it says
    whether any is (a :class:`MicroBatchQueue`'s ``coming``).

    >>> on_the_way = InFlight()
    >>> with on_the_way:
    ...     on_the_way()
    True
    >>> on_the_way()
    False
    """

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self._n += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._n -= 1

    def __call__(self) -> bool:
        return self._n > 0
