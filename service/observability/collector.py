"""The learner's figures as Prometheus metrics, read from a stats snapshot at scrape time,
so no figure can drift from /stats.

The only label that grows with the data is ``class``: per-class series are kept to the
:data:`CLASS_SERIES_LIMIT` classes with the most learned samples (``edgecl_classes`` still
counts them all), so a stream with thousands of labels cannot blow up the series count.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.observability.stats import Stats, StatsSource, top_classes

#: Per-class series are exported for at most this many classes (those with most samples).
CLASS_SERIES_LIMIT = 50

Family = type[CounterMetricFamily] | type[GaugeMetricFamily]
COUNTER, GAUGE = CounterMetricFamily, GaugeMetricFamily


def printable(label: str) -> str:
    r"""A label value with control characters written as ``\xNN``: prometheus_client
    escapes only backslash, quote and newline, and a raw NUL breaks scrapers.

    >>> printable("cat\x00\t"), printable("Zoë")
    ('cat\\x00\\x09', 'Zoë')
    """
    if label.isprintable():
        return label
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in label)


def figures(s: Stats) -> list[tuple[Family, str, str, float | None]]:
    """The single-valued figures as (family, name, help, value); a null value (no WAL,
    probe off, not re-scored yet) is left out of the scrape."""
    wal, probe = s.durability, s.probe
    return [
        (
            COUNTER,
            "edgecl_samples_learned",
            "Samples learned since the model began.",
            s.samples_learned,
        ),
        (GAUGE, "edgecl_model_version", "Head version; grows with every change.", s.model_version),
        (GAUGE, "edgecl_queue_depth", "Learn requests waiting for the writer.", s.queue.depth),
        (GAUGE, "edgecl_queue_capacity", "Learn requests the queue holds.", s.queue.capacity),
        (GAUGE, "edgecl_store_items", "Items in the replay store.", s.store.items),
        (GAUGE, "edgecl_store_bytes", "Bytes used by the replay store.", s.store.bytes),
        (GAUGE, "edgecl_store_max_bytes", "Byte budget of the replay store.", s.store.max_bytes),
        (
            GAUGE,
            "edgecl_prequential_accuracy",
            "Test-then-train accuracy (ratio).",
            s.prequential.accuracy,
        ),
        (
            GAUGE,
            "edgecl_prequential_window_accuracy",
            "Test-then-train accuracy over the recent window (ratio).",
            s.prequential.window_accuracy,
        ),
        (GAUGE, "edgecl_uptime_seconds", "Seconds since the daemon started.", s.uptime_s),
        (
            COUNTER,
            "edgecl_wal_written_bytes",
            "Bytes this process wrote to the WAL.",
            wal.wal_bytes if wal else None,
        ),
        (
            GAUGE,
            "edgecl_probe_items",
            "Samples held in the probe set.",
            probe.held if probe else None,
        ),
        (GAUGE, "edgecl_probe_bytes", "Bytes the probe set uses.", probe.bytes if probe else None),
        (
            COUNTER,
            "edgecl_probe_samples_held",
            "Samples held back for the probe (acknowledged, never learned).",
            probe.diverted if probe else None,
        ),
        (
            GAUGE,
            "edgecl_probe_accuracy",
            "Probe accuracy over all classes at its last re-score (ratio).",
            probe.accuracy if probe else None,
        ),
        (
            GAUGE,
            "edgecl_probe_forgetting",
            "Mean over classes of best probe accuracy so far minus now (ratio).",
            probe.forgetting if probe else None,
        ),
        (
            COUNTER,
            "edgecl_store_evictions",
            "Items the replay store dropped to make room.",
            s.store.evictions,
        ),
    ]


def per_class(s: Stats, chosen: list[str]) -> Iterator[Metric]:
    """The per-class families for the ``chosen`` labels; the probe's only with a probe."""
    samples = COUNTER(
        "edgecl_class_samples_learned", "Samples learned per class.", labels=["class"]
    )
    accuracy = GAUGE(
        "edgecl_class_prequential_accuracy",
        "Test-then-train accuracy per class (ratio).",
        labels=["class"],
    )
    for label in chosen:
        samples.add_metric([printable(label)], s.classes[label].samples)
        accuracy.add_metric([printable(label)], s.classes[label].accuracy)
    yield samples
    yield accuracy
    if s.probe is None:
        return
    probe_accuracy = GAUGE(
        "edgecl_probe_class_accuracy", "Probe accuracy per class (ratio).", labels=["class"]
    )
    forgetting = GAUGE(
        "edgecl_probe_class_forgetting",
        "Best probe accuracy of a class so far minus now (ratio).",
        labels=["class"],
    )
    for label in chosen:
        p = s.probe.classes.get(label)
        if p is not None and p.accuracy is not None:
            probe_accuracy.add_metric([printable(label)], p.accuracy)
        if p is not None and p.forgetting is not None:
            forgetting.add_metric([printable(label)], p.forgetting)
    yield probe_accuracy
    yield forgetting


class StatsCollector(Collector):
    """Yields the figures of ``source.stats()`` (and ``info`` labels on edgecl_build_info).

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> from service.runtime import LearnerRuntime
    >>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> names = [m.name for m in StatsCollector(rt, {"backbone": "identity"}).collect()]
    >>> names[:2], "edgecl_class_prequential_accuracy" in names
    (['edgecl_build_info', 'edgecl_samples_learned'], True)
    """

    def __init__(self, source: StatsSource, info: dict[str, str]) -> None:
        self._source = source
        self._info = info

    def collect(self) -> Iterator[Metric]:
        s = self._source.stats()
        labels = {**self._info, "strategy": s.strategy["name"], "store": s.store.kind or ""}
        info = GAUGE("edgecl_build_info", "Version and configuration; always 1.", labels=[*labels])
        info.add_metric(list(labels.values()), 1)
        yield info
        for family, name, doc, value in figures(s):
            if value is not None:
                yield family(name, doc, value)
        events = COUNTER("edgecl_runtime_events", "Runtime events by kind.", labels=["event"])
        for event, count in sorted(s.events.items()):
            events.add_metric([event], count)
        yield events
        yield GAUGE("edgecl_classes", "Classes known.", len(s.classes))
        yield from per_class(s, top_classes(s.classes, CLASS_SERIES_LIMIT))
