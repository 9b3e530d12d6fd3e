"""End-to-end request latency over one interval of the dashboard's history.

The request-timing middleware measures each HTTP request from its arrival to the last
byte of its response (what a client sees, body upload and decoding included) and gives
the same figure to the Prometheus histogram and to this window; the dashboard's sampler
drains the window once per interval into percentiles, so both agree on every request.
"""

from __future__ import annotations

import math
import random
import threading

#: Routes whose latency the dashboard charts (as POST requests, every status).
ROUTES = ("/predict", "/learn")
#: Durations kept per route and interval: beyond it a uniform sample of them (reservoir),
#: so a burst cannot grow memory while the percentiles stay unbiased.
KEEP = 2048


class LatencyWindow:
    """Request durations per route since the last :meth:`drain`.

    >>> w = LatencyWindow()
    >>> for s in (0.1, 0.2, 0.3, 0.4):
    ...     w.add("/predict", s)
    >>> w.add("/stats", 9.0)  # not a charted route
    >>> summary = w.drain()
    >>> summary["/predict"]["count"], summary["/predict"]["p50"], summary["/learn"]["count"]
    (4, 0.2, 0)
    >>> w.drain()["/predict"]["p95"] is None  # nothing since
    True
    """

    def __init__(self, routes: tuple[str, ...] = ROUTES, keep: int = KEEP) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._seen = dict.fromkeys(routes, 0)
        self._kept: dict[str, list[float]] = {r: [] for r in routes}
        self._max = dict.fromkeys(routes, 0.0)  # exact, even when the kept ones are a sample
        self._rng = random.Random(0)

    def add(self, route: str, seconds: float) -> None:
        kept = self._kept.get(route)
        if kept is None:
            return
        with self._lock:
            self._seen[route] += 1
            self._max[route] = max(self._max[route], seconds)
            if len(kept) < self.keep:
                kept.append(seconds)
            else:  # Algorithm R: each duration stays with probability keep / seen
                slot = self._rng.randrange(self._seen[route])
                if slot < self.keep:
                    kept[slot] = seconds

    def drain(self) -> dict[str, dict[str, float | None]]:
        """Per route: ``count`` of requests, and ``p50``, ``p95``, ``max`` seconds (None
        without requests); then starts a new interval."""
        with self._lock:
            taken = {r: (self._seen[r], sorted(k), self._max[r]) for r, k in self._kept.items()}
            for route in self._kept:
                self._seen[route], self._kept[route], self._max[route] = 0, [], 0.0
        return {r: summary(n, kept, top) for r, (n, kept, top) in taken.items()}


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values (None when empty).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.95)
    (2.0, 4.0)
    """
    if not ordered:
        return None
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def summary(count: int, ordered: list[float], top: float) -> dict[str, float | None]:
    return {
        "count": count,
        "p50": percentile(ordered, 0.5),
        "p95": percentile(ordered, 0.95),
        "max": top if count else None,
    }
