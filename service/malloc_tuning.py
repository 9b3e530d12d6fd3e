"""glibc malloc for a daemon that handles large buffers: map them apart, give them back.

Freed heap pages go back after each checkpoint and each AR1 batch through
:func:`edgecl.heap.release_freed_memory` (in the library, which AR1 calls too)."""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
#: Allocations of at least this many bytes are mapped on their own and unmapped when freed.
#: Below it: a torch training pass's activations (about 2 MB each), reused from the heap.
MMAP_THRESHOLD = 4 << 20


def map_large_buffers(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc map every allocation of ``threshold`` bytes or more apart and unmap it
    when freed (``mallopt(M_MMAP_THRESHOLD)``). By default glibc raises that threshold to
    the size of each mapped buffer freed, up to 32 MiB, and keeps freed buffers below it in
    its heaps: request bodies, a micro-batch's latents, WAL frames and checkpoint bytes are
    that large, and an AR1 daemon's heaps held over 100 MiB of them, freed but resident.
    Returns whether it was set: not without glibc, nor when ``MALLOC_MMAP_THRESHOLD_``
    already says what to do.
    """
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))
