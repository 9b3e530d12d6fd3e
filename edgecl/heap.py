"""Giving freed heap memory back to the system (glibc's ``malloc_trim``; nothing elsewhere)."""

from __future__ import annotations

import ctypes
from typing import Any


def _libc() -> Any:
    try:
        lib = ctypes.CDLL(None)  # the symbols already loaded: libc's on Linux
    except OSError:
        return None
    return lib if hasattr(lib, "malloc_trim") else None


_LIBC = _libc()


def release_freed_memory() -> bool:
    """Give the heap pages freed since the last call back to the system; whether it could.

    glibc keeps freed pages in its heaps for the next allocation: after a large working
    set (a training batch's activations, a checkpoint's state) they would stay resident
    under the next one's. Every whole free page goes back (glibc >= 2.8 trims inside the
    heaps too), which costs about a millisecond.
    """
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True
