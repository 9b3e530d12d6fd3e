"""Background retrain jobs: one at a time, with id, state, progress and cancel."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from edgecl.learner import Learner
from edgecl.protocols import Retrainable
from edgecl.task_book import unpack
from edgecl.types import FloatArray, IntArray
from service.errors import RetrainBusyError, RetrainUnsupportedError

log = logging.getLogger("edgecl.retrain")

JobState = Literal["running", "succeeded", "failed", "cancelled"]


class RetrainJob:
    """One retrain run, observed through :meth:`as_dict`.

    >>> job = RetrainJob()
    >>> job.report(0.5), job.as_dict()["state"], job.as_dict()["progress"]
    (True, 'running', 0.5)
    >>> job.cancel(); job.report(0.6)
    False
    """

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.state: JobState = "running"
        self.progress = 0.0
        self.error: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self._cancel = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def report(self, fraction: float) -> bool:
        self.progress = min(max(float(fraction), 0.0), 1.0)
        return not self._cancel.is_set()

    def finish(self, state: JobState, error: str | None = None) -> None:
        self.state, self.error, self.finished = state, error, time.time()
        if state == "succeeded":
            self.progress = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "state": self.state,
            "progress": self.progress,
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
        }


class RetrainJobs:
    """Runs at most one job at a time in its own thread and remembers the last ``keep`` jobs.

    >>> jobs = RetrainJobs()
    >>> job = jobs.start(lambda j: None)
    >>> jobs.wait(job.id, timeout=5.0).state
    'succeeded'
    """

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self._jobs: OrderedDict[str, RetrainJob] = OrderedDict()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def running(self) -> RetrainJob | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.state == "running"), None)

    def start(self, work: Callable[[RetrainJob], None]) -> RetrainJob:
        """Run ``work(job)`` in a new thread; it returns normally, or raises on failure."""
        with self._lock:
            busy = next((j for j in self._jobs.values() if j.state == "running"), None)
            if busy is not None:
                raise RetrainBusyError(f"retrain job {busy.id} is still running")
            job = RetrainJob()
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep:
                old_id, _ = self._jobs.popitem(last=False)
                self._threads.pop(old_id, None)
            thread = threading.Thread(
                target=self._run, args=(job, work), name=f"retrain-{job.id}", daemon=True
            )
            self._threads[job.id] = thread
        thread.start()
        return job

    @staticmethod
    def _run(job: RetrainJob, work: Callable[[RetrainJob], None]) -> None:
        try:
            work(job)
        except Exception as exc:
            log.exception("retrain job %s failed", job.id)
            job.finish("failed", f"{type(exc).__name__}: {exc}")
            return
        job.finish("cancelled" if job.cancelled else "succeeded")

    def get(self, job_id: str) -> RetrainJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def wait(self, job_id: str, timeout: float | None = None) -> RetrainJob:
        """Block until the job's thread ended (or ``timeout``); returns the job."""
        with self._lock:
            job, thread = self._jobs[job_id], self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return job

    def shutdown(self, timeout: float) -> None:
        """Cancel every running job and wait up to ``timeout`` seconds for them."""
        with self._lock:
            running = [(j, self._threads.get(j.id)) for j in self._jobs.values()]
        deadline = time.monotonic() + timeout
        for job, thread in running:
            job.cancel()
            if thread is not None:
                thread.join(max(deadline - time.monotonic(), 0.0))


def snapshot_memory(learner: Learner, lock: threading.Lock) -> tuple[FloatArray, IntArray]:
    """The memory as latents, copied under ``lock`` so retraining never races the writer.

    A raw-input store is copied as it is (its lz4 frames are shared, not decoded) and
    embedded after the lock is released, so learning is not held up for that long.
    """
    from edgecl import replay

    store = learner.store
    if store is None:
        raise ValueError("there is no replay memory")
    with lock:
        if not learner.keeps_inputs:
            z, keys = store.items()  # labels with each item's task (edgecl.task_book)
            return np.array(z, dtype=np.float32, copy=True), unpack(keys)[0]
        frozen = replay.create(store.name, **store.options())
        frozen.load_state_dict(store.state_dict())
    return learner.memory_latents(frozen)


def retrainable(learner: Learner) -> Retrainable:
    """The learner's strategy, if it can retrain from a replay memory that holds something;
    else ``RetrainUnsupportedError`` says why."""
    strategy, store = learner.strategy, learner.store
    if not isinstance(strategy, Retrainable):
        raise RetrainUnsupportedError(
            f"strategy {strategy.name!r} does not retrain from memory; only strategies "
            "with a retrain capability (such as gdumb) do"
        )
    if store is None or len(store) == 0:
        raise RetrainUnsupportedError("the replay memory is empty; learn some samples first")
    return strategy
