"""The learn records the writer puts in the WAL, and what replay reads back from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecl.replay.compress import compress_uint8, decompress_uint8
from edgecl.types import FloatArray, Label


def learn_record(
    z: FloatArray,
    labels: Sequence[Label],
    ids: Sequence[str | None],
    source: str,
    part: int,
    inputs: np.ndarray[Any, Any] | None,
    keep: list[int],
) -> dict[str, Any]:
    """The WAL record of a job's samples at ``keep``; ``part`` numbers the jobs of one
    micro-batch, so replay learns them in one step as the writer did. Raw inputs (for a
    store that keeps them) go in as one lz4 frame per sample.

    >>> r = learn_record(np.ones((2, 3), np.float32), ["a", "b"], ["1", "2"], "http", 0,
    ...                  np.zeros((2, 4, 4, 3), np.uint8), [1])
    >>> r["labels"], r["ids"], r["x_shape"], record_inputs([r], [[0]]).shape
    (['b'], ['2'], [4, 4, 3], (1, 4, 4, 3))
    """
    record: dict[str, Any] = {
        "kind": "learn",
        "z": z[keep],
        "labels": [labels[i] for i in keep],
        "ids": [ids[i] for i in keep],
        "source": source,
        "part": part,
    }
    if inputs is not None:
        kept = inputs[keep]
        record.update(x_shape=list(kept.shape[1:]), x=compress_uint8(kept))
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
