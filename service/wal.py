"""Write-ahead log: a learn batch is on disk before it is acknowledged.

Segments are named by the seq of their first record (``wal-000000000001.log``). A record is
framed as a 4-byte length, a 4-byte CRC32 (of length and body) and a msgpack body
``[seq, record]`` packed with :mod:`edgecl.codec`, so numpy arrays round-trip.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from edgecl import codec
from edgecl.persistence import fsync_dir

log = logging.getLogger("edgecl.durability")

_HEADER = 8
_NAME = re.compile(r"wal-(\d+)\.log")
_REASONS = {
    errno.ENOSPC: "the data directory is full",
    errno.EDQUOT: "the disk quota of the data directory is used up",
    errno.EROFS: "the data directory is read-only",
    errno.EACCES: "the data directory is not writable (permission denied)",
    errno.EPERM: "the data directory is not writable (operation not permitted)",
}
_RETRY_S = 1.0  # pause of the group syncer after a failed fsync


class StorageError(OSError):
    """The data directory cannot take writes (full, read-only, ...); the message is a sentence.

    >>> exc = storage_error(OSError(errno.ENOSPC, "No space left on device"), "writing", "x")
    >>> str(exc), exc.errno == errno.ENOSPC
    ('the data directory is full: writing x failed (No space left on device).', True)
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return str(self.strerror)


def storage_error(exc: OSError, action: str, path: str | os.PathLike[str]) -> StorageError:
    """Turn a low-level ``OSError`` into a :class:`StorageError` that says what happened."""
    reason = _REASONS.get(exc.errno or 0, "the data directory cannot be written")
    return StorageError(f"{reason}: {action} {path} failed ({exc.strerror or exc}).", exc.errno)


def _frame(seq: int, record: dict[str, Any]) -> bytes:
    body = codec.packb([seq, record])
    head = len(body).to_bytes(4, "little")
    return head + zlib.crc32(body, zlib.crc32(head)).to_bytes(4, "little") + body


def _seq_of(body: memoryview) -> int:
    # The body starts with a 2-element msgpack array whose first item is the seq; reading
    # it directly avoids decoding the (large) latents just to learn the seq.
    if len(body) < 2 or body[0] != 0x92:
        raise ValueError("record is not a [seq, record] pair")
    tag = body[1]
    if tag < 0x80:
        return int(tag)
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(tag)
    if width is None or len(body) < 2 + width:
        raise ValueError("record seq is not an unsigned integer")
    return int.from_bytes(body[2 : 2 + width], "big")


