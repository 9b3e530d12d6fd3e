"""The segment files of a write-ahead log: which exist, the newest one's fd and valid size.

:class:`SegmentFiles` knows where records go and where they are read back from; when they
are durable is :class:`service.wal.WriteAheadLog`'s business, which holds its lock around
every call here (only the reads of :meth:`SegmentFiles.read` run without it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from service.wal_format import (
    list_segments,
    open_segment,
    read_segment,
    recover_segment,
    remove_files,
    segment_name,
    storage_error,
    write_all,
)

log = logging.getLogger("edgecl.durability")


class SegmentFiles:
    """The segments of one directory, each named by its first seq; appends go to the newest.

    >>> import tempfile
    >>> files = SegmentFiles(Path(tempfile.mkdtemp()))
    >>> files.recover(), files.firsts
    (0, [])
    >>> files.append(b"x", next_seq=1)
    1
    >>> files.firsts, files.size, files.newest.name
    ([1], 1, 'wal-000000000001.log')
    >>> files.close_active()
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.firsts: list[int] = []  # first seq of each segment, ascending
        self.size = 0  # valid bytes in the newest segment
        self.fd: int | None = None  # append fd of the newest segment, while open

    def path(self, first_seq: int) -> Path:
        return self.directory / segment_name(first_seq)

    @property
    def newest(self) -> Path:
        return self.path(self.firsts[-1])

    def recover(self) -> int:
        """Find the segments, cut the torn tail of the newest; returns the last valid seq."""
        self.firsts = list_segments(self.directory)
        if not self.firsts:
            return 0
        first = self.firsts[-1]
        last_seq, self.size = recover_segment(self.path(first), first)
        return last_seq

    def open_active(self, next_seq: int) -> int:
        """The fd of the newest segment, created (and its tail cut) if needed; a first
        segment starts at ``next_seq``. Raises :class:`~service.wal_format.StorageError`."""
        if self.fd is not None:
            return self.fd
        if not self.firsts:
            self.firsts.append(next_seq)
        self.fd = open_segment(self.newest, self.size)
        return self.fd

    def close_active(self) -> None:
        """Close the newest segment's fd as it is (syncing it first is the caller's job)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def start(self, first_seq: int) -> None:
        """Make the next append go to a new segment starting at ``first_seq`` (after
        :meth:`close_active`); the file is created by that append."""
        self.firsts.append(first_seq)
        self.size = 0

    def append(self, data: bytes | Iterable[bytes | memoryview], next_seq: int) -> int:
        """Write ``data`` (whole records, or their pieces as they are made) to the newest
        segment; all of it or, with :class:`~service.wal_format.StorageError` (or what
        making a piece raised), none of it. Returns the bytes written."""
        fd = self.open_active(next_seq)
        written = 0
        try:
            for part in [data] if isinstance(data, bytes) else data:
                write_all(fd, part)
                written += len(part)
                del part  # not alive while the next piece is made
        except OSError as exc:
            self._cut_partial(fd)
            raise storage_error(exc, "appending to", self.newest) from exc
        except BaseException:
            if written:
                self._cut_partial(fd)
            raise
        self.size += written
        return written

    def _cut_partial(self, fd: int) -> None:
        # A partial record must not stay: a later append would land behind garbage.
        try:
            os.ftruncate(fd, self.size)
        except OSError as exc:
            log.warning("could not cut a partial record yet (retried on reopen): %s", exc)
            os.close(fd)
            self.fd = None  # open_active truncates when it reopens

    def holds_from(self, first_seq: int) -> bool:
        """Whether no record from ``first_seq`` on was compacted away."""
        return bool(self.firsts) and self.firsts[0] <= first_seq

    def read(self, firsts: list[int], after_seq: int) -> Iterator[tuple[int, dict[str, Any], int]]:
        """Valid records (with their framed sizes) with seq > ``after_seq`` of the segments
        ``firsts`` (a copy of
        :attr:`firsts` taken under the log's lock), in order, skipping whole segments
        that end at or before ``after_seq``."""
        for first, next_first in zip(firsts, [*firsts[1:], None], strict=False):
            if next_first is None or next_first - 1 > after_seq:
                yield from read_segment(self.path(first), first, after_seq, next_first)

    def remove_before(self, seq: int) -> None:
        """Delete whole segments whose records all have seq <= ``seq`` (never the newest)."""
        pairs = zip(self.firsts, self.firsts[1:], strict=False)
        covered = [self.path(first) for first, after in pairs if after - 1 <= seq]
        del self.firsts[: remove_files(covered)]
