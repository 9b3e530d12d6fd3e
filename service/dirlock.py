"""One process per data directory: a second daemon, or a tool, must not write beside it."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("edgecl.durability")


def lock_directory(directory: Path) -> int | None:
    """An exclusive lock on ``directory`` (its ``LOCK`` file), held until the fd is closed.

    ``ValueError`` when another process holds it; on a read-only or full disk no lock can
    be taken and None is returned (a warning is logged): nothing can be written there then.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        log.warning("cannot lock %s: %s", directory, exc)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(
            f"{directory} is in use by another edgecl process (a running daemon?); stop it first"
        ) from None
    return fd
