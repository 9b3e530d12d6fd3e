"""State dicts that share their arrays instead of copying them, for a state written at once.

A ``state_dict()`` copies its arrays, so that what it returns stays as it was while the
object goes on learning. A checkpoint needs no such copy: the thread that changes the
learner writes the state before it changes anything again, and a copy of the replay store
and of AR1's Synaptic Intelligence state is tens of megabytes at the peak.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import numpy as np

_SHARED: ContextVar[bool] = ContextVar("edgecl_shared_state_arrays", default=False)

A = TypeVar("A", bound=np.ndarray)


@contextmanager
def shared_arrays() -> Iterator[None]:
    """Within the block (and in this thread only), ``state_dict()`` gives an object's own
    arrays where it would copy them: the state is then valid only until the object next
    changes, so it must be written (or dropped) before that.

    >>> a = np.zeros(2)
    >>> with shared_arrays():
    ...     owned(a) is a
    True
    >>> owned(a) is a
    False
    """
    token = _SHARED.set(True)
    try:
        yield
    finally:
        _SHARED.reset(token)


def owned(arr: A) -> A:
    """A copy of ``arr`` for a state, or ``arr`` itself inside :func:`shared_arrays`."""
    return arr if _SHARED.get() else arr.copy()
