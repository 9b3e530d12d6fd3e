"""Write-ahead log: a learn batch is on disk before it is acknowledged.

Records go to segment files in one directory (:mod:`service.wal_segments` keeps them);
:mod:`service.wal_format` frames them (length, CRC32, msgpack) and says what a failed write
means (:class:`StorageError`). This module decides when appended records count as durable.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from service.dirlock import lock_directory
from service.wal_format import StorageError, frames, storage_error
from service.wal_segments import SegmentFiles

__all__ = ["StorageError", "WriteAheadLog", "storage_error"]

log = logging.getLogger("edgecl.durability")

_RETRY_S = 1.0  # pause of the group syncer after a failed fsync


class WriteAheadLog:
    """Segmented, checksummed, append-only log of learn records with consecutive seqs.

    ``fsync="always"``: :meth:`wait_durable` fsyncs (or :meth:`sync_ahead` did), one fsync
    covering every append so far (concurrent callers share it). ``fsync="group"``: a
    background thread fsyncs at most once per ``group_ms`` while there is unsynced data;
    :meth:`wait_durable` waits for it.
    Fewer fsyncs mean less flash wear, at the cost of up to ``group_ms`` more latency.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> wal = WriteAheadLog(d)
    >>> wal.append_many([{"kind": "learn", "labels": ["a"]}, {"kind": "learn", "labels": ["b"]}])
    2
    >>> wal.wait_durable(2)
    >>> wal.close()
    >>> [(seq, r["labels"]) for seq, r in WriteAheadLog(d).replay(after_seq=1)]
    [(2, ['b'])]
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: Literal["always", "group"] = "always",
        group_ms: float = 5.0,
        segment_bytes: int = 16 << 20,
        exclusive: bool = False,
    ) -> None:
        if fsync not in ("always", "group"):
            raise ValueError(f"fsync must be 'always' or 'group', got {fsync!r}")
        if group_ms < 0 or segment_bytes < 1:
            raise ValueError("group_ms must be >= 0 and segment_bytes >= 1")
        self.directory = Path(directory)
        self.fsync, self.group_ms, self.segment_bytes = fsync, float(group_ms), int(segment_bytes)
        self.last_seq = self.bytes_written = 0
        self.replayed_bytes = 0  # bytes of the records the last replay read
        self._cond = threading.Condition()
        self._files = SegmentFiles(self.directory)  # used with _cond held
        self._sync_error: StorageError | None = None
        self._syncing = self._ahead = False  # an "always" fsync in flight; asked ahead
        # After a failed fsync the kernel may have dropped those pages whatever a later
        # fsync says: records up to _lost_upto are never reported durable, and the next
        # append starts a new segment, so later records do not sit behind a possible hole.
        self._abandon = False
        self._lost_upto, self._lost_error = 0, StorageError("an earlier fsync failed")
        self._closed = False
        self._stop = threading.Event()
        # One process at a time: a second daemon, or a tool, must not write beside it.
        self._lock_fd = lock_directory(self.directory) if exclusive else None
        self.last_seq = self._files.recover()
        self._synced_seq = self.last_seq
        loop = self._group_loop if fsync == "group" else self._ahead_loop
        self._thread = threading.Thread(target=loop, name="wal-sync", daemon=True)
        self._thread.start()

    def _open_active(self) -> int:
        """The fd of the newest segment, created (and its tail cut) if needed."""
        return self._files.open_active(self.last_seq + 1)

    def _close_active(self) -> None:
        """Make the newest segment durable and close it (before rotating or advancing);
        after a failed fsync it is closed as it is."""
        files = self._files
        if files.fd is None and self._synced_seq < self.last_seq and not self._abandon:
            self._open_active()  # it was closed after a failed cut; its records need a sync
        if files.fd is not None:
            try:
                if not self._abandon:
                    os.fsync(files.fd)
            except OSError as exc:
                self._failed(storage_error(exc, "syncing", files.newest))
                raise self._lost_error from exc
            files.close_active()
        self._synced_seq, self._abandon = self.last_seq, False
        self._cond.notify_all()

    def append_many(self, records: list[dict[str, Any]]) -> int:
        """Append ``records`` (all or nothing) and return the seq of the last one.

        The bytes reach the OS before this returns; :meth:`wait_durable` makes them durable.
        A batch is never split: a segment rotates once it holds ``segment_bytes``.
        """
        with self._cond:
            if self._closed:
                raise ValueError("the write-ahead log is closed")
            if not records:
                return self.last_seq
            first = self.last_seq + 1
            files = self._files
            if files.firsts and (files.size >= self.segment_bytes or self._abandon):
                self._close_active()
                if files.size:
                    files.start(first)
            self.bytes_written += files.append(frames(first, records), next_seq=first)
            self.last_seq = first + len(records) - 1
            self._cond.notify_all()
            return self.last_seq

    def advance_to(self, seq: int) -> None:
        """Make the next appended seq at least ``seq + 1`` (e.g. after a checkpoint at
        ``seq`` when the log directory was lost), so seqs never go backwards. The new
        segment is created by the next append, so this works on a read-only directory."""
        with self._cond:
            if seq <= self.last_seq:
                return
            self._close_active()
            self._files.start(seq + 1)
            self.last_seq = self._synced_seq = seq

    def wait_durable(self, seq: int) -> None:
        """Return once every record up to ``seq`` is fsynced; ``StorageError`` if fsync fails."""
        with self._cond:
            if seq > self.last_seq:
                raise ValueError(f"seq {seq} was never appended (last is {self.last_seq})")
            if seq <= self._lost_upto:
                raise self._lost_error
            if self.fsync == "group":
                # close() ends with a final fsync, so waiters also wake then, either way.
                while self._synced_seq < seq:
                    if self._sync_error is not None:
                        raise self._sync_error
                    self._cond.wait()
                return
            # One fsync covers every append so far: concurrent callers wait for the one
            # in flight instead of queueing fsyncs of their own.
            while self._synced_seq < seq and self._syncing:
                self._cond.wait()
            if self._synced_seq >= seq:
                return
            if seq <= self._lost_upto:  # the fsync waited for failed
                raise self._lost_error
            self._syncing = True
        try:
            self._sync()
        finally:
            with self._cond:
                self._syncing = False
                self._cond.notify_all()

    def sync_ahead(self) -> None:
        """``always``: fsync what was appended in the background, so that work done before
        :meth:`wait_durable` overlaps it (``group`` syncs in the background anyway)."""
        with self._cond:
            if self.fsync == "always" and not self._syncing and self._synced_seq < self.last_seq:
                self._syncing = self._ahead = True
                self._cond.notify_all()

    def _ahead_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._ahead)
                if self._closed:
                    self._syncing = self._ahead = False
                    self._cond.notify_all()
                    return
                self._ahead = False
            try:
                self._sync()
            except StorageError as exc:
                log.warning("%s", exc)  # wait_durable raises it to the caller
            finally:
                with self._cond:
                    self._syncing = False
                    self._cond.notify_all()

    def _sync(self) -> None:
        """fsync everything appended so far; a duplicate fd is synced without the lock held,
        so appends need not wait for the disk."""
        with self._cond:
            target, path = self.last_seq, self._files.newest
            try:
                fd = os.dup(self._open_active())
            except StorageError as exc:
                self._sync_error = exc
                self._cond.notify_all()
                raise
        try:
            os.fsync(fd)
            error = None
        except OSError as exc:
            error = storage_error(exc, "syncing", path)
        finally:
            os.close(fd)
        with self._cond:
            self._sync_error = error
            if error is None:
                self._synced_seq = max(self._synced_seq, target)
            else:
                self._failed(error, target)
            self._cond.notify_all()
        if error is not None:
            raise error

    def _failed(self, error: StorageError, upto: int | None = None) -> None:
        self._abandon = True
        self._lost_upto = max(self._lost_upto, self.last_seq if upto is None else upto)
        self._lost_error = error

    def _group_loop(self) -> None:
        last = -math.inf
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self.last_seq > self._synced_seq)
                if self._closed:
                    return
            # At most one fsync per group_ms: appends made meanwhile join this group, and
            # after a quiet spell the first append is synced at once.
            delay = last + self.group_ms / 1000.0 - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            last = time.monotonic()
            try:
                self._sync()
            except StorageError as exc:
                log.warning("%s", exc)
                self._stop.wait(_RETRY_S)

    def replay(self, after_seq: int) -> Iterator[tuple[int, dict[str, Any]]]:
        """Valid records with seq > ``after_seq``, in order; ``replayed_bytes`` counts
        their bytes on disk. The torn tail of the newest segment was cut when the log was
        opened; a corrupt stretch inside an older segment is logged and skipped (later
        segments still replay)."""
        with self._cond:
            firsts = list(self._files.firsts)
        self.replayed_bytes = 0
        for seq, record, size in self._files.read(firsts, after_seq):
            self.replayed_bytes += size
            yield seq, record

    def covers(self, first: int, last: int) -> bool:
        """Whether records ``first..last`` are all still here (none were compacted away);
        true when there is nothing to hold (``first > last``).

        >>> import tempfile
        >>> wal = WriteAheadLog(Path(tempfile.mkdtemp()))
        >>> wal.covers(1, 0), wal.covers(1, 1), wal.append_many([{}]), wal.covers(1, 1)
        (True, False, 1, True)
        """
        with self._cond:
            if first > last:
                return True
            return self._files.holds_from(first) and self.last_seq >= last

    def remove_before(self, seq: int) -> None:
        """Delete whole segments whose records all have seq <= ``seq`` (never the newest)."""
        with self._cond:
            self._files.remove_before(seq)

    def close(self) -> None:
        """Stop the background syncer, fsync what is left (a failure is logged) and close."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        self._thread.join()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None
        with self._cond:
            try:
                self._close_active()
            except StorageError as exc:
                log.warning("%s", exc)
                self._sync_error = exc
                self._cond.notify_all()
                self._files.close_active()
