"""What the writer thread does: dedup → WAL → learn → durable → reply; checkpoints; restore."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgecl import codec
from edgecl.learner import Learner
from edgecl.probe import ProbeSet
from edgecl.types import FloatArray, Label, check_label
from service.heads import PublishedHead, freeze
from service.inputs import SampleError
from service.records import learn_record, record_inputs
from service.sample_ids import RecentIds

log = logging.getLogger("edgecl.runtime")


class StorageUnavailableError(RuntimeError):
    """The write-ahead log could not store or sync the samples (disk full, read-only)."""


class WriteAheadLogLike(Protocol):
    last_seq: int
    bytes_written: int

    def append_many(self, records: list[dict[str, Any]]) -> int: ...
    def wait_durable(self, seq: int) -> None: ...
    def replay(self, after_seq: int) -> Any: ...
    def covers(self, first: int, last: int) -> bool: ...
    def remove_before(self, seq: int) -> None: ...
    def close(self) -> None: ...


class CheckpointsLike(Protocol):
    last_size_bytes: int

    def save(self, state: dict[str, Any], wal_seq: int) -> Any: ...
    def load_latest(
        self, covered: Callable[[int, int], bool] | None = None
    ) -> tuple[dict[str, Any], int] | None: ...


@dataclass(frozen=True)
class LearnResult:
    accepted: int
    duplicates: int
    model_version: int
    classes: int


@dataclass
class LearnJob:
    """One learn request waiting in the queue; ``future`` gets its :class:`LearnResult`."""

    z: FloatArray
    labels: list[Label]
    ids: list[str | None]
    source: str
    inputs: np.ndarray[Any, Any] | None = None  # prepared raw inputs, if the store keeps them
    future: Future[LearnResult] = field(default_factory=Future)


class Writer:
    """The only code that changes the learner; ``lock`` is held while it does.

    >>> from edgecl import strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> w = Writer(Learner(IdentityBackbone(1), strategies.create("ncm")))
    >>> job = LearnJob(np.ones((2, 1), np.float32), ["a", "a"], ["x", "x"], "test")
    >>> w.learn_batch([job]); job.future.result()
    LearnResult(accepted=2, duplicates=1, model_version=1, classes=1)
    """

    def __init__(
        self,
        learner: Learner,
        *,
        recent_ids: int = 10_000,
        wal: WriteAheadLogLike | None = None,
        checkpoints: CheckpointsLike | None = None,
        checkpoint_every_samples: int = 1000,
        checkpoint_every_s: float = 60.0,
    ) -> None:
        self.learner = learner
        self.lock = threading.Lock()
        self.recent = RecentIds(recent_ids)
        # Learned, but their WAL fsync failed (507): a retry is stored again, not re-learned.
        self.unsynced = RecentIds(recent_ids)
        self.wal, self.checkpoints = wal, checkpoints
        self.every_samples, self.every_s = checkpoint_every_samples, checkpoint_every_s
        self.counters = {"duplicates": 0, "storage_errors": 0, "checkpoints": 0, "replayed": 0}
        self.applied_seq = 0
        self.learned_here = 0  # samples learned by this process (not restored or replayed)
        self.since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.checkpoint_failing = False
        self.checkpoint_s = 0.0  # the writer's pause for the last checkpoint
        self.checkpoint_bytes = self.checkpoint_bytes_written = 0
        self.probe: ProbeSet | None = None  # holds back a share of samples, never learned
        self.reembed_skipped = 0  # WAL samples without raw inputs, left out by a re-embed
        self.published: PublishedHead | None = None  # read by predictions without the lock

    # -- one micro-batch --------------------------------------------------------------
    def _fresh(self, jobs: Sequence[LearnJob]) -> list[list[int]]:
        """Per job, the indices of samples whose id was not seen before (nor earlier here)."""
        seen: set[str] = set()
        keep_all = []
        for job in jobs:
            keep = []
            for i, sample_id in enumerate(job.ids):
                known = sample_id in self.recent and sample_id not in self.unsynced
                if sample_id is not None and (known or sample_id in seen):
                    continue
                if sample_id is not None:
                    seen.add(sample_id)
                keep.append(i)
            keep_all.append(keep)
        return keep_all

    def learn_batch(self, jobs: Sequence[LearnJob]) -> None:
        """Learn several requests at once and resolve their futures (never raises).

        A request that cannot be stored or learned fails alone, never the others of its
        micro-batch (they may come from other clients)."""
        jobs = [job for job in jobs if self._admit(job)]
        if not jobs:
            return
        keeps = self._fresh(jobs)
        pairs = [(job, keep) for job, keep in zip(jobs, keeps, strict=True) if keep]
        records = [
            learn_record(job.z, job.labels, job.ids, job.source, part, job.inputs, keep)
            for part, (job, keep) in enumerate(pairs)
        ]
        # The kept raw inputs as they are: the records hold them lz4-framed for the WAL.
        raw = [job.inputs[keep] for job, keep in pairs if job.inputs is not None] or None
        appended = self.wal.last_seq if self.wal is not None else 0
        try:
            if records:
                self._store_and_apply(records, raw)
        except StorageUnavailableError as exc:
            self.counters["storage_errors"] += 1
            log.error("%s", exc)
            for job in jobs:
                job.future.set_exception(exc)
            return
        except Exception as exc:  # a bug must fail the requests, not kill the writer
            if len(jobs) > 1 and (self.wal is None or self.wal.last_seq == appended):
                # Nothing was stored: learn each request alone, so only the bad one fails.
                log.warning("a batch of %d requests failed (%s); one at a time", len(jobs), exc)
                for job in jobs:
                    self.learn_batch([job])
                return
            log.exception("learning a batch failed")
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.learned_here += sum(len(r["labels"]) for r in records)
        version, classes = self.learner.model_version, len(self.learner.labels)
        for job, keep in zip(jobs, keeps, strict=True):
            dups = len(job.labels) - len(keep)
            self.counters["duplicates"] += dups
            job.future.set_result(LearnResult(len(job.labels), dups, version, classes))

    def _admit(self, job: LearnJob) -> bool:
        """Check what a request's WAL record must carry; a bad one fails alone here."""
        for i, (label, sample_id) in enumerate(zip(job.labels, job.ids, strict=True)):
            try:
                check_label(label)
                codec.packb([label, sample_id])
            except (ValueError, TypeError, OverflowError) as exc:
                job.future.set_exception(SampleError(i, f"cannot be stored: {exc}"))
                return False
        return True

    def _store_and_apply(
        self, records: list[dict[str, Any]], raw: list[np.ndarray[Any, Any]] | None = None
    ) -> None:
        """WAL append → learn → fsync; ``StorageUnavailableError`` says how far it got."""
        seq = self.applied_seq
        if self.wal is not None:
            try:
                seq = self.wal.append_many(records)
            except OSError as exc:
                raise StorageUnavailableError(
                    f"the samples could not be stored, nothing was learned: {exc}"
                ) from exc
        self._apply(records, seq, raw)
        if self.wal is not None:
            try:
                self.wal.wait_durable(seq)
            except OSError as exc:
                # A retry must be stored again rather than acknowledged as a duplicate.
                self.unsynced.add_many([i for r in records for i in r["ids"]])
                raise StorageUnavailableError(
                    f"the samples were learned but could not be made durable: {exc}; "
                    "retry the request"
                ) from exc
            self.unsynced.discard_many([i for r in records for i in r["ids"]])

    def _apply(
        self,
        records: Sequence[dict[str, Any]],
        seq: int,
        raw: list[np.ndarray[Any, Any]] | None = None,
    ) -> None:
        """Learn the records' samples as one step, but none whose id was learned already
        (a retry after a failed fsync, or that retry's record met again in replay).
        ``raw``: each record's raw inputs, when the caller still has them undecoded."""
        recent = self.recent
        keeps = [[k for k, i in enumerate(r["ids"]) if i not in recent] for r in records]
        z = np.concatenate([r["z"][keep] for r, keep in zip(records, keeps, strict=True)])
        labels = [r["labels"][k] for r, keep in zip(records, keeps, strict=True) for k in keep]
        if raw is None:
            inputs = record_inputs(records, keeps)
        else:
            inputs = np.concatenate([x[keep] for x, keep in zip(raw, keeps, strict=True)])
        if labels:
            with self.lock:
                if self.probe is None:
                    self.learner.learn_latents(z, labels, inputs=inputs)
                else:
                    self.probe.learn(self.learner, z, labels, inputs)
                self.published = freeze(self.learner)
        self.recent.add_many([i for r in records for i in r["ids"]])
        self.applied_seq = seq
        self.since_checkpoint += len(labels)

    def run_locked(self, action: Callable[[], None]) -> None:
        """Run a state change (e.g. a retrained head) under the lock; it counts as a change."""
        with self.lock:
            action()
            self.published = freeze(self.learner)
        # Not in the WAL: only a checkpoint keeps it, so one is due now.
        self.since_checkpoint = max(self.since_checkpoint + 1, self.every_samples)

    # -- checkpoints and restore ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "learner": self.learner.state_dict(),
            "recent_ids": self.recent.to_list(),
        }
        if self.probe is not None:
            state["probe"] = self.probe.state_dict()
        return state

    def maybe_checkpoint(self, force: bool = False) -> None:
        """Checkpoint after ``every_samples`` samples or ``every_s`` seconds of changes."""
        if self.checkpoints is None or self.since_checkpoint == 0:
            return
        # After a failure (disk full) retry only every every_s, not after every batch.
        due = self.since_checkpoint >= self.every_samples and not self.checkpoint_failing
        if not (force or due or time.monotonic() - self.last_checkpoint >= self.every_s):
            return
        start = self.last_checkpoint = time.monotonic()
        try:
            self.checkpoints.save(self.state_dict(), self.applied_seq)
        except (OSError, ValueError) as exc:
            self.counters["storage_errors"] += 1
            self.checkpoint_failing = True
            log.error("checkpoint failed (the WAL still holds the samples): %s", exc)
            return
        self.checkpoint_s, self.checkpoint_failing = time.monotonic() - start, False
        self.checkpoint_bytes = self.checkpoints.last_size_bytes
        self.checkpoint_bytes_written += self.checkpoint_bytes
        self.counters["checkpoints"] += 1
        self.since_checkpoint = 0
        if self.wal is not None:
            # Keep the WAL records every kept checkpoint generation still needs.
            keep_from = getattr(self.checkpoints, "oldest_kept_seq", self.applied_seq)
            self.wal.remove_before(int(keep_from))

    def restore(self, reembed: bool = False) -> None:
        """Load the newest checkpoint, then replay the WAL records after it.

        ``reembed``: the model was learned on another backbone; the raw inputs its store
        and WAL keep are embedded through the current one and a new head learns them
        (see :func:`edgecl.reembed.reembed`); records without raw inputs are skipped.
        """
        loaded = None
        if self.checkpoints is not None:
            # A damaged checkpoint may be skipped only if the WAL still holds what it held.
            covered = self.wal.covers if self.wal is not None else _nothing_needed
            loaded = self.checkpoints.load_latest(covered)
            if loaded is not None:
                state, seq = loaded
                self._load(state, reembed)
                self.applied_seq = seq
                log.info("restored checkpoint at WAL seq %d", seq)
        if self.wal is None:
            return
        advance = getattr(self.wal, "advance_to", None)
        if advance is not None:
            advance(self.applied_seq)  # seqs never go backwards, even if the WAL was lost
        batch: list[dict[str, Any]] = []
        for seq, record in self.wal.replay(self.applied_seq):
            if record.get("part", 0) == 0:  # a new micro-batch (or a record without parts)
                self._replay(batch)
            if record.get("kind") == "learn":
                if reembed:
                    record = self._reembedded(record)
                if record:
                    batch.append(record)
            self.applied_seq = seq
        self._replay(batch)
        if self.counters["replayed"]:
            log.info("replayed %d samples from the WAL", self.counters["replayed"])
        self.published = freeze(self.learner)
        if self.checkpoints is not None and loaded is None and self.applied_seq == 0:
            # A new data dir: record the backbone it belongs to before any sample arrives,
            # so a WAL replayed later on another backbone is refused, not mislearned.
            self.since_checkpoint = max(self.since_checkpoint, 1)
            self.maybe_checkpoint(force=True)

    def _replay(self, batch: list[dict[str, Any]]) -> None:
        """Learn one replayed micro-batch (and empty ``batch``)."""
        if not batch:
            return
        try:
            self._apply(batch, self.applied_seq)
        except ValueError as exc:
            log.error(
                "skipping WAL records up to %d that cannot be learned: %s", self.applied_seq, exc
            )
        self.counters["replayed"] += sum(len(r.get("labels", ())) for r in batch)
        batch.clear()

    def _reembedded(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with latents from the current backbone ({} without raw inputs)."""
        inputs = record_inputs([record], [list(range(len(record["labels"])))])
        if inputs is None:
            self.reembed_skipped += len(record["labels"])
            return {}
        return {**record, "z": self.learner.embed(inputs)}

    def _load(self, state: dict[str, Any], reembed: bool = False) -> None:
        saved = state["learner"]
        current = self.learner
        want = (current.strategy.name, None if current.store is None else current.store.name)
        store = saved["store"]
        got = (saved["strategy"]["name"], None if store is None else store["name"])
        if want != got:
            raise ValueError(
                f"the data dir holds a model with strategy {got[0]!r} and store {got[1]!r}, "
                f"but the settings ask for {want[0]!r} and {want[1]!r}; use another data dir "
                "or change the settings"
            )
        if reembed:
            from edgecl.reembed import reembed as reembed_state

            # The probe's held latents are the old backbone's: it starts collecting again.
            self.learner = reembed_state(saved, current.backbone)
            state = {**state, "probe": None}
        else:
            self.learner = Learner.from_state(saved, backbone=current.backbone)
        self.recent = RecentIds(self.recent.capacity, state.get("recent_ids", []))
        if self.probe is not None and state.get("probe") is not None:
            self.probe.load_state_dict(state["probe"])


def _nothing_needed(first: int, last: int) -> bool:
    return first > last
