"""The figures ``/stats`` shows (and metrics, MQTT status and the dashboard read)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.runtime import LearnerRuntime


def runtime_stats(runtime: LearnerRuntime) -> dict[str, Any]:
    """A consistent snapshot of the learner's figures, as plain data: everything the
    learner holds is read under the writer's lock."""
    with runtime.writer.lock:
        learner = runtime.learner
        pq, store, probe = learner.prequential, learner.store, learner.probe
        names = learner.labels.labels
        classes = {
            str(label): {"samples": learner.class_counts[i], "accuracy": pq.class_accuracy(i)}
            for i, label in enumerate(learner.labels.labels)
        }
        out: dict[str, Any] = {
            "samples_learned": learner.samples_learned,
            "model_version": learner.model_version,
            "classes": classes,
            "store": {
                "kind": None if store is None else store.name,
                "items": 0 if store is None else len(store),
                "bytes": 0 if store is None else store.nbytes,
                "max_bytes": 0 if store is None else store.max_bytes,
            },
            "prequential": {
                "seen": pq.seen,
                "accuracy": pq.accuracy,
                "window_accuracy": pq.window_accuracy,
                "window": pq.window,
            },
            "strategy": {"name": learner.strategy.name, **learner.strategy.options()},
            "confusions": [
                {"true": str(names[t]), "predicted": str(names[p]), "count": n}
                for t, p, n in pq.top_confusions(10)
            ],
            "probe": None if probe is None else probe.report(names),
            "backbone_check": getattr(learner.backbone, "check", None),
        }
    out["uptime_s"] = time.time() - runtime.started_at
    out["queue"] = {"depth": len(runtime.queue), "capacity": runtime.queue.capacity}
    out["events"] = {"queue_full": runtime.queue.rejected, **runtime.writer.counters}
    if runtime.wal is not None:
        w, c = runtime.writer, runtime.writer.checkpointer
        ckpt = 0 if c is None else c.bytes_written
        written = runtime.wal.bytes_written + ckpt
        out["durability"] = {
            "wal_bytes": runtime.wal.bytes_written,
            "checkpoint_bytes": ckpt,
            "last_checkpoint_s": c.seconds if c is not None and c.last_bytes else None,
            "last_checkpoint_bytes": (c.last_bytes if c is not None else 0) or None,
        }
        if w.learned_here:  # flash wear per sample learned since this process started
            out["bytes_written_per_sample"] = written / w.learned_here
    return out
