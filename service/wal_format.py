"""How the write-ahead log lays records out on disk, and what a failed write means.

A segment file is named by the seq of its first record (``wal-000000000001.log``). A record
is framed as a 4-byte little-endian length, a 4-byte CRC32 (of the length and the body) and
a msgpack body ``[seq, record]`` packed with :mod:`edgecl.codec`, so numpy arrays round-trip.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edgecl import codec
from edgecl.persistence import fsync_dir

log = logging.getLogger("edgecl.durability")

HEADER = 8
_JOINED = 1 << 16  # body pieces below this size are joined before they are written
SEGMENT_NAME = re.compile(r"wal-(\d+)\.log")
_REASONS = {
    errno.ENOSPC: "the data directory is full",
    errno.EDQUOT: "the disk quota of the data directory is used up",
    errno.EROFS: "the data directory is read-only",
    errno.EACCES: "the data directory is not writable (permission denied)",
    errno.EPERM: "the data directory is not writable (operation not permitted)",
}


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


def segment_name(first_seq: int) -> str:
    """The file name of the segment whose first record has ``first_seq``.

    >>> segment_name(1)
    'wal-000000000001.log'
    """
    return f"wal-{first_seq:012d}.log"


def frame(seq: int, record: dict[str, Any]) -> bytes:
    """One record as it is written: length, CRC32, body.

    >>> data = frame(7, {"kind": "learn"})
    >>> [(seq, decode(body)) for seq, body in scan(data, 7)[0]], scan(data, 7)[1:]
    ([(7, {'kind': 'learn'})], (22, ''))
    >>> scan(data[:-1], 7)[1:]
    (0, 'torn record')
    """
    return b"".join(frames(seq, [record]))


def frames(first: int, records: Sequence[dict[str, Any]]) -> Iterator[bytes | memoryview]:
    """``records`` framed from seq ``first`` on, a piece at a time: each record's length
    and CRC32, then its body, whose large arrays come as views of their own memory
    (:func:`edgecl.codec.pack_to`) and the rest joined. A micro-batch of AR1's 300-latent
    requests (11 MiB each) is written without a packed copy of any of it."""
    for i, record in enumerate(records):
        parts: list[bytes | memoryview] = []
        codec.pack_to(parts.append, [first + i, record])
        head = sum(len(part) for part in parts).to_bytes(4, "little")
        crc = zlib.crc32(head)
        for part in parts:
            crc = zlib.crc32(part, crc)
        small = bytearray(head + crc.to_bytes(4, "little"))
        for part in parts:
            if len(part) < _JOINED:
                small += part
                continue
            if small:
                yield bytes(small)
                small = bytearray()
            yield part
        if small:
            yield bytes(small)


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


def scan(data: bytes, first_seq: int) -> tuple[list[tuple[int, memoryview]], int, str]:
    """Valid records ``(seq, body)`` of a segment from its start, the offset where they end,
    and why scanning stopped there early ("" if the whole segment is valid)."""
    view, pos = memoryview(data), 0
    out: list[tuple[int, memoryview]] = []
    while pos < len(data):
        if len(data) - pos < HEADER:
            return out, pos, "torn record header"
        length = int.from_bytes(view[pos : pos + 4], "little")
        end = pos + HEADER + length
        if length == 0 or end > len(data):
            return out, pos, "zero-length record" if length == 0 else "torn record"
        body = view[pos + HEADER : end]
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


def decode(body: memoryview) -> dict[str, Any]:
    """The record inside a body found by :func:`scan`."""
    record: dict[str, Any] = codec.unpackb(bytes(body))[1]
    return record


def list_segments(directory: Path) -> list[int]:
    """The first seqs of the segments in ``directory``, ascending (none if it is missing)."""
    names = os.listdir(directory) if directory.is_dir() else []
    return sorted(int(m.group(1)) for n in names if (m := SEGMENT_NAME.fullmatch(n)))


def recover_segment(path: Path, first_seq: int) -> tuple[int, int]:
    """The last valid seq of the newest segment and its valid size; a torn or corrupt tail
    is logged and cut (if the cut fails, the next append's open retries it)."""
    data = path.read_bytes()
    records, size, reason = scan(data, first_seq)
    if size < len(data):
        log.warning(
            "cutting the torn tail of %s: dropping %d bytes after offset %d (%s)",
            path, len(data) - size, size, reason,
        )  # fmt: skip
        try:
            os.truncate(path, size)
        except OSError as exc:
            log.warning("could not truncate %s yet: %s", path, exc)
    return (records[-1][0] if records else first_seq - 1), size


def read_segment(
    path: Path, first_seq: int, after_seq: int, next_first: int | None
) -> Iterator[tuple[int, dict[str, Any], int]]:
    """Valid records of one segment with seq > ``after_seq``, each with its framed size;
    where a corrupt stretch ends them early, that is logged with the seqs lost (up to
    ``next_first``, the next segment's first seq) and the rest of the file skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    records, end, reason = scan(data, first_seq)
    for seq, body in records:
        if seq > after_seq:
            yield seq, decode(body), HEADER + len(body)
    if end < len(data):
        lost = f"{first_seq + len(records)}..{next_first - 1}" if next_first else "from there on"
        log.warning(
            "%s is corrupt at offset %d (%s): skipped %d bytes, records %s are lost",
            path, end, reason, len(data) - end, lost,
        )  # fmt: skip


def open_segment(path: Path, size: int) -> int:
    """An append fd of segment ``path``, cut to its ``size`` valid bytes; a new file (and
    a new directory) is made durable in its parent. Raises :class:`StorageError`."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            fsync_dir(path.parent.parent)
        existed = path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            if not existed:
                fsync_dir(path.parent)
        except OSError:
            os.close(fd)
            raise
    except OSError as exc:
        raise storage_error(exc, "opening", path) from exc
    return fd


def remove_files(paths: list[Path]) -> int:
    """Unlink ``paths`` in order, stopping at the first failure (logged), then fsync their
    directory; returns how many are gone."""
    for done, path in enumerate(paths):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)
            paths = paths[:done]
            break
    if paths:
        try:
            fsync_dir(paths[0].parent)
        except OSError as exc:
            log.warning("could not sync %s: %s", paths[0].parent, exc)
    return len(paths)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """``os.write`` until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
