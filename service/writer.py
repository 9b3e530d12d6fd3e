"""What the writer thread does: dedup → WAL → learn → durable → reply; checkpoints."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from edgecl import codec
from edgecl.batch import Batch
from edgecl.learner import Learner
from edgecl.types import Label, check_label
from service.checkpointing import Checkpointer, CheckpointPolicy, CheckpointsLike, Wear
from service.errors import ClassLimitError, SampleError, StorageUnavailableError
from service.heads import OpenHead
from service.records import join_kept, learn_record, record_inputs, record_tasks
from service.sample_ids import RecentIds
from service.settings_groups import DurabilitySettings
from service.task_admission import admit_tasks

log = logging.getLogger("edgecl.runtime")

_DURABILITY = DurabilitySettings()  # the default, only read


class WriteAheadLogLike(Protocol):
    last_seq: int
    bytes_written: int
    replayed_bytes: int

    def append_many(self, records: list[dict[str, Any]]) -> int: ...
    def sync_ahead(self) -> None: ...
    def wait_durable(self, seq: int) -> None: ...
    def replay(self, after_seq: int) -> Any: ...
    def covers(self, first: int, last: int) -> bool: ...
    def remove_before(self, seq: int) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class LearnResult:
    accepted: int
    duplicates: int
    model_version: int
    classes: int


@dataclass
class LearnJob:
    """One learn request waiting in the queue; ``future`` gets its :class:`LearnResult`."""

    batch: Batch  # checked by the learner when the request was queued
    ids: list[str | None]
    source: str
    future: Future[LearnResult] = field(default_factory=Future)

    @property
    def labels(self) -> list[Label]:
        return self.batch.labels


class Writer:
    """The only code that changes the learner; ``lock`` is held while it does.

    >>> from edgecl import strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> w = Writer(Learner(IdentityBackbone(1), strategies.create("ncm")))
    >>> job = LearnJob(Batch(np.ones((2, 1), np.float32), ["a", "a"]), ["x", "x"], "test")
    >>> w.learn_batch([job]); job.future.result()
    LearnResult(accepted=2, duplicates=1, model_version=1, classes=1)
    """

    def __init__(
        self,
        learner: Learner,
        *,
        durability: DurabilitySettings = _DURABILITY,
        wal: WriteAheadLogLike | None = None,
        checkpoints: CheckpointsLike | None = None,
        recent_ids: int = 10_000,
        max_classes: int | None = None,
        probe_rescore_s: float = 2.0,
        keep_saved_store: bool = False,
    ) -> None:
        self.learner = learner
        self.max_classes = max_classes  # None: no limit
        self.lock = threading.Lock()
        self.recent = RecentIds(recent_ids)
        # Learned, but their WAL fsync failed (507): a retry is stored again, not re-learned.
        self.unsynced = RecentIds(recent_ids)
        self.wal, self.checkpoints = wal, checkpoints
        policy = CheckpointPolicy(
            durability.checkpoint_every_samples,
            durability.checkpoint_every_s,
            durability.checkpoint_wal_ratio,
            durability.checkpoint_min_wal_bytes,
        )
        self.checkpointer = None if checkpoints is None else Checkpointer(checkpoints, wal, policy)
        self.counters = {"duplicates": 0, "storage_errors": 0, "checkpoints": 0, "replayed": 0}
        self.applied_seq = 0
        self.learned_here = 0  # samples learned by this process (not restored or replayed)
        self.wear = Wear()  # bytes written per sample learned, over the last hour
        self.reembed_skipped = 0  # WAL samples without raw inputs, left out by a re-embed
        self.keep_saved_store = keep_saved_store  # the settings named no store
        self.probe_rescore_s = probe_rescore_s  # /stats scores the probe anew past this age
        self.probe_view: tuple[float, tuple[int, float, dict[int, float]]] | None = None
        self.published: OpenHead | None = None  # read by predictions without the lock
        # Parts of every checkpoint kept by others (the fleet's memory): key -> its state.
        self.attached: dict[str, Callable[[], Any]] = {}

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
        new: set[tuple[type, Label]] = set()  # classes the admitted requests bring
        jobs = admit_tasks(self.learner, [job for job in jobs if self._admit(job, new)])
        if not jobs:
            return
        keeps = self._fresh(jobs)
        pairs = [(job, keep) for job, keep in zip(jobs, keeps, strict=True) if keep]
        # The kept samples as checked (the records hold raw inputs lz4-framed for the WAL).
        kept = join_kept(pairs)
        records = [
            learn_record(job.batch, job.ids, job.source, part, keep)
            for part, (job, keep) in enumerate(pairs)
        ]
        appended = self.wal.last_seq if self.wal is not None else 0
        try:
            if kept is not None:  # None exactly when no request kept a sample
                self._store_and_apply(records, kept)
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
        self.wear.note(self.bytes_written, self.learned_here)
        version, classes = self.learner.model_version, len(self.learner.labels)
        for job, keep in zip(jobs, keeps, strict=True):
            dups = len(job.labels) - len(keep)
            self.counters["duplicates"] += dups
            job.future.set_result(LearnResult(len(job.labels), dups, version, classes))

    def _admit(self, job: LearnJob, new: set[tuple[type, Label]]) -> bool:
        """Check what a request's WAL record must carry, and that its new classes fit
        beside ``new`` (those of requests admitted before it); a bad one fails alone."""
        known, mine = self.learner.labels, set[tuple[type, Label]]()
        for i, (label, sample_id) in enumerate(zip(job.labels, job.ids, strict=True)):
            try:
                check_label(label)
                codec.packb([label, sample_id])
            except (ValueError, TypeError, OverflowError) as exc:
                job.future.set_exception(SampleError(i, f"cannot be stored: {exc}"))
                return False
            key = (type(label), label)
            if self.max_classes is None or key in new or key in mine or label in known:
                continue
            if len(known) + len(new) + len(mine) >= self.max_classes:
                job.future.set_exception(
                    ClassLimitError(
                        i,
                        f"label {str(label)[:100]!r} would be a new class, but the model holds "
                        f"the most classes it may ({self.max_classes}, max_classes)",
                    )
                )
                return False
            mine.add(key)
        new |= mine
        return True

    def _store_and_apply(self, records: list[dict[str, Any]], batch: Batch) -> None:
        """WAL append → learn (while the fsync runs) → durable; errors say how far it got."""
        seq = self.applied_seq
        if self.wal is not None:
            try:
                seq = self.wal.append_many(records)
            except OSError as exc:
                raise StorageUnavailableError(
                    f"the samples could not be stored, nothing was learned: {exc}"
                ) from exc
            self.wal.sync_ahead()
        self._apply(records, seq, batch)
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
        self, records: Sequence[dict[str, Any]], seq: int, batch: Batch | None = None
    ) -> None:
        """Learn the records' samples as one step, but none whose id was learned already (a
        retry after a failed fsync, or its record met again in replay). ``batch``: the
        samples as checked when queued; without it (replay) the records are checked here."""
        recent = self.recent
        keeps = [[k for k, i in enumerate(r["ids"]) if i not in recent] for r in records]
        if batch is not None:
            starts = np.cumsum([0] + [len(r["ids"]) for r in records[:-1]])
            rows = [int(s) + k for s, keep in zip(starts, keeps, strict=True) for k in keep]
            parts = [batch.select(rows)] if rows else []
        elif any(keeps):
            z = np.concatenate([r["z"][keep] for r, keep in zip(records, keeps, strict=True)])
            labels = [r["labels"][k] for r, keep in zip(records, keeps, strict=True) for k in keep]
            tasks = record_tasks(records, keeps)
            parts = [self.learner.check_batch(z, labels, record_inputs(records, keeps), tasks)]
        else:
            parts = []
        if parts:
            with self.lock:
                self.learner.learn_batch(Batch.join(parts))
                self.published = self.learner.open_head()
        self.recent.add_many([i for r in records for i in r["ids"]])
        self.applied_seq = seq
        if self.checkpointer is not None:
            self.checkpointer.learned(sum(len(p) for p in parts))

    def run_locked(self, action: Callable[[], None]) -> None:
        """Run a state change (e.g. a retrained head) under the lock; it counts as a change."""
        with self.lock:
            action()
            self.published = self.learner.open_head()
        if self.checkpointer is not None:  # not in the WAL: only a checkpoint keeps it
            self.checkpointer.changed_outside_wal()

    # -- checkpoints ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "learner": self.learner.state_dict(),
            "recent_ids": self.recent.to_list(),
        }
        if self.learner.probe is not None:
            state["probe"] = self.learner.probe.state_dict()
        for key, part in self.attached.items():
            state[key] = part()
        return state

    @property
    def bytes_written(self) -> int:
        """WAL and checkpoint bytes this process wrote."""
        wal = 0 if self.wal is None else self.wal.bytes_written
        return wal + (0 if self.checkpointer is None else self.checkpointer.bytes_written)

    def maybe_checkpoint(self, force: bool = False) -> bool:
        """Checkpoint when due (:mod:`service.checkpointing`) or ``force``; False when the
        write failed (the WAL still holds everything)."""
        c = self.checkpointer
        if c is None:
            return True
        taken = c.taken
        if not c.maybe(self.state_dict, self.applied_seq, force):
            self.counters["storage_errors"] += 1
            return False
        if c.taken > taken:
            self.counters["checkpoints"] += 1
            if self.wal is not None:
                # Keep the WAL records every kept checkpoint generation still needs.
                keep_from = getattr(self.checkpoints, "oldest_kept_seq", self.applied_seq)
                self.wal.remove_before(int(keep_from))
        return True
