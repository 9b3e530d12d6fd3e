"""The learner's figures as Prometheus metrics, read from the runtime's stats at scrape time,
so no figure can drift from /stats.

The only label that grows with the data is ``class``: per-class series are kept to the
:data:`CLASS_SERIES_LIMIT` classes with the most learned samples (``edgecl_classes`` still
counts them all), so a stream with thousands of labels cannot blow up the series count.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from service.runtime import LearnerRuntime

#: Per-class series are exported for at most this many classes (those with most samples).
CLASS_SERIES_LIMIT = 50


def top_classes(classes: dict[str, dict[str, Any]], limit: int) -> list[str]:
    """The ``limit`` labels with the most learned samples (ties: first seen first).

    >>> top_classes({"a": {"samples": 1}, "b": {"samples": 5}, "c": {"samples": 5}}, 2)
    ['b', 'c']
    """
    ranked = sorted(enumerate(classes.items()), key=lambda kv: (-kv[1][1]["samples"], kv[0]))
    return [label for _, (label, _) in ranked[:limit]]


#: Figures read from the runtime's stats at scrape time: (type, name, help, path in stats).
#: A missing or null figure (no WAL, probe off, not re-scored yet) is left out.
_FIGURES = (
    (
        "counter",
        "edgecl_samples_learned",
        "Samples learned since the model began.",
        "samples_learned",
    ),
    ("gauge", "edgecl_model_version", "Head version; grows with every change.", "model_version"),
    ("gauge", "edgecl_queue_depth", "Learn requests waiting for the writer.", "queue.depth"),
    ("gauge", "edgecl_queue_capacity", "Learn requests the queue holds.", "queue.capacity"),
    ("gauge", "edgecl_store_items", "Items in the replay store.", "store.items"),
    ("gauge", "edgecl_store_bytes", "Bytes used by the replay store.", "store.bytes"),
    ("gauge", "edgecl_store_max_bytes", "Byte budget of the replay store.", "store.max_bytes"),
    (
        "gauge",
        "edgecl_prequential_accuracy",
        "Test-then-train accuracy (ratio).",
        "prequential.accuracy",
    ),
    (
        "gauge",
        "edgecl_prequential_window_accuracy",
        "Test-then-train accuracy over the recent window (ratio).",
        "prequential.window_accuracy",
    ),
    ("gauge", "edgecl_uptime_seconds", "Seconds since the daemon started.", "uptime_s"),
    (
        "counter",
        "edgecl_wal_written_bytes",
        "Bytes this process wrote to the WAL.",
        "durability.wal_bytes",
    ),
    ("gauge", "edgecl_probe_items", "Samples held in the probe set.", "probe.held"),
    ("gauge", "edgecl_probe_bytes", "Bytes the probe set uses.", "probe.bytes"),
    (
        "counter",
        "edgecl_probe_samples_held",
        "Samples held back for the probe (acknowledged, never learned).",
        "probe.diverted",
    ),
    (
        "gauge",
        "edgecl_probe_accuracy",
        "Probe accuracy over all classes at its last re-score (ratio).",
        "probe.accuracy",
    ),
    (
        "gauge",
        "edgecl_probe_forgetting",
        "Mean over classes of best probe accuracy so far minus now (ratio).",
        "probe.forgetting",
    ),
)
#: Per-class figures: (type, name, help, section of stats, key of a class's entry).
_PER_CLASS = (
    ("counter", "edgecl_class_samples_learned", "Samples learned per class.", "classes", "samples"),
    (
        "gauge",
        "edgecl_class_prequential_accuracy",
        "Test-then-train accuracy per class (ratio).",
        "classes",
        "accuracy",
    ),
    (
        "gauge",
        "edgecl_probe_class_accuracy",
        "Probe accuracy per class (ratio).",
        "probe",
        "accuracy",
    ),
    (
        "gauge",
        "edgecl_probe_class_forgetting",
        "Best probe accuracy of a class so far minus now (ratio).",
        "probe",
        "forgetting",
    ),
)
_FAMILY = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}


def printable(label: str) -> str:
    r"""A label value with control characters written as ``\xNN``: prometheus_client
    escapes only backslash, quote and newline, and a raw NUL breaks scrapers.

    >>> printable("cat\x00\t"), printable("Zoë")
    ('cat\\x00\\x09', 'Zoë')
    """
    if label.isprintable():
        return label
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in label)


def _at(stats: dict[str, Any], path: str) -> Any:
    value: Any = stats
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


class StatsCollector(Collector):
    """Yields the figures of ``runtime.stats()`` (and ``info`` labels on edgecl_build_info).

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> from service.runtime import LearnerRuntime
    >>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> names = [m.name for m in StatsCollector(rt, {"backbone": "identity"}).collect()]
    >>> names[:2], "edgecl_class_prequential_accuracy" in names
    (['edgecl_build_info', 'edgecl_samples_learned'], True)
    """

    def __init__(self, runtime: LearnerRuntime, info: dict[str, str]) -> None:
        self._runtime = runtime
        self._info = info

    def collect(self) -> Iterator[Metric]:
        s = self._runtime.stats()
        labels = {
            **self._info,
            "strategy": s["strategy"]["name"],
            "store": s["store"]["kind"] or "",
        }
        info = GaugeMetricFamily(
            "edgecl_build_info", "Version and configuration; always 1.", labels=[*labels]
        )
        info.add_metric(list(labels.values()), 1)
        yield info
        for kind, name, doc, path in _FIGURES:
            value = _at(s, path)
            if value is not None:
                yield _FAMILY[kind](name, doc, value)
        store = self._runtime.learner.store
        if store is not None:
            evictions = int(getattr(store, "evictions", 0))
            yield CounterMetricFamily(
                "edgecl_store_evictions", "Items the replay store dropped to make room.", evictions
            )
        events = CounterMetricFamily(
            "edgecl_runtime_events", "Runtime events by kind.", labels=["event"]
        )
        for event, count in sorted(s["events"].items()):
            events.add_metric([event], count)
        yield events
        yield GaugeMetricFamily("edgecl_classes", "Classes known.", len(s["classes"]))
        chosen = top_classes(s["classes"], CLASS_SERIES_LIMIT)
        for kind, name, doc, section, key in _PER_CLASS:
            family = _FAMILY[kind](name, doc, labels=["class"])
            entries = (
                (s.get(section) or {}).get("classes", {}) if section == "probe" else s["classes"]
            )
            for label in chosen:
                value = entries.get(label, {}).get(key)
                if value is not None:
                    family.add_metric([printable(str(label))], value)
            if section == "classes" or s.get("probe") is not None:
                yield family
