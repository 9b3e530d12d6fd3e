"""Pauses of Python's cyclic garbage collector: while it runs every thread waits, so a long
one is a latency spike on every request in flight."""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GcPauses:
    """``edgecl_gc_pause_seconds{generation}``: each collection's duration, while started.

    >>> from prometheus_client import generate_latest
    >>> pauses = GcPauses(CollectorRegistry())
    >>> pauses.start(); _ = gc.collect(); pauses.stop()
    >>> b'edgecl_gc_pause_seconds_count{generation="2"} 1.0' in generate_latest(pauses.registry)
    True
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.seconds = Histogram(
            "edgecl_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector by generation (every thread waits).",
            ["generation"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds.labels(str(info["generation"])).observe(
                time.perf_counter() - self._started
            )

    def start(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
