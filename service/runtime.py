"""LearnerRuntime: one writer thread owns learning; predictions read a consistent head."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

import numpy as np

from edgecl.learner import Learner
from edgecl.types import FloatArray, Label
from service.batching import InFlight, MicroBatchQueue
from service.budget import Budget
from service.checkpointing import CheckpointsLike
from service.controls import Control, item_size
from service.errors import NotAcceptingError
from service.heads import PredictResult, predict_open, rank
from service.inputs import Embedder, SampleInput
from service.observability.metrics import Observer
from service.observability.stats import Stats
from service.restore import Reembedded, reembed, restore
from service.retrain import RetrainJob, RetrainJobs, retrainable, snapshot_memory
from service.runtime_stats import read_stats
from service.settings import (
    DEFAULT_DECODE_PIXELS,
    DEFAULT_REQUEST_PIXELS,
    DurabilitySettings,
    QueueSettings,
)
from service.writer import LearnJob, LearnResult, WriteAheadLogLike, Writer

__all__ = ["LearnResult", "LearnerRuntime", "PredictResult", "Reembedded"]

log = logging.getLogger("edgecl.runtime")

_QUEUE, _DURABILITY = QueueSettings(), DurabilitySettings()  # defaults, only read


class LearnerRuntime:
    """Owns one Learner: a writer thread learns micro-batches from a bounded queue.

    Without ``wal`` and ``checkpoints`` everything stays in memory; ``queue`` sizes the
    writer's queue and batches, ``durability`` says when to checkpoint.

    >>> from edgecl import strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> rt = LearnerRuntime(Learner(IdentityBackbone(2), strategies.create("ncm")))
    >>> rt.start()
    >>> z = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    >>> rt.submit_learn(z, ["up", "right"], [None, None]).result(timeout=5).accepted
    2
    >>> rt.predict(np.array([[0.1, 0.9]], np.float32), top_k=1).predictions[0].label
    'up'
    >>> rt.stop()
    """

    def __init__(
        self,
        learner: Learner,
        *,
        pixels: Literal["image", "vector"] = "vector",
        queue: QueueSettings = _QUEUE,
        durability: DurabilitySettings = _DURABILITY,
        wal: WriteAheadLogLike | None = None,
        checkpoints: CheckpointsLike | None = None,
        decode_pixels: int = DEFAULT_DECODE_PIXELS,
        max_pixels_per_request: int = DEFAULT_REQUEST_PIXELS,
        max_classes: int | None = None,
        embedder: Embedder | None = None,
        probe_rescore_s: float = 2.0,
        keep_saved_store: bool = False,
        observer: Observer | None = None,
    ) -> None:
        # The embedder only uses the backbone, which a restore keeps.
        self.embedder = embedder or Embedder(
            learner.backbone,
            pixels,
            budget=Budget(decode_pixels),
            max_request_pixels=max_pixels_per_request,
        )
        self.writer = Writer(
            learner,
            durability=durability,
            wal=wal,
            checkpoints=checkpoints,
            recent_ids=queue.recent_ids,
            max_classes=max_classes,
            probe_rescore_s=probe_rescore_s,
            keep_saved_store=keep_saved_store,
        )
        self.embedding = InFlight()  # the writer waits for these learn requests only
        self.queue = MicroBatchQueue[LearnJob | Control](
            queue.size, queue.max_batch, queue.max_wait_ms / 1000.0, item_size, self.embedding
        )
        self.checkpoint_on_stop = durability.checkpoint_on_stop
        self.jobs = RetrainJobs()
        self.started_at = time.time()
        self.observer = observer if observer is not None else Observer()
        self._thread: threading.Thread | None = None
        self._restored = False
        self.fleet_report: Callable[[], dict[str, Any]] | None = None  # /stats "fleet"

    @property
    def learner(self) -> Learner:
        return self.writer.learner

    @property
    def wal(self) -> WriteAheadLogLike | None:
        return self.writer.wal

    # -- lifecycle --------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Started (state restored) and accepting work."""
        return self.queue.accepting

    def restore(self) -> None:
        """Load the newest checkpoint and replay the WAL after it (once);
        :class:`service.checkpoints.RestoreError` when that would lose acknowledged samples."""
        if not self._restored:
            restore(self.writer)
            self._restored = True

    def start(self) -> None:
        """Restore state (unless :meth:`restore` ran), then start the writer thread."""
        if self._thread is not None:
            return
        self.restore()
        if self.writer.checkpointer is not None:  # the age trigger counts from the start
            self.writer.checkpointer.last_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="edgecl-writer", daemon=True)
        self._thread.start()
        self.queue.open()

    def stop(self, timeout: float = 8.0) -> None:
        """Stop accepting, drain the queue, checkpoint, close the WAL."""
        deadline = time.monotonic() + timeout
        self.queue.close()
        self.jobs.shutdown(timeout=timeout / 4)
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0.1))
            if self._thread.is_alive():
                log.error("the writer did not finish draining within %.1f s", timeout)
        if self.wal is not None:
            self.wal.close()
        self.embedder.close()

    # -- learning ---------------------------------------------------------------------
    def submit_learn(
        self,
        z: FloatArray,
        labels: Sequence[Label],
        ids: Sequence[str | None],
        source: str = "http",
        inputs: np.ndarray[Any, Any] | None = None,
        tasks: Sequence[Label | None] | None = None,
    ) -> Future[LearnResult]:
        """Check and queue latents (with ``tasks``, and ``inputs``: the prepared raw inputs
        when the store keeps them, see :meth:`embed_for_learning`) to learn; the future
        resolves once they are learned (and durable). ``ValueError`` for a bad batch,
        ``QueueFullError``, ``NotAcceptingError``."""
        batch = self.learner.check_batch(z, labels, inputs, tasks)
        if len(ids) != len(batch):
            raise ValueError(f"got {len(batch)} samples but {len(ids)} ids")
        job = LearnJob(batch, list(ids), source)
        self.queue.put(job)
        return job.future

    @property
    def has_room(self) -> bool:
        """Whether the learn queue would take one more request now."""
        return len(self.queue) < self.queue.capacity

    def embed(self, samples: Sequence[SampleInput]) -> FloatArray:
        """Latents for decoded samples (call from a worker thread; runs beside learning)."""
        return self.embedder.embed(samples)

    def embed_for_learning(
        self, samples: Sequence[SampleInput]
    ) -> tuple[FloatArray, np.ndarray[Any, Any] | None]:
        """Latents, plus the prepared raw inputs when the store keeps those."""
        with self.embedding:
            if self.learner.keeps_inputs:
                return self.embedder.embed_kept(samples)
            return self.embedder.embed(samples, urgent=False), None

    def _run(self) -> None:
        while (items := self.queue.take()) is not None:
            learn_jobs = [i for i in items if isinstance(i, LearnJob)]
            if learn_jobs:
                start = time.perf_counter()
                self.writer.learn_batch(learn_jobs)
                n = sum(len(job.labels) for job in learn_jobs)
                self.observer.learned(time.perf_counter() - start, n)
            for control in [i for i in items if isinstance(i, Control)]:
                try:
                    self.writer.run_locked(control.action)
                except Exception as exc:
                    control.future.set_exception(exc)
                else:
                    # The change is not in the WAL: checkpoint before reporting it done.
                    self._checkpoint(force=True)
                    control.future.set_result(None)
            del items, learn_jobs  # the latents go now, not after the checkpoint and next wait
            self._checkpoint()
        # Stopping: the WAL keeps what no checkpoint holds, so only a due one is written
        # (without a WAL nothing else would keep it).
        self._checkpoint(force=self.wal is None or self.checkpoint_on_stop)

    def _checkpoint(self, force: bool = False) -> None:
        done, start = self.writer.counters["checkpoints"], time.perf_counter()
        self.writer.maybe_checkpoint(force)
        if self.writer.counters["checkpoints"] > done:
            self.observer.checkpointed(time.perf_counter() - start)

    # -- predictions ------------------------------------------------------------------
    @property
    def has_classes(self) -> bool:
        return len(self.learner.labels) > 0

    def predict(
        self,
        z: FloatArray,
        top_k: int = 3,
        threshold: float | None = None,
        tasks: Sequence[Label | None] | None = None,
    ) -> PredictResult:
        """Calibrated predictions for latents (in their ``tasks``, for a task-aware head),
        each with its novelty and whether that is above ``threshold`` (default: the
        calibration's); ``NotFittedError`` before anything was learned."""
        z = self.learner.check_latents(z)
        start = time.perf_counter()
        w = self.writer  # its published head is frozen: no need to wait for learning
        out, labels, version, used = predict_open(
            w.learner, w.published, w.lock, z, threshold, tasks
        )
        self.observer.predicted(time.perf_counter() - start, len(z))
        return replace(rank(out, labels, version, top_k), tasks=used)

    # -- retraining -------------------------------------------------------------------
    def start_retrain(self) -> RetrainJob:
        """Retrain the head from the replay memory in the background (if the strategy can)."""
        strategy = retrainable(self.learner)
        if not self.queue.accepting:
            raise NotAcceptingError("the service is not accepting work (starting or stopping)")

        def work(job: RetrainJob) -> None:
            z, y = snapshot_memory(self.learner, self.writer.lock)
            state = strategy.retrain(z, y, job.report)
            if job.cancelled:
                return
            # Classes learned during the retrain keep their (fresh) slots.
            self.change(lambda: self.learner.swap_head(state)).result()

        return self.jobs.start(work)

    def change(self, action: Callable[[], None]) -> Future[None]:
        """Run ``action`` on the writer thread under the lock, like a retrained head's swap;
        the future resolves once a checkpoint holds the change (``NotAcceptingError``)."""
        control = Control(action)
        self.queue.put(control, bounded=False)
        return control.future

    def job(self, job_id: str) -> RetrainJob | None:
        """A retrain job by id (the last few are remembered)."""
        return self.jobs.get(job_id)

    # -- maintenance ------------------------------------------------------------------
    @contextmanager
    def exclusive(self) -> Iterator[Learner]:
        """Hold the learner still: nothing learns or swaps heads while the block runs."""
        with self.writer.lock:
            yield self.learner

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest checkpoint's saved state, without loading it (None: none yet)."""
        checkpoints = self.writer.checkpoints
        loaded = None if checkpoints is None else checkpoints.load_latest()
        return None if loaded is None else loaded[0]

    def reembed(self) -> Reembedded:
        """Move a stopped daemon's model to the configured backbone: restore it with its raw
        inputs embedded again (:func:`service.restore.restore`), then checkpoint it;
        ``StorageUnavailableError`` when that checkpoint cannot be written."""
        self._restored = True
        return reembed(self.writer)

    # -- statistics -------------------------------------------------------------------
    def stats(self) -> Stats:
        """A consistent snapshot of the learner's figures (``/stats``)."""
        stats = read_stats(self.writer, self.queue, self.started_at)
        if self.fleet_report is not None:
            stats.fleet = self.fleet_report()
        return stats
