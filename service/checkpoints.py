"""Checkpoints of the whole learner state: atomic files, the newest few generations kept.

A checkpoint ``checkpoint-<wal_seq>.ckpt`` holds the state after every WAL record up to
``wal_seq``; it is an :mod:`edgecl.persistence` snapshot (magic, schema, CRC32) written with
temporary file, fsync, rename and directory fsync.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from edgecl import persistence
from service.wal_format import storage_error

log = logging.getLogger("edgecl.durability")

_NAME = re.compile(r"checkpoint-(\d+)\.ckpt")
_TEMPORARY = re.compile(r"\.checkpoint-\d+\.ckpt\.tmp")  # left by a crash or a full disk


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
        self._bad: set[Path] = set()  # found corrupt by load_latest; pruned first

    def _files(self) -> list[tuple[int, Path]]:
        """``(seq from the name, path)`` of every checkpoint file, newest first."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        found = [(int(m.group(1)), self.directory / n) for n in names if (m := _NAME.fullmatch(n))]
        return sorted(found, reverse=True)

    def save(self, state: dict[str, Any], wal_seq: int) -> Path:
        """Write ``state`` (covering WAL records up to ``wal_seq``) and prune old generations.

        Raises :class:`service.wal.StorageError` when the directory cannot take the file;
        the previous checkpoints are then untouched.
        """
        start = time.perf_counter()
        data = persistence.dump_snapshot({"wal_seq": int(wal_seq), "state": state})
        path = self.directory / f"checkpoint-{int(wal_seq):012d}.ckpt"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            persistence.write_atomic(path, data)
        except OSError as exc:
            self._remove_temporaries()
            raise storage_error(exc, "writing checkpoint", path) from exc
        self._bad.discard(path)
        self.last_duration_s = time.perf_counter() - start
        self.last_size_bytes = len(data)
        self._prune()
        return path

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
        files = [path for _, path in self._files()]
        kept = [path for path in files if path not in self._bad][: self.keep]
        removed = False
        for path in files:
            if path in kept:
                continue
            try:
                path.unlink()
            except OSError as exc:
                log.warning("could not remove old checkpoint %s: %s", path, exc)
                continue
            self._bad.discard(path)
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
        seqs = [seq for seq, path in self._files() if path not in self._bad][: self.keep]
        return seqs[-1] if seqs else 0

    def load_latest(self) -> tuple[dict[str, Any], int] | None:
        """The newest valid checkpoint as ``(state, wal_seq)``, or ``None`` if none is valid.

        Empty or corrupt files are skipped with a warning naming the file and the reason.
        """
        files = self._files()
        for seq, path in files:
            try:
                data = path.read_bytes()
                if not data:
                    raise ValueError("the file is empty")
                doc = persistence.load_snapshot(data)
                wal_seq, state = doc["wal_seq"], doc["state"]
                if not isinstance(wal_seq, int) or not isinstance(state, dict):
                    raise ValueError("it does not hold a wal_seq and a state")
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("skipping checkpoint %s: %s; trying an older one", path, exc)
                self._bad.add(path)
                continue
            if wal_seq != seq:
                log.warning("checkpoint %s holds wal_seq %d; using that", path, wal_seq)
            return state, wal_seq
        if files:
            log.warning("no valid checkpoint in %s; starting from the WAL alone", self.directory)
        return None
