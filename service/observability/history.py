"""The dashboard's history: a bounded ring buffer, sampled every few seconds.

With a data dir the ring is kept in one small file there (see
:mod:`~service.observability.history_file`), loaded at start and written at most every
``save_every_s`` and at shutdown, so the charts go on across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from service.observability.history_file import load_history, save_history
from service.observability.metrics import Telemetry
from service.observability.stats import StatsSource, top_classes

log = logging.getLogger("edgecl.timeseries")

Point = tuple[float, dict[str, float | None], dict[str, float]]


class TimeSeries:
    """The last ``capacity`` points: named figures, and per-class accuracies of at most
    ``class_limit`` classes per point (the caller lists the classes it cares most about
    first). Memory is bounded by ``capacity * (figures + class_limit)`` numbers.

    >>> ts = TimeSeries(capacity=2, class_limit=1)
    >>> for t in range(3):
    ...     ts.append(float(t), {"rss_bytes": 100.0 + t}, {"a": 0.5, "b": 0.7})
    >>> data = ts.columns()
    >>> data["t"], data["values"]["rss_bytes"], data["classes"]
    ([1.0, 2.0], [101.0, 102.0], {'a': [0.5, 0.5]})
    """

    def __init__(self, capacity: int = 720, class_limit: int = 10) -> None:
        if capacity < 1 or class_limit < 0:
            raise ValueError("capacity must be >= 1 and class_limit >= 0")
        self.capacity, self.class_limit = capacity, class_limit
        self._points: deque[Point] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._points)

    def append(self, t: float, values: dict[str, float | None], classes: dict[str, float]) -> None:
        kept = dict(list(classes.items())[: self.class_limit])
        with self._lock:
            self._points.append((t, dict(values), kept))

    def restore(self, columns: dict[str, Any], until: float) -> int:
        """Put back points given as :meth:`columns` (before any new one): the last
        ``capacity`` of those up to ``until`` (now: a clock set back since, as on a board
        without a real-time clock, must not leave points in the future), each without the
        figures it lacked (``None``). Returns how many."""
        t, values, classes = columns["t"], columns["values"], columns["classes"]
        end = next((i for i, when in enumerate(t) if when > until), len(t))
        with self._lock:
            for i in range(max(end - self.capacity, 0), end):
                figures = {n: col[i] for n, col in values.items() if col[i] is not None}
                kept = {c: col[i] for c, col in classes.items() if col[i] is not None}
                self._points.append((t[i], figures, dict(list(kept.items())[: self.class_limit])))
        return end - max(end - self.capacity, 0)

    def columns(self) -> dict[str, Any]:
        """Aligned columns (``None`` where a point lacks a figure), ready for a chart; the
        per-class columns are those of the classes in the newest point."""
        with self._lock:
            points = list(self._points)
        names: dict[str, None] = {}
        for _, values, _ in points:
            names.update(dict.fromkeys(values))
        labels = list(points[-1][2]) if points else []
        return {
            "t": [t for t, _, _ in points],
            "values": {n: [values.get(n) for _, values, _ in points] for n in names},
            "classes": {c: [classes.get(c) for _, _, classes in points] for c in labels},
        }


class Sampler:
    """Adds a point to ``series`` every ``interval_s`` seconds from a daemon thread: memory,
    accuracy (prequential and probe), throughput, and latency over the last interval (of the
    HTTP requests end to end, and of the writer and the head alone).

    With a ``path``, :meth:`start` loads the history kept there (and marks the restart with
    a point without figures) and the thread writes it at most every ``save_every_s``
    seconds; :meth:`stop` writes it once more.

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> from service.runtime import LearnerRuntime
    >>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> sampler = Sampler(rt, Telemetry(), TimeSeries(capacity=10), interval_s=60)
    >>> sampler.sample()
    >>> len(sampler.series), sampler.series.columns()["values"]["accuracy"]  # nothing seen yet
    (1, [None])
    """

    def __init__(
        self,
        source: StatsSource,
        telemetry: Telemetry,
        series: TimeSeries,
        interval_s: float = 5.0,
        path: Path | None = None,
        save_every_s: float = 600.0,
    ) -> None:
        self.source, self.telemetry, self.series = source, telemetry, series
        self.interval_s, self.path, self.save_every_s = interval_s, path, save_every_s
        self._saved_at = time.monotonic()
        self._saved_activity: tuple[float, float] = (0.0, 0.0)
        self._sampled = 0
        self._last: tuple[float, float, dict[str, float]] | None = None
        self._sampling = threading.Lock()  # the thread and an on-demand sample() may overlap
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def sampled(self) -> int:
        """Points taken by this sampler (not those loaded from the file)."""
        return self._sampled

    def sample(self) -> None:
        """Take one point now."""
        with self._sampling:
            self._sample()
            self._sampled += 1

    def _sample(self) -> None:
        s = self.source.stats()
        totals = self.telemetry.snapshot()
        now, mono = time.time(), time.monotonic()
        learned = float(s.samples_learned)
        pq, probe = s.prequential, s.probe
        values: dict[str, float | None] = {
            "rss_bytes": float(s.rss_bytes),
            "store_bytes": s.store.bytes,
            "store_max_bytes": s.store.max_bytes,
            "probe_bytes": probe.bytes if probe else None,
            "accuracy": pq.accuracy if pq.seen else None,
            "window_accuracy": pq.window_accuracy if pq.seen else None,
            "probe_accuracy": probe.accuracy if probe else None,
            "probe_forgetting": probe.forgetting if probe else None,
            "queue_depth": s.queue.depth,
            "samples_learned": learned,
        }
        if self._last is not None:
            last_mono, last_learned, last = self._last
            dt = max(mono - last_mono, 1e-9)
            d = {k: totals[k] - last[k] for k in totals}
            values["learn_rate"] = max(learned - last_learned, 0.0) / dt
            values["predict_rate"] = d["predicted"] / dt
            batches, calls = d["learn_batches"], d["predict_calls"]
            values["learn_latency_s"] = d["learn_seconds"] / batches if batches else None
            values["predict_latency_s"] = d["predict_seconds"] / calls if calls else None
        for route, figures in self.telemetry.requests_window.drain().items():
            name = route.strip("/")  # predict_http_p50_s, learn_http_requests, ...
            values[f"{name}_http_requests"] = figures["count"]
            for key in ("p50", "p95", "max"):
                values[f"{name}_http_{key}_s"] = figures[key]
        self._last = (mono, learned, totals)
        chosen = top_classes(s.classes, self.series.class_limit)
        self.series.append(now, values, {c: s.classes[c].accuracy for c in chosen})

    def save(self) -> None:
        """Write the history to ``path`` now (a failure is logged: charts are not worth
        stopping for)."""
        if self.path is None:
            return
        self._saved_at = time.monotonic()
        self._saved_activity = self._activity()
        try:
            save_history(self.path, self.series.columns(), self.interval_s)
        except OSError as exc:
            log.warning("could not keep the dashboard's history in %s: %s", self.path, exc)

    def _activity(self) -> tuple[float, float]:
        """Samples learned and predictions made at the last point: an idle daemon's history
        is not worth a flash write every ``save_every_s`` (shutdown still saves it)."""
        if self._last is None:
            return (0.0, 0.0)
        return (self._last[1], self._last[2].get("predicted", 0.0))

    def _run(self) -> None:
        while True:
            try:
                self.sample()
                due = time.monotonic() - self._saved_at >= self.save_every_s
                if due and self._activity() != self._saved_activity:
                    self.save()
            except Exception:  # a failed sample must not end the history
                log.exception("sampling the dashboard's time series failed")
            if self._stop.wait(self.interval_s):
                return

    def start(self) -> None:
        if self._thread is None:
            if self.path is not None and not len(self.series):
                columns = load_history(self.path)
                if columns is not None:
                    kept = self.series.restore(columns, until=time.time())
                    if kept < len(columns["t"]):
                        log.info("dashboard history: %d points dropped", len(columns["t"]) - kept)
                    if kept:  # a point without figures: the charts' lines break at the restart
                        self.series.append(columns["t"][kept - 1] + 1e-3, {}, {})
            self._saved_at = time.monotonic()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="edgecl-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
            self.save()
