"""Prometheus metrics, one registry per app: events counted where they happen, learner figures
read at scrape time.

Names follow the Prometheus conventions: base units (seconds, bytes, ratios 0..1), ``_total``
on counters. The figures read at scrape time, and the bound on per-class series, are in
:mod:`service.observability.collector`.
"""

from __future__ import annotations

import platform
import threading
import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability.collector import StatsCollector
from service.observability.gc_pauses import GcPauses
from service.observability.latency import LatencyWindow
from service.observability.stats import StatsSource

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Observer:
    """What the runtime reports as it works; this base ignores it all.

    Transports report samples they turn away before the runtime sees them (``rejected``).

    >>> Observer().learned(0.01, 4)
    """

    def learned(self, seconds: float, samples: int) -> None:
        """The writer learned one micro-batch of ``samples`` in ``seconds``."""

    def predicted(self, seconds: float, samples: int) -> None:
        """The head scored ``samples`` latents in ``seconds``."""

    def checkpointed(self, seconds: float) -> None:
        """A checkpoint was written in ``seconds``."""

    def ingested(self, source: str, samples: int) -> None:
        """``samples`` from ``source`` (``http``, ``mqtt``) were acknowledged."""

    def rejected(self, source: str, reason: str, samples: int) -> None:
        """``samples`` from ``source`` were turned away for ``reason``."""


class Telemetry(Observer):
    """Metrics of one app instance, in its own registry (nothing global, nothing at import).

    ``totals`` keeps plain running sums for the dashboard's time series, and ``requests_window``
    the end-to-end durations of ``POST /predict`` and ``/learn`` since its last sample (the
    same figures as the latency histogram's); :meth:`watch` adds the learner's figures.

    >>> t = Telemetry()
    >>> t.observe("GET", "/stats", 200, 0.01)
    >>> t.set_mqtt_connected(True)
    >>> text = t.render()
    >>> b'edgecl_http_requests_total{method="GET",route="/stats",status="200"} 1.0' in text
    True
    >>> b"edgecl_mqtt_connected 1.0" in text
    True
    """

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self._lock = threading.Lock()
        self.totals = dict.fromkeys(
            ("learn_batches", "learn_seconds", "predict_calls", "predict_seconds", "predicted"),
            0.0,
        )
        self.requests = Counter(
            "edgecl_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "edgecl_http_request_duration_seconds",
            "HTTP request latency by route, from arrival to the last byte of the response.",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.learn_seconds = Histogram(
            "edgecl_learn_duration_seconds",
            "Time the writer takes to learn one micro-batch (WAL, learn, sync).",
            buckets=_BUCKETS,
            registry=r,
        )
        self.predict_seconds = Histogram(
            "edgecl_predict_duration_seconds",
            "Time to score one request's latents on the head, waiting for the writer included "
            "(decoding and the backbone are not: see edgecl_http_request_duration_seconds).",
            buckets=_BUCKETS,
            registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "edgecl_checkpoint_duration_seconds",
            "Time to write one checkpoint.",
            buckets=_SLOW_BUCKETS,
            registry=r,
        )
        self.samples_predicted = Counter(
            "edgecl_samples_predicted", "Samples predicted.", registry=r
        )
        self.samples_ingested = Counter(
            "edgecl_samples_ingested",
            "Labelled samples acknowledged, by transport.",
            ["source"],
            registry=r,
        )
        self.samples_rejected = Counter(
            "edgecl_samples_rejected",
            "Labelled samples turned away, by transport and reason.",
            ["source", "reason"],
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "edgecl_mqtt_connected", "1 while connected to the MQTT broker.", registry=r
        )
        ProcessCollector(registry=r)  # process_resident_memory_bytes and friends
        self.gc_pauses = GcPauses(r)  # started and stopped with the app
        self.requests_window = LatencyWindow()

    def watch(self, source: StatsSource, **info: str) -> None:
        """Export the figures of ``source.stats()`` at every scrape, with ``info`` (and the
        versions) as labels of ``edgecl_build_info``."""
        import edgecl

        labels = {"version": edgecl.__version__, "python": platform.python_version()}
        self.registry.register(StatsCollector(source, {**labels, **info}))

    # -- Observer ---------------------------------------------------------------------
    def _add(self, **amounts: float) -> None:
        with self._lock:
            for key, amount in amounts.items():
                self.totals[key] += amount

    def learned(self, seconds: float, samples: int) -> None:
        self.learn_seconds.observe(seconds)
        self._add(learn_batches=1, learn_seconds=seconds)

    def predicted(self, seconds: float, samples: int) -> None:
        self.predict_seconds.observe(seconds)
        self.samples_predicted.inc(samples)
        self._add(predict_calls=1, predict_seconds=seconds, predicted=samples)

    def checkpointed(self, seconds: float) -> None:
        self.checkpoint_seconds.observe(seconds)

    def ingested(self, source: str, samples: int) -> None:
        self.samples_ingested.labels(source).inc(samples)

    def rejected(self, source: str, reason: str, samples: int) -> None:
        self.samples_rejected.labels(source, reason).inc(samples)

    # -- the rest ---------------------------------------------------------------------
    def set_mqtt_connected(self, connected: bool) -> None:
        """For the MQTT client: call on connect (True) and on disconnect (False)."""
        self.mqtt_connected.set(1 if connected else 0)

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self.totals)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if method == "POST":
            self.requests_window.add(route, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetrics:
    """Pure ASGI middleware: counts requests and times them by route template.

    >>> from starlette.applications import Starlette
    >>> from starlette.testclient import TestClient
    >>> t = Telemetry()
    >>> TestClient(RequestMetrics(Starlette(), t)).get("/nowhere").status_code
    404
    >>> b'route="unmatched",status="404"' in t.render()
    True
    """

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            # Unmatched paths share one label, so scanners cannot blow up the series count.
            template = getattr(route, "path", None) or "unmatched"
            self.telemetry.observe(scope["method"], template, status, time.perf_counter() - start)
