"""The learn records the writer puts in the WAL, and what replay reads back from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from edgecl.batch import Batch
from edgecl.replay.compress import compress_uint8, decompress_uint8
from edgecl.types import Label


class Job(Protocol):
    batch: Batch


def join_kept(pairs: Sequence[tuple[Job, list[int]]]) -> Batch | None:
    """The samples at ``keep`` of each job, in one batch (None for no job). A job keeping
    all of its samples holds them as rows of that batch from then on, so the latents of
    a micro-batch are held once, not once per request and once more joined."""
    if not pairs:
        return None
    kept = Batch.join([job.batch.select(keep) for job, keep in pairs])
    start = 0
    for job, keep in pairs:
        if len(keep) == len(job.batch):
            job.batch = kept.rows(start, start + len(keep))
        start += len(keep)
    return kept


def learn_record(
    batch: Batch, ids: Sequence[str | None], source: str, part: int, keep: list[int]
) -> dict[str, Any]:
    """The WAL record of a job's checked samples at ``keep``; ``part`` numbers the jobs of
    one micro-batch, so replay learns them in one step as the writer did. Raw inputs (for
    a store that keeps them) go in as one lz4 frame per sample; tasks only when a sample
    has one (a record without them, an older one too, means no task).

    >>> b = Batch(np.ones((2, 3), np.float32), ["a", "b"], np.zeros((2, 4, 4, 3), np.uint8))
    >>> r = learn_record(b, ["1", "2"], "http", 0, [1])
    >>> r["labels"], r["ids"], r["x_shape"], record_inputs([r], [[0]]).shape, "tasks" in r
    (['b'], ['2'], [4, 4, 3], (1, 4, 4, 3), False)
    """
    kept = batch.select(keep)  # no copy of the latents when every sample is kept
    record: dict[str, Any] = {
        "kind": "learn",
        "z": kept.z,
        "labels": list(kept.labels),
        "ids": [ids[i] for i in keep],
        "source": source,
        "part": part,
    }
    if kept.tasks is not None:
        record["tasks"] = list(kept.tasks)
    if kept.inputs is not None:
        record.update(x_shape=list(kept.inputs.shape[1:]), x=compress_uint8(kept.inputs))
    return record


def record_inputs(
    records: Sequence[dict[str, Any]], keeps: Sequence[list[int]]
) -> np.ndarray[Any, Any] | None:
    """The raw inputs of the records' samples at ``keeps``; None if they carry none."""
    if not records or "x" not in records[0]:
        return None
    parts = [
        decompress_uint8([r["x"][k] for k in keep], tuple(r["x_shape"]))
        for r, keep in zip(records, keeps, strict=True)
    ]
    return np.concatenate(parts)


def record_tasks(
    records: Sequence[dict[str, Any]], keeps: Sequence[list[int]]
) -> list[Label | None] | None:
    """The tasks of the records' samples at ``keeps`` (None: none has one; a record from
    before tasks has none).

    >>> old, new = {"labels": ["a"]}, {"labels": ["b", "c"], "tasks": ["t", None]}
    >>> record_tasks([old], [[0]]), record_tasks([old, new], [[0], [0, 1]])
    (None, [None, 't', None])
    """
    tasks = [r.get("tasks") for r in records]
    if all(t is None for t in tasks):
        return None
    return [None if t is None else t[k] for t, keep in zip(tasks, keeps, strict=True) for k in keep]
