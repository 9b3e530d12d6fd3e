"""A budget of units (pixels, bytes) that concurrent work takes a share of, waiting its
turn, so what many requests hold at once stays bounded."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager


class Budget:
    """At most ``units`` taken at once, shared by every thread; a larger ask takes it all.

    >>> budget = Budget(100)
    >>> with budget.take(60):
    ...     budget.in_use
    60
    >>> budget.in_use
    0
    """

    def __init__(self, units: int) -> None:
        if units < 1:
            raise ValueError(f"a budget must be >= 1, got {units}")
        self.units = units
        self.in_use = 0
        self._cond = threading.Condition()

    @contextmanager
    def take(self, units: int) -> Iterator[None]:
        want = max(0, min(units, self.units))
        with self._cond:
            self._cond.wait_for(lambda: self.in_use + want <= self.units)
            self.in_use += want
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= want
                self._cond.notify_all()


class AsyncBudget:
    """:class:`Budget` for coroutines: waiting for a share does not hold a thread.

    >>> import asyncio
    >>> async def demo() -> int:
    ...     budget = AsyncBudget(10)
    ...     async with budget.take(4):
    ...         return budget.in_use
    >>> asyncio.run(demo())
    4
    """

    def __init__(self, units: int) -> None:
        if units < 1:
            raise ValueError(f"a budget must be >= 1, got {units}")
        self.units = units
        self.in_use = 0
        self._cond: asyncio.Condition | None = None  # made in the event loop that uses it

    @asynccontextmanager
    async def take(self, units: int) -> AsyncIterator[None]:
        if self._cond is None:
            self._cond = asyncio.Condition()
        cond, want = self._cond, max(0, min(units, self.units))
        async with cond:
            await cond.wait_for(lambda: self.in_use + want <= self.units)
            self.in_use += want
        try:
            yield
        finally:
            async with cond:
                self.in_use -= want
                cond.notify_all()
