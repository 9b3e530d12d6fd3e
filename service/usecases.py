"""The daemon's use cases, whatever transport asked: learn, predict, retrain.

Each takes a request model (:mod:`service.schemas`) and gives a reply model; a failure is
an exception of :mod:`service.errors`, whose table says what it means for HTTP, MQTT and
the metrics. Transports (``service/routes``, ``service/mqtt_handlers.py``) only decode,
call one method here and encode. Samples turned away are counted here, once, by reason.

>>> from edgecl import Learner, strategies
>>> from edgecl.backbones import IdentityBackbone
>>> from service.runtime import LearnerRuntime
>>> from service.schemas import LearnRequest, PredictRequest
>>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
>>> rt.start()
>>> plane = UseCases(rt)
>>> learn = LearnRequest.model_validate(
...     {"samples": [{"features": [0, 1], "label": "up"}, {"features": [1, 0], "label": "right"}]})
>>> plane.learn(learn, "http").result(timeout=5).accepted
2
>>> ask = PredictRequest.model_validate({"samples": [{"features": [0.1, 0.9]}], "top_k": 1})
>>> plane.predict(ask).predictions[0].label
'up'
>>> rt.stop()
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from edgecl.types import FloatArray, Label
from service.errors import NotFittedError, UnknownJobError, outcome
from service.observability.metrics import Observer
from service.retrain import RetrainJob
from service.runtime import LearnerRuntime, LearnResult, PredictResult
from service.schemas import (
    LearnReply,
    LearnRequest,
    LearnSample,
    PredictionOut,
    PredictReply,
    PredictRequest,
    PredictSample,
    RetrainStatus,
    ScoredLabel,
)

NOTHING_LEARNED = (
    "nothing has been learned yet; learn some labelled samples first "
    "(POST /learn, or publish them on the learn topic)"
)


class ModelState(BaseModel):
    """The model in brief: what the retained MQTT ``model`` topic says."""

    model_version: int
    classes: list[str]
    samples_learned: int
    strategy: str


@dataclass(frozen=True)
class PendingLearn:
    """A learn request embedded and ready to queue (see :meth:`UseCases.submit`)."""

    z: FloatArray
    labels: list[Label]
    ids: list[str | None]
    source: str
    inputs: np.ndarray[Any, Any] | None = None
    tasks: list[Label | None] | None = None  # None: no sample has a task


class UseCases:
    """learn, predict and retrain on one runtime; ``observer`` counts samples in and out.

    The blocking steps (decoding and embedding images) run in the caller's thread: an
    async transport calls from a worker thread."""

    def __init__(self, runtime: LearnerRuntime, observer: Observer | None = None) -> None:
        self.runtime = runtime
        self.observer = observer if observer is not None else Observer()

    @property
    def ready(self) -> bool:
        return self.runtime.ready

    # -- learn ------------------------------------------------------------------------
    def learn(self, request: LearnRequest, source: str) -> Future[LearnReply]:
        """Embed, check and queue the samples (all or none); the future resolves once they
        are learned and durable."""
        return self.submit(self.embed_learn(request, source))

    def embed_learn(self, request: LearnRequest, source: str) -> PendingLearn:
        """The samples decoded and embedded (``SampleError`` names a bad one)."""
        samples = request.samples
        try:
            z, raw = self.runtime.embed_for_learning([s.to_input() for s in samples])
        except Exception as exc:
            self.rejected(source, exc, len(samples))
            raise
        labels, ids = [s.label for s in samples], [s.id for s in samples]
        return PendingLearn(z, labels, ids, source, raw, _tasks(samples))

    @property
    def has_room(self) -> bool:
        """Whether :meth:`submit` would find room in the learn queue now."""
        return self.runtime.has_room

    def submit(self, pending: PendingLearn) -> Future[LearnReply]:
        """Queue embedded samples; ``QueueFullError`` when the queue is full."""
        n = len(pending.ids)
        try:
            inner = self.runtime.submit_learn(
                pending.z,
                pending.labels,
                pending.ids,
                pending.source,
                pending.inputs,
                pending.tasks,
            )
        except Exception as exc:
            self.rejected(pending.source, exc, n)
            raise
        out: Future[LearnReply] = Future()
        source = pending.source  # not ``pending``: its latents need not wait for the reply

        def done(future: Future[LearnResult]) -> None:
            exc = future.exception()
            if exc is not None:
                self.rejected(source, exc, n)
                out.set_exception(exc)
                return
            self.observer.ingested(source, n)
            result = future.result()
            out.set_result(
                LearnReply(
                    accepted=result.accepted,
                    duplicates=result.duplicates,
                    model_version=result.model_version,
                    classes=result.classes,
                )
            )

        inner.add_done_callback(done)
        return out

    def rejected(self, source: str, exc: BaseException, samples: int) -> None:
        """Count ``samples`` turned away because of ``exc`` (transports call this for a
        message they could not decode)."""
        self.observer.rejected(source, outcome(exc).reason, samples)

    # -- predict ----------------------------------------------------------------------
    def predict(self, request: PredictRequest) -> PredictReply:
        """The best labels of each sample; ``NotFittedError`` before anything was learned."""
        if not self.runtime.has_classes:  # before decoding: a cheap answer
            raise NotFittedError(NOTHING_LEARNED)
        z = self.runtime.embed([s.to_input() for s in request.samples])
        try:
            tasks = _tasks(request.samples)
            result = self.runtime.predict(z, request.top_k, request.threshold, tasks)
        except NotFittedError:
            raise NotFittedError(NOTHING_LEARNED) from None
        return _reply(result)

    # -- model state ------------------------------------------------------------------
    def model_state(self) -> ModelState:
        """What the model is now, in brief (the MQTT ``model`` topic says it)."""
        stats = self.runtime.stats()
        return ModelState(
            model_version=stats.model_version,
            classes=list(stats.classes),
            samples_learned=stats.samples_learned,
            strategy=stats.strategy["name"],
        )

    # -- retrain ----------------------------------------------------------------------
    def retrain(self) -> RetrainStatus:
        """Start retraining the head from memory (``RetrainUnsupportedError``, ...)."""
        return _status(self.runtime.start_retrain())

    def retrain_status(self, job_id: str) -> RetrainStatus:
        return _status(self._job(job_id))

    def cancel_retrain(self, job_id: str) -> RetrainStatus:
        job = self._job(job_id)
        job.cancel()
        return _status(job)

    def _job(self, job_id: str) -> RetrainJob:
        job = self.runtime.job(job_id)
        if job is None:
            raise UnknownJobError(f"no retrain job {job_id!r}")
        return job


def _tasks(samples: Sequence[LearnSample | PredictSample]) -> list[Label | None] | None:
    tasks = [s.task for s in samples]
    return None if all(t is None for t in tasks) else tasks


def _reply(result: PredictResult) -> PredictReply:
    tasks = result.tasks or [None] * len(result.predictions)
    return PredictReply(
        predictions=[
            PredictionOut(
                label=p.label,
                score=p.score,
                top_k=[ScoredLabel(label=label, score=score) for label, score in p.top_k],
                novelty=p.novelty,
                unknown=p.unknown,
                task=task,
            )
            for p, task in zip(result.predictions, tasks, strict=True)
        ],
        model_version=result.model_version,
        threshold=result.threshold,
    )


def _status(job: RetrainJob) -> RetrainStatus:
    return RetrainStatus.model_validate(job.as_dict())
