"""The daemon has glibc map large buffers apart, unless the environment says otherwise."""

from __future__ import annotations

import platform

import pytest

from service.malloc_tuning import map_large_buffers


def test_large_buffers_are_mapped_apart_unless_the_environment_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert map_large_buffers() is (platform.libc_ver()[0] == "glibc")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert map_large_buffers() is False


def test_freed_heap_pages_are_handed_back_where_glibc_can() -> None:
    from edgecl.heap import release_freed_memory

    freed = [bytearray(64 << 10) for _ in range(64)]  # heap-sized, below the mmap threshold
    del freed
    assert release_freed_memory() is (platform.libc_ver()[0] == "glibc")
