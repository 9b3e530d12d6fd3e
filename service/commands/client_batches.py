"""Image files to requests: batches of at most ``--batch`` files and :data:`BATCH_BYTES`,
made smaller when the daemon finds them too large."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from service.commands.client_files import ImageFile
from service.commands.client_http import DaemonError, Dropped, Unreachable

#: Image bytes per request at most: half the daemon's default body limit (8 MiB).
BATCH_BYTES = 4 << 20


class BatchFailed(Exception):
    def __init__(self, files: list[ImageFile], error: DaemonError) -> None:
        super().__init__(str(error))
        self.files, self.error = files, error


Send = Callable[[list[ImageFile], list[bytes]], Any]


def _read(f: ImageFile) -> bytes:
    try:
        return f.path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {f.path}: {exc.strerror or exc}") from None


def batches(
    files: list[ImageFile], size: int, send: Send, note: Callable[[str], None]
) -> Iterator[tuple[list[ImageFile], Any]]:
    """Each group of files sent with ``send`` (at most ``size`` files and
    :data:`BATCH_BYTES` bytes, one file at least) and its reply. A group the daemon finds
    too large (413, or the connection dropped while sending) is split in two and later
    groups kept to the size that passed (``note`` says so); one it refuses otherwise
    raises :class:`BatchFailed`."""
    start = 0
    while start < len(files):
        group, total = [files[start]], files[start].size
        for f in files[start + 1 : start + size]:
            if total + f.size > BATCH_BYTES:
                break
            group.append(f)
            total += f.size
        try:
            reply = send(group, [_read(f) for f in group])
        except Unreachable:
            raise
        except DaemonError as exc:
            if len(group) > 1 and (exc.status == 413 or isinstance(exc, Dropped)):
                size = len(group) // 2
                note(f"{exc}: sending at most {size} images per request (see --batch)")
                continue
            raise BatchFailed(group, exc) from None
        start += len(group)
        yield group, reply
