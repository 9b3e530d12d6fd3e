"""Atomic snapshots: write to a temporary file, fsync, rename, fsync the directory."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecl import codec

SCHEMA_VERSION = 1
_MAGIC = b"EDGECL1\n"
_WRITE_BUFFER = 1 << 20  # small parts are gathered up to this; large arrays go straight


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes | Sequence[bytes | memoryview]) -> None:
    """Replace ``path`` with ``data`` (or its parts, written one after another) so a crash
    leaves either the old or the new file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        for part in [data] if isinstance(data, bytes) else data:
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_snapshot(path: str | os.PathLike[str], state: dict[str, Any]) -> int:
    """Replace ``path`` with the snapshot of ``state`` as :func:`write_atomic` would (a crash
    leaves the old file or the new one), streamed: the bytes of :func:`dump_snapshot`,
    never held whole (the checksum goes in once the body is written). Returns its size."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    crc = size = 0
    try:
        with open(tmp, "wb", buffering=_WRITE_BUFFER) as f:
            f.write(_MAGIC + bytes(4))

            def put(part: bytes | memoryview) -> None:
                nonlocal crc, size
                f.write(part)
                crc = zlib.crc32(part, crc)
                size += len(part)

            codec.pack_to(put, {"schema": SCHEMA_VERSION, "state": state})
            f.seek(len(_MAGIC))
            f.write(crc.to_bytes(4, "little"))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return len(_MAGIC) + 4 + size


def dump_snapshot(state: dict[str, Any]) -> bytes:
    """Framed snapshot bytes: magic, schema version, CRC32 of the body, msgpack body."""
    return b"".join(snapshot_parts(state))


def snapshot_parts(state: dict[str, Any]) -> list[bytes | memoryview]:
    """The bytes of :func:`dump_snapshot` in three parts (header, checksum, body) for
    :func:`write_atomic`: joining them would hold a large state's bytes twice."""
    body = codec.pack_view({"schema": SCHEMA_VERSION, "state": state})
    return [_MAGIC, zlib.crc32(body).to_bytes(4, "little"), body]


def load_snapshot(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`dump_snapshot`; ``ValueError`` on any damage.

    >>> load_snapshot(dump_snapshot({"a": 1}))
    {'a': 1}
    >>> load_snapshot(b"")
    Traceback (most recent call last):
    ...
    ValueError: not an edgecl snapshot (bad header)
    """
    return _loaded(data, codec.unpackb)


def check_snapshot(data: bytes) -> dict[str, Any]:
    """:func:`load_snapshot` with None in place of every array: the same checks (``ValueError``
    on any damage) without holding the state a second time.

    >>> import numpy as np
    >>> check_snapshot(dump_snapshot({"a": 1, "w": np.zeros(2)}))
    {'a': 1, 'w': None}
    """
    return _loaded(data, codec.unpack_checked)


def check_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`check_snapshot` of the file at ``path``, read a piece at a time (see
    :mod:`edgecl.snapshot_check`): neither the file nor any array in it is held whole."""
    from edgecl.snapshot_check import Reader, value

    with open(path, "rb") as f:
        head = f.read(len(_MAGIC) + 4)
        if len(head) < len(_MAGIC) + 4 or head[: len(_MAGIC)] != _MAGIC:
            raise ValueError("not an edgecl snapshot (bad header)")
        reader = Reader(f)
        try:
            doc, error = value(reader), None
        except Exception as exc:  # any damage; the checksum below says which kind
            doc, error = None, exc
        extra = reader.rest()
    if reader.crc != int.from_bytes(head[len(_MAGIC) :], "little"):
        raise ValueError("snapshot is corrupt (checksum mismatch)")
    if error is not None or extra:
        raise ValueError(f"snapshot is corrupt ({error or 'bytes after its end'})")
    return _state_of(doc)


def _loaded(data: bytes, unpack: Callable[[memoryview], Any]) -> dict[str, Any]:
    head = len(_MAGIC)
    if len(data) < head + 4 or data[:head] != _MAGIC:
        raise ValueError("not an edgecl snapshot (bad header)")
    crc = int.from_bytes(data[head : head + 4], "little")
    body = memoryview(data)[head + 4 :]  # not a copy of the body
    if zlib.crc32(body) != crc:
        raise ValueError("snapshot is corrupt (checksum mismatch)")
    try:
        doc = unpack(body)
    except Exception as exc:  # msgpack raises several types on garbage
        raise ValueError(f"snapshot is corrupt ({exc})") from exc
    return _state_of(doc)


def _state_of(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"snapshot schema {doc.get('schema')!r} is not {SCHEMA_VERSION}")
    state: dict[str, Any] = doc["state"]
    return state


def save(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    write_snapshot(path, state)


def load(path: str | os.PathLike[str]) -> dict[str, Any]:
    return load_snapshot(Path(path).read_bytes())
