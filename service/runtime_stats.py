"""The runtime's figures as typed :class:`~service.observability.stats.Stats`: the one
place that reads the learner, writer and queue for ``/stats``, metrics, the dashboard and
the MQTT ``model`` topic."""

from __future__ import annotations

import math
import time
from typing import Any

import psutil

from edgecl.learner import Learner
from edgecl.probe import ProbeSet
from edgecl.task_book import task_aware
from service.batching import MicroBatchQueue
from service.observability.stats import (
    CalibrationStats,
    ClassStats,
    Confusion,
    DurabilityStats,
    PrequentialStats,
    ProbeStats,
    QueueStats,
    Stats,
    StoreStats,
    TasksStats,
    TaskStats,
)
from service.schemas import BackboneCheck
from service.writer import Writer


def read_stats(writer: Writer, queue: MicroBatchQueue[Any], started_at: float) -> Stats:
    """A consistent snapshot: everything the learner holds is read under the writer's lock
    (the per-class models are built once it is released: learning waits no longer for them).

    >>> from edgecl import Learner, strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> w = Writer(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> s = read_stats(w, MicroBatchQueue[Any](8, 4, 0.0, len), time.time())
    >>> s.samples_learned, s.queue.capacity, s.store.kind, s.durability, s.rss_bytes > 0
    (0, 8, None, None, True)
    """
    with writer.lock:
        learner = writer.learner
        pq, store, probe = learner.prequential, learner.store, learner.probe
        names = [str(label) for label in learner.labels.labels]
        per_class = [(learner.class_counts[i], pq.class_accuracy(i)) for i in range(len(names))]
        store_stats = StoreStats(
            kind=None if store is None else store.name,
            items=0 if store is None else len(store),
            bytes=0 if store is None else store.nbytes,
            max_bytes=0 if store is None else store.max_bytes,
            evictions=None if store is None else int(getattr(store, "evictions", 0)),
            strategy_bytes=_strategy_bytes(learner.strategy),
        )
        prequential = PrequentialStats(
            seen=pq.seen, accuracy=pq.accuracy, window_accuracy=pq.window_accuracy, window=pq.window
        )
        confusions = pq.top_confusions(10)
        samples_learned, model_version = learner.samples_learned, learner.model_version
        strategy = {"name": learner.strategy.name, **learner.strategy.options()}
        probe_report = None if probe is None else _probe_report(writer, probe)
        calibration = learner.calibration.report()
        check = getattr(learner.backbone, "check", None)
        tasks = _tasks(learner)
    durability, per_sample = None, None
    if writer.wal is not None:
        c = writer.checkpointer
        checkpoint_bytes = 0 if c is None else c.bytes_written
        durability = DurabilityStats(
            wal_bytes=writer.wal.bytes_written,
            checkpoint_bytes=checkpoint_bytes,
            last_checkpoint_s=c.seconds if c is not None and c.last_bytes else None,
            last_checkpoint_bytes=(c.last_bytes if c is not None else 0) or None,
            wal_bytes_since_checkpoint=None if c is None else c.wal_since,
            bytes_per_sample_last_hour=writer.wear.per_sample(
                writer.bytes_written, writer.learned_here
            ),
        )
        if writer.learned_here:  # flash wear per sample learned since this process started
            per_sample = (writer.wal.bytes_written + checkpoint_bytes) / writer.learned_here
    return Stats(
        samples_learned=samples_learned,
        model_version=model_version,
        uptime_s=time.time() - started_at,
        rss_bytes=psutil.Process().memory_info().rss,  # the one place RSS is read for stats
        classes={
            label: ClassStats(samples=n, accuracy=acc)
            for label, (n, acc) in zip(names, per_class, strict=True)
        },
        store=store_stats,
        prequential=prequential,
        strategy=strategy,
        queue=QueueStats(depth=len(queue), capacity=queue.capacity),
        events={"queue_full": queue.rejected, **writer.counters},
        bytes_written_per_sample=per_sample,
        durability=durability,
        confusions=[
            Confusion(true=names[t], predicted=names[p], count=n) for t, p, n in confusions
        ],
        probe=None if probe_report is None else ProbeStats.model_validate(probe_report),
        calibration=CalibrationStats.model_validate(calibration),
        backbone_check=None if check is None else BackboneCheck.model_validate(check),
        tasks=tasks,
    )


def _tasks(learner: Learner) -> TasksStats | None:
    """Per task: name, samples, classes and the head's bytes (None: no task yet)."""
    book, strategy = learner.tasks, learner.strategy
    aware = task_aware(strategy)
    if not len(book) and aware is None:
        return None
    rows = book.report(learner.labels.labels, strategy)
    return TasksStats(
        mode=None if aware is None else aware.task_mode,
        tasks=[
            TaskStats(
                name=str(r["name"]),
                samples=r["samples"],
                classes=[str(c) for c in r["classes"]],
                bytes=r["bytes"],
            )
            for r in rows
        ],
    )


def _probe_report(writer: Writer, probe: ProbeSet) -> dict[str, Any]:
    """The probe's figures (read under the writer's lock), never older than
    ``writer.probe_rescore_s`` while learning: past that, the held items are scored again
    for the reader without changing the probe (a re-score would make its state, and the
    calibration fitted on it, depend on when someone looked, which a restart's replay
    could not repeat)."""
    learner, now, at = writer.learner, time.monotonic(), writer.learner.samples_learned
    view = writer.probe_view  # (when, (samples_learned, accuracy, per class)) of a score
    rescored = probe.rescored_at if probe.rescored_at is not None else -math.inf
    if probe.since == 0 or (view is not None and view[0] < rescored):
        view = None  # the last re-score is as new as the head, or newer than the view
    if probe.since and (view is None or view[1][0] != at):
        seen = max(rescored, view[0] if view is not None else -math.inf)
        scored = probe.score(learner) if now - seen >= writer.probe_rescore_s else None
        if scored is not None:
            view = (now, (at, *scored))
    writer.probe_view = view
    report = probe.report(learner.labels.labels, None if view is None else view[1])
    when = view[0] if view is not None else probe.rescored_at
    report["age_s"] = None if when is None else now - when
    report["min_items"] = probe.min_items
    accuracy, held = report["accuracy"], report["held"]
    if accuracy is not None and held:  # Wilson's interval: not zero at 0% or 100%
        z2 = 1.96**2
        spread = accuracy * (1 - accuracy) / held + z2 / (4 * held * held)
        report["margin"] = 1.96 * math.sqrt(spread) / (1 + z2 / held)
    return report


def _strategy_bytes(strategy: object) -> int | None:
    """What a strategy holds as its own memory, if it says (``nbytes()``)."""
    held = getattr(strategy, "nbytes", None)
    return int(held()) if callable(held) else None
