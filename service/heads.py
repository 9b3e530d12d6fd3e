"""Frozen heads: what ``/predict`` reads without waiting for the writer; predictions ranked.

After every change the writer freezes the head with its calibration, labels and model
version (:meth:`edgecl.Learner.open_head`: a copy sharing only the arrays learning replaces
rather than changes) and publishes it. A prediction takes the latest published head and
never waits behind a learning step; a strategy that cannot freeze its head is read under
the writer's lock instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgecl.learner import Learner
from edgecl.openset import OpenHead, OpenPrediction
from edgecl.task_book import TaskBook, TaskBound, infer, task_aware
from edgecl.types import FloatArray, IntArray, Label

__all__ = ["OpenHead", "PredictResult", "Prediction", "predict_open", "rank"]


@dataclass(frozen=True)
class Prediction:
    label: Label
    score: float
    top_k: list[tuple[Label, float]]
    novelty: float
    unknown: bool


@dataclass(frozen=True)
class PredictResult:
    predictions: list[Prediction]
    model_version: int
    threshold: float | None  # the novelty threshold used
    tasks: list[Label | None] | None = None  # per row, the task used (task-aware heads)


def predict_open(
    learner: Learner,
    head: OpenHead | None,
    lock: threading.Lock,
    z: FloatArray,
    threshold: float | None,
    tasks: Sequence[Label | None] | None = None,
) -> tuple[OpenPrediction, list[Label], int, list[Label | None] | None]:
    """What the published ``head`` (else the live one, under ``lock``) says of checked
    latents, in their ``tasks``: probabilities, labels, version and, for a task-aware
    head, the task each row was answered in (given, or inferred). ``ValueError`` names a
    missing or unknown task."""
    book = learner.tasks
    named = book.check(learner.strategy, tasks, len(z), learning=False)
    if task_aware(learner.strategy) is None:
        if head is not None:
            return head.predict(z, threshold), head.labels, head.version, None
        with lock:
            out = learner.predict_open(z, threshold)
            return out, learner.labels.labels, learner.model_version, None
    t = book.lookup(named, len(z))
    if head is None:
        with lock:
            labels, version = learner.labels.labels, learner.model_version
            live = OpenHead(learner.strategy, learner.calibration, labels, version)
            return _in_tasks(live, book, z, t, threshold)
    return _in_tasks(head, book, z, t, threshold)


def _in_tasks(
    head: OpenHead, book: TaskBook, z: FloatArray, t: IntArray | None, threshold: float | None
) -> tuple[OpenPrediction, list[Label], int, list[Label | None]]:
    # The bound head answers predict_proba_many in the rows' tasks: all calibration reads.
    bound_head: Any = TaskBound(head.head, t)
    bound = OpenHead(bound_head, head.calibration, head.labels, head.version)
    out = bound.predict(z, threshold)
    used = np.full(len(z), -1, np.int64) if t is None else t.copy()
    missing = used < 0
    if missing.any():
        used[missing] = infer(head.head, book, z[missing], out.proba[missing].astype(np.float32))
    names = book.names.labels
    return out, head.labels, head.version, [names[i] if i >= 0 else None for i in used]


def rank(out: OpenPrediction, labels: list[Label], version: int, top_k: int) -> PredictResult:
    """Each row's best label and its ``top_k`` labels with their calibrated scores (ties:
    first label), its novelty and whether that makes it unknown.

    >>> out = OpenPrediction(np.array([[0.2, 0.8]]), np.array([3.0]), np.array([True]), 2.0)
    >>> p = rank(out, ["a", "b"], 3, top_k=5).predictions[0]
    >>> p.top_k, p.novelty, p.unknown
    ([('b', 0.8), ('a', 0.2)], 3.0, True)
    """
    k = max(1, min(top_k, len(labels)))
    order = np.argsort(-out.proba, axis=1, kind="stable")[:, :k]
    predictions = []
    for row, best, novelty, unknown in zip(out.proba, order, out.novelty, out.unknown, strict=True):
        ranked = [(labels[int(i)], float(row[int(i)])) for i in best]
        top = ranked[0]
        predictions.append(Prediction(top[0], top[1], ranked, float(novelty), bool(unknown)))
    return PredictResult(predictions, version, out.threshold)
