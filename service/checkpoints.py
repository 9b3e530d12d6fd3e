"""Checkpoints of the whole learner state: atomic files, the newest few generations kept.

A checkpoint ``checkpoint-<wal_seq>.ckpt`` holds the state after every WAL record up to
``wal_seq``; it is an :mod:`edgecl.persistence` snapshot (magic, schema, CRC32) written with
temporary file, fsync, rename and directory fsync, then read back before it counts.

A checkpoint that cannot be read is never deleted nor overwritten: when an older one plus
the WAL still hold everything it held, it is renamed aside (``*.ckpt.unreadable``) and the
older one is used; otherwise the daemon refuses to start (:class:`RestoreError`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecl import persistence
from service.wal_format import storage_error

log = logging.getLogger("edgecl.durability")

_NAME = re.compile(r"checkpoint-(\d+)\.ckpt")
_TEMPORARY = re.compile(r"\.checkpoint-\d+\.ckpt\.tmp")  # left by a crash or a full disk
ASIDE = ".unreadable"  # suffix of a checkpoint set aside: it could not be read


class RestoreError(ValueError):
    """The saved state cannot be restored without losing acknowledged samples."""


class Checkpoints:
    """Atomic, checksummed checkpoints in ``directory``; the newest ``keep`` are kept.

    >>> import tempfile
    >>> ckpts = Checkpoints(Path(tempfile.mkdtemp()))
    >>> ckpts.save({"model_version": 3}, wal_seq=42).name
    'checkpoint-000000000042.ckpt'
    >>> ckpts.load_latest()
    ({'model_version': 3}, 42)
    """

    def __init__(self, directory: Path, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.last_duration_s = 0.0
        self.last_size_bytes = 0

    def _files(self) -> list[tuple[int, Path]]:
        """``(seq from the name, path)`` of every checkpoint file, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), self.directory / n) for n in names if (m := _NAME.fullmatch(n))]
        return sorted(found, reverse=True)

    def save(self, state: dict[str, Any], wal_seq: int) -> Path:
        """Write ``state`` (covering WAL records up to ``wal_seq``), read it back, and only
        then prune old generations.

        Raises :class:`service.wal.StorageError` when the directory cannot take the file,
        and ``ValueError`` when what was written cannot be read back (the file is removed);
        the previous checkpoints are untouched either way.
        """
        start = time.perf_counter()
        path = self.directory / f"checkpoint-{int(wal_seq):012d}.ckpt"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Streamed to the file: the state is never held a second time as bytes.
            size = persistence.write_snapshot(path, {"wal_seq": int(wal_seq), "state": state})
        except OSError as exc:
            self._remove_temporaries()
            raise storage_error(exc, "writing checkpoint", path) from exc
        self._read_back(path, int(wal_seq))
        self.last_duration_s = time.perf_counter() - start
        self.last_size_bytes = size
        self._prune()
        return path

    def _read_back(self, path: Path, wal_seq: int) -> None:
        """Load ``path`` as a restart would: a checkpoint counts (and the WAL it covers may
        go) only once it has been read back."""
        try:
            # Every array is checked as a load would, none built, and the file is read a
            # piece at a time: the state being saved is still in memory.
            got = _read(path, check=True)[1]
            if got != wal_seq:
                raise ValueError(f"it holds wal_seq {got}, not {wal_seq}")
        except (OSError, ValueError) as exc:
            try:
                path.unlink()
            except OSError as unlink_exc:
                log.warning("could not remove %s: %s", path, unlink_exc)
            raise ValueError(
                f"checkpoint {path} could not be read back ({exc}); it was removed and "
                "the WAL keeps the samples"
            ) from exc

    def _remove_temporaries(self) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in filter(_TEMPORARY.fullmatch, names):
            try:
                (self.directory / name).unlink()
            except OSError as exc:
                log.warning("could not remove %s: %s", self.directory / name, exc)

    def _prune(self) -> None:
        removed = False
        for _, path in self._files()[self.keep :]:
            try:
                path.unlink()
            except OSError as exc:
                log.warning("could not remove old checkpoint %s: %s", path, exc)
                continue
            removed = True
        self._remove_temporaries()
        if removed:
            try:
                persistence.fsync_dir(self.directory)
            except OSError as exc:
                log.warning("could not sync %s: %s", self.directory, exc)

    @property
    def oldest_kept_seq(self) -> int:
        """The ``wal_seq`` of the oldest kept generation (0 if none).

        WAL records up to it are inside every kept checkpoint, so
        ``wal.remove_before(ckpts.oldest_kept_seq)`` keeps the fallback to an older
        generation lossless: it still finds its WAL records.
        """
        seqs = [seq for seq, _ in self._files()][: self.keep]
        return seqs[-1] if seqs else 0

    def load_latest(
        self, covered: Callable[[int, int], bool] | None = None
    ) -> tuple[dict[str, Any], int] | None:
        """The newest readable checkpoint as ``(state, wal_seq)``, or ``None`` if none is.

        Damaged files are skipped with a warning. With ``covered`` (a restore), that is
        allowed only if ``covered(first, last)`` says the WAL still holds records
        ``first..last``, the ones the newest damaged file held beyond what is loaded;
        the damaged files are then set aside so no new checkpoint replaces them.
        Otherwise, and when a file cannot be read at all (I/O error),
        :class:`RestoreError` says why. Without ``covered`` nothing is changed on disk.
        """
        unreadable: list[tuple[int, Path, str]] = []
        found: tuple[dict[str, Any], int] | None = None
        for seq, path in self._files():
            try:
                found = _read(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise RestoreError(
                    f"cannot read checkpoint {path} ({exc}); refusing to start without it"
                ) from exc
            except ValueError as exc:
                log.warning("skipping checkpoint %s: %s; trying an older one", path, exc)
                unreadable.append((seq, path, str(exc)))
                continue
            if found[1] != seq:
                log.warning("checkpoint %s holds wal_seq %d; using that", path, found[1])
            with contextlib.suppress(OSError):  # what the next checkpoint is weighed against
                self.last_size_bytes = path.stat().st_size
            break
        if unreadable and covered is not None:
            self._set_aside(unreadable, 0 if found is None else found[1], covered)
        elif unreadable and found is None:
            log.warning("no readable checkpoint in %s", self.directory)
        return found

    def _set_aside(
        self,
        unreadable: list[tuple[int, Path, str]],
        restored_seq: int,
        covered: Callable[[int, int], bool],
    ) -> None:
        newest, path, reason = unreadable[0]
        if not covered(restored_seq + 1, newest):
            older = f"checkpoint at WAL seq {restored_seq}" if restored_seq else "checkpoint"
            raise RestoreError(
                f"checkpoint {path} cannot be read ({reason}), and neither an older "
                f"{older} nor the write-ahead log holds the records up to seq {newest} "
                "that it held; refusing to start rather than lose acknowledged samples. "
                "The file is left in place: restore it from a backup, or move the data "
                "dir aside to start empty"
            )
        for _, bad, _ in unreadable:
            aside, n = bad.with_name(bad.name + ASIDE), 1
            while aside.exists():  # one set aside earlier at the same seq stays too
                aside, n = bad.with_name(f"{bad.name}{ASIDE}.{n}"), n + 1
            try:
                bad.rename(aside)
                log.warning("kept %s aside as %s", bad, aside.name)
            except OSError as exc:
                raise RestoreError(
                    f"cannot set the unreadable checkpoint {bad} aside ({exc}); refusing "
                    "to start, since a new checkpoint could replace it"
                ) from exc
        if restored_seq == 0:
            log.warning("no readable checkpoint in %s; starting from the WAL alone", self.directory)


def _read(path: Path, check: bool = False) -> tuple[dict[str, Any], int]:
    """``(state, wal_seq)`` of one checkpoint file (``check``: arrays checked, given as
    None); ``ValueError`` when it is damaged."""
    try:
        if check:
            doc = persistence.check_file(path)
        else:
            data = path.read_bytes()
            if not data:
                raise ValueError("the file is empty")
            doc = persistence.load_snapshot(data)
        wal_seq, state = doc["wal_seq"], doc["state"]
    except (KeyError, TypeError) as exc:
        raise ValueError("it does not hold a wal_seq and a state") from exc
    if not isinstance(wal_seq, int) or not isinstance(state, dict):
        raise ValueError("it does not hold a wal_seq and a state")
    return state, wal_seq
