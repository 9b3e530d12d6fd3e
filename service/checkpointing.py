"""When the writer takes a checkpoint (by the WAL bytes written since the last one), and
the taking of it.

A checkpoint rewrites the whole state (an ``slda`` head alone is megabytes), while the WAL
already holds every acknowledged sample. So a checkpoint is worth writing once the WAL since
the last one holds about as many bytes as that checkpoint: flash writes stay within twice
the WAL's, however slowly samples trickle in, and a restart replays a bounded tail.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edgecl.heap import release_freed_memory
from edgecl.state_views import shared_arrays

log = logging.getLogger("edgecl.durability")

#: After a failed checkpoint (disk full), the next try waits this long.
RETRY_S = 60.0


class CheckpointsLike(Protocol):
    last_size_bytes: int

    def save(self, state: dict[str, Any], wal_seq: int) -> Any: ...
    def load_latest(
        self, covered: Callable[[int, int], bool] | None = None
    ) -> tuple[dict[str, Any], int] | None: ...


class WalBytes(Protocol):
    bytes_written: int


@dataclass(frozen=True)
class CheckpointPolicy:
    """Checkpoint once the WAL since the last checkpoint holds ``wal_ratio`` times that
    checkpoint's bytes and at least ``min_wal_bytes``; ``every_samples`` and ``every_s``
    (None: off) add count and age triggers for who wants shorter replays.

    >>> p = CheckpointPolicy(wal_ratio=1.0, min_wal_bytes=1000)
    >>> p.due(samples=5, wal_bytes=800, last_bytes=500, age_s=9e9)
    False
    >>> p.due(samples=5, wal_bytes=1200, last_bytes=500, age_s=1.0)
    True
    >>> p.due(samples=5, wal_bytes=1200, last_bytes=5000, age_s=1.0)
    False
    """

    every_samples: int | None = None
    every_s: float | None = None
    wal_ratio: float = 1.0
    min_wal_bytes: int = 16 << 20

    def due(self, *, samples: int, wal_bytes: int | None, last_bytes: int, age_s: float) -> bool:
        """Whether ``samples`` learned and ``wal_bytes`` appended (None: no WAL) since the
        last checkpoint, of ``last_bytes``, taken ``age_s`` ago, call for a new one."""
        if samples == 0:
            return False
        if self.every_samples is not None and samples >= self.every_samples:
            return True
        if self.every_s is not None and age_s >= self.every_s:
            return True
        if wal_bytes is None:
            return False
        return wal_bytes >= max(self.min_wal_bytes, self.wal_ratio * last_bytes)


class Checkpointer:
    """Takes the writer's checkpoints when ``policy`` says so, and keeps their figures.

    The writer reports what it learned (:meth:`learned`), changes the WAL does not hold
    (:meth:`changed_outside_wal`: a retrained head, due at once) and the WAL tail a restore
    replayed (``wal_tail``); :meth:`maybe` writes the state when due.
    """

    def __init__(
        self, checkpoints: CheckpointsLike, wal: WalBytes | None, policy: CheckpointPolicy
    ) -> None:
        self.checkpoints, self.wal, self.policy = checkpoints, wal, policy
        self.since = 0  # samples learned since the last checkpoint
        self.unlogged = False  # a change only a checkpoint keeps
        # WAL bytes since the last checkpoint: those this process appended past the mark,
        # and the tail a restart replayed.
        self.wal_mark = self.wal_tail = 0
        self.last_at = time.monotonic()
        self.failing = False
        self.seconds = 0.0  # the writer's pause for the last checkpoint
        self.last_bytes = self.bytes_written = self.taken = 0

    def learned(self, samples: int) -> None:
        self.since += samples

    def changed_outside_wal(self) -> None:
        self.since += 1
        self.unlogged = True

    @property
    def wal_since(self) -> int | None:
        """WAL bytes written since the last checkpoint (None: no WAL)."""
        if self.wal is None:
            return None
        return self.wal.bytes_written - self.wal_mark + self.wal_tail

    def due(self) -> bool:
        age = time.monotonic() - self.last_at
        if self.failing and age < RETRY_S:  # after a failure (disk full) retry now and then
            return False
        return self.unlogged or self.policy.due(
            samples=self.since,
            wal_bytes=self.wal_since,
            last_bytes=self.checkpoints.last_size_bytes,
            age_s=age,
        )

    def maybe(self, state: Callable[[], dict[str, Any]], seq: int, force: bool = False) -> bool:
        """Write ``state()`` as covering WAL records up to ``seq`` if anything changed and
        it is due (or ``force``); False when the write failed (logged; the WAL keeps all).
        ``state`` is built inside :func:`~edgecl.state_views.shared_arrays`: call this
        from the thread that changes what it holds."""
        if self.since == 0 or not (force or self.due()):
            return True
        start = self.last_at = time.monotonic()
        try:
            # The state shares the learner's arrays, not copies of them (28 MiB for AR1's
            # defaults): the writer thread, the only one that changes them, is here until
            # the file is written and read back.
            with shared_arrays():
                built = state()
            self.checkpoints.save(built, seq)
            del built  # before the trim below
        except (OSError, ValueError) as exc:
            self.failing = True
            log.error("checkpoint failed (the WAL still holds the samples): %s", exc)
            return False
        finally:
            release_freed_memory()  # what writing it took, before the next batch's working set
        self.seconds, self.failing = time.monotonic() - start, False
        self.last_bytes = self.checkpoints.last_size_bytes
        self.bytes_written += self.last_bytes
        self.taken += 1
        self.since = self.wal_tail = 0
        self.unlogged = False
        self.wal_mark = 0 if self.wal is None else self.wal.bytes_written
        return True


class Wear:
    """Flash wear over a sliding window: bytes written (WAL and checkpoints) per sample
    learned, from points noted at most every ``every_s`` seconds.

    >>> w = Wear(now=0.0)
    >>> w.note(1000, 10, now=100.0); w.note(5000, 20, now=4000.0)
    >>> w.per_sample(9000, 30, window_s=3600, now=4100.0)  # since the point at 4000 s
    400.0
    """

    def __init__(self, every_s: float = 10.0, keep: int = 400, now: float | None = None) -> None:
        self.every_s = every_s
        start = time.monotonic() if now is None else now
        self._points: deque[tuple[float, int, int]] = deque([(start, 0, 0)], maxlen=keep)

    def note(self, written: int, learned: int, now: float | None = None) -> None:
        """Totals so far: bytes written and samples learned by this process."""
        t = time.monotonic() if now is None else now
        if t - self._points[-1][0] >= self.every_s:
            self._points.append((t, written, learned))

    def per_sample(
        self, written: int, learned: int, window_s: float = 3600.0, now: float | None = None
    ) -> float | None:
        """Bytes per sample learned within the last ``window_s`` (None: none learned)."""
        t = time.monotonic() if now is None else now
        base = next((p for p in self._points if p[0] >= t - window_s), self._points[-1])
        samples = learned - base[2]
        return (written - base[1]) / samples if samples > 0 else None
