"""Streaming LDA's work in threads: one array computed beside learning, and the exit guard
every such thread needs."""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from edgecl.strategies.linear import Float64Array

#: Longest wait at exit for a thread to leave its BLAS or LAPACK call, in seconds.
EXIT_WAIT_S = 30.0


class Stoppable(Protocol):
    def cancel(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()


def track(job: Stoppable) -> None:
    """Have ``job``'s thread stopped and joined before the interpreter exits."""
    _live.add(job)


@atexit.register
def _stop_all() -> None:
    """Stop every thread before the interpreter tears down: one still inside a LAPACK call
    while NumPy and OpenBLAS are finalised can crash the exiting process (seen: SIGSEGV
    in about one exit in ten)."""
    live = list(_live)
    for job in live:
        job.cancel()
    for job in live:
        job.join(EXIT_WAIT_S)


class Job:
    """``work(*args)`` in a daemon thread named ``name``; the caller takes the array at a
    point of its own choosing (:meth:`finish`), so what it holds does not depend on the
    thread's timing.

    >>> import numpy as np
    >>> Job("double", lambda a: 2 * a, np.ones(2)).finish().tolist()
    [2.0, 2.0]
    """

    def __init__(self, name: str, work: Callable[..., Float64Array], *args: Any) -> None:
        self._result: Float64Array | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(work, *args), name=name, daemon=True
        )
        self._thread.start()
        track(self)

    def finish(self) -> Float64Array | None:
        """Wait for the array; None if computing it failed (the caller computes it)."""
        self._thread.join()
        return None if self._error is not None else self._result

    def cancel(self) -> None:
        """Nothing to stop early: the work is one BLAS call."""

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self, work: Callable[..., Float64Array], *args: Any) -> None:
        try:
            self._result = work(*args)
        except BaseException as exc:  # the caller computes the same itself
            self._error = exc