def _scan(data: bytes, first_seq: int) -> tuple[list[tuple[int, memoryview]], int, str]:
    """Valid records ``(seq, body)`` from the start, the offset where they end, and why
    scanning stopped there early ("" if the whole segment is valid)."""
    view, pos = memoryview(data), 0
    out: list[tuple[int, memoryview]] = []
    while pos < len(data):
        if len(data) - pos < _HEADER:
            return out, pos, "torn record header"
        length = int.from_bytes(view[pos : pos + 4], "little")
        end = pos + _HEADER + length
        if length == 0 or end > len(data):
            return out, pos, "zero-length record" if length == 0 else "torn record"
        body = view[pos + _HEADER : end]
        crc = int.from_bytes(view[pos + 4 : pos + 8], "little")
        if zlib.crc32(body, zlib.crc32(view[pos : pos + 4])) != crc:
            return out, pos, "checksum mismatch"
        try:
            seq = _seq_of(body)
        except ValueError as exc:
            return out, pos, str(exc)
        if seq != first_seq + len(out):
            return out, pos, f"seq {seq} where {first_seq + len(out)} was expected"
        out.append((seq, body))
        pos = end
    return out, pos, ""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class WriteAheadLog:
    """Segmented, checksummed, append-only log of learn records with consecutive seqs.

    ``fsync="always"``: :meth:`wait_durable` fsyncs, one fsync covering every append so far
    (concurrent callers share it). ``fsync="group"``: a background thread fsyncs at most
    once per ``group_ms`` while there is unsynced data; :meth:`wait_durable` waits for it.
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
    ) -> None:
        if fsync not in ("always", "group"):
            raise ValueError(f"fsync must be 'always' or 'group', got {fsync!r}")
        if group_ms < 0 or segment_bytes < 1:
            raise ValueError("group_ms must be >= 0 and segment_bytes >= 1")
        self.directory = Path(directory)
        self.fsync = fsync
        self.group_ms = float(group_ms)
        self.segment_bytes = int(segment_bytes)
        self.last_seq = 0
        self.bytes_written = 0
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._segments: list[int] = []  # first seq of each segment, ascending
        self._size = 0  # valid bytes in the newest segment
        self._sync_error: StorageError | None = None
        self._syncing = False  # an "always" fsync is in flight
        self._closed = False
        self._stop = threading.Event()
        self._recover()
        self._synced_seq = self.last_seq
        self._thread: threading.Thread | None = None
        if fsync == "group":
            self._thread = threading.Thread(target=self._group_loop, name="wal-sync", daemon=True)
            self._thread.start()

    def _path(self, first_seq: int) -> Path:
        return self.directory / f"wal-{first_seq:012d}.log"

    def _recover(self) -> None:
        names = os.listdir(self.directory) if self.directory.is_dir() else []
        self._segments = sorted(int(m.group(1)) for n in names if (m := _NAME.fullmatch(n)))
        if not self._segments:
            return
        first = self._segments[-1]
        path = self._path(first)
        data = path.read_bytes()
        records, self._size, reason = _scan(data, first)
        self.last_seq = records[-1][0] if records else first - 1
        if self._size < len(data):
            log.warning(
                "cutting the torn tail of %s: dropping %d bytes after offset %d (%s)",
                path, len(data) - self._size, self._size, reason,
            )  # fmt: skip
            try:
                os.truncate(path, self._size)
            except OSError as exc:  # retried by _open_active before the next append
                log.warning("could not truncate %s yet: %s", path, exc)

    def _open_active(self) -> int:
        """The fd of the newest segment, created (and its tail cut) if needed."""
        if self._fd is not None:
            return self._fd
        if not self._segments:
            self._segments.append(self.last_seq + 1)
        path = self._path(self._segments[-1])
        try:
            if not self.directory.is_dir():
                self.directory.mkdir(parents=True)
                fsync_dir(self.directory.parent)
            existed = path.exists()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                if os.fstat(fd).st_size > self._size:
                    os.ftruncate(fd, self._size)
                if not existed:
                    fsync_dir(self.directory)
            except OSError:
                os.close(fd)
                raise
        except OSError as exc:
            raise storage_error(exc, "opening", path) from exc
        self._fd = fd
        return fd

    def _close_active(self) -> None:
        """Make the newest segment durable and close it (before rotating or advancing)."""
        if self._fd is None and self._synced_seq < self.last_seq:
            self._open_active()  # it was closed after a failed cut; its records need a sync
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                raise storage_error(exc, "syncing", self._path(self._segments[-1])) from exc
            os.close(self._fd)
            self._fd = None
        self._synced_seq = self.last_seq
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
            data = b"".join(_frame(first + i, r) for i, r in enumerate(records))
            if self._segments and self._size >= self.segment_bytes:
                self._close_active()
                self._segments.append(first)
                self._size = 0
            fd = self._open_active()
            try:
                _write_all(fd, data)
            except OSError as exc:
                self._cut_partial(fd)
                raise storage_error(exc, "appending to", self._path(self._segments[-1])) from exc
            self._size += len(data)
            self.bytes_written += len(data)
            self.last_seq = first + len(records) - 1
            self._cond.notify_all()
            return self.last_seq

    def _cut_partial(self, fd: int) -> None:
        # A partial record must not stay: a later append would land behind garbage.
        try:
            os.ftruncate(fd, self._size)
        except OSError as exc:
            log.warning("could not cut a partial record yet (retried on reopen): %s", exc)
            os.close(fd)
            self._fd = None  # _open_active truncates when it reopens

    def advance_to(self, seq: int) -> None:
        """Make the next appended seq at least ``seq + 1`` (e.g. after a checkpoint at
        ``seq`` when the log directory was lost), so seqs never go backwards. The new
        segment is created by the next append, so this works on a read-only directory."""
        with self._cond:
            if seq <= self.last_seq:
                return
            self._close_active()
            self._segments.append(seq + 1)
            self.last_seq = self._synced_seq = seq
            self._size = 0

    def wait_durable(self, seq: int) -> None:
        """Return once every record up to ``seq`` is fsynced; ``StorageError`` if fsync fails."""
        with self._cond:
            if seq > self.last_seq:
                raise ValueError(f"seq {seq} was never appended (last is {self.last_seq})")
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
            self._syncing = True
        try:
            self._sync()
        finally:
            with self._cond:
                self._syncing = False
                self._cond.notify_all()

    def _sync(self) -> None:
        """fsync everything appended so far; a duplicate fd is synced without the lock held,
        so appends need not wait for the disk."""
        with self._cond:
            target, path = self.last_seq, self._path(self._segments[-1])
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
            self._cond.notify_all()
        if error is not None:
            raise error

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
        """Valid records with seq > ``after_seq``, in order. The torn tail of the newest
        segment was cut when the log was opened; a corrupt stretch inside an older segment
        is logged and skipped (later segments still replay)."""
        with self._cond:
            segments = list(self._segments)
        for i, first in enumerate(segments):
            after = segments[i + 1] if i + 1 < len(segments) else None
            if after is not None and after - 1 <= after_seq:
                continue
            path = self._path(first)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            records, end, reason = _scan(data, first)
            for seq, body in records:
                if seq > after_seq:
                    yield seq, codec.unpackb(bytes(body))[1]
            if end < len(data):
                lost = f"{first + len(records)}..{after - 1}" if after else "from there on"
                log.warning(
                    "%s is corrupt at offset %d (%s): skipped %d bytes, records %s are lost",
                    path, end, reason, len(data) - end, lost,
                )  # fmt: skip

    def remove_before(self, seq: int) -> None:
        """Delete whole segments whose records all have seq <= ``seq`` (never the newest)."""
        removed = False
        with self._cond:
            while len(self._segments) > 1 and self._segments[1] - 1 <= seq:
                path = self._path(self._segments[0])
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("could not remove %s: %s", path, exc)
                    break
                self._segments.pop(0)
                removed = True
            if removed:
                try:
                    fsync_dir(self.directory)
                except OSError as exc:
                    log.warning("could not sync %s: %s", self.directory, exc)

    def close(self) -> None:
        """Stop the group syncer, fsync what is left (a failure is logged) and close."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        with self._cond:
            try:
                self._close_active()
            except StorageError as exc:
                log.warning("%s", exc)
                self._sync_error = exc
                self._cond.notify_all()
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
