"""The dashboard's history on disk: one small file in the data dir, replaced atomically.

Flash wear: the file holds at most the ring's points (times as float64, figures as float32,
missing ones as NaN), zlib-compressed; full at the default 720 points of 22 figures and 10
classes it is about 67 KB, written every ``save_every_s`` (10 min) and at shutdown: about
0.4 MB an hour, less while the ring fills.
A missing, damaged or foreign file is not an error: the history starts empty, with a log
line saying why.
"""

from __future__ import annotations

import logging
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from edgecl import codec
from edgecl.persistence import write_atomic

log = logging.getLogger("edgecl.timeseries")

#: The file's name in the data dir.
NAME = "dashboard-history.bin"
_MAGIC = b"EDGECL-HISTORY1\n"


def _column(values: list[float | None]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float32)


def _values(column: Any, n: int) -> list[float | None]:
    array = np.asarray(column, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"a column holds {array.shape} values, not {n}")
    return [None if math.isnan(v) else v for v in array.tolist()]


def dump_history(columns: dict[str, Any], interval_s: float) -> bytes:
    """The file's bytes for a ring given as ``TimeSeries.columns()``.

    >>> cols = {"t": [1.5, 2.5], "values": {"rss": [1.0, None]}, "classes": {"a": [0.5, 1.0]}}
    >>> parse_history(dump_history(cols, 5.0)) == cols
    True
    """
    state = {
        "interval_s": interval_s,
        "t": np.asarray(columns["t"], dtype=np.float64),
        "values": {name: _column(col) for name, col in columns["values"].items()},
        "classes": {label: _column(col) for label, col in columns["classes"].items()},
    }
    return _MAGIC + zlib.compress(codec.packb(state), 6)


def parse_history(data: bytes) -> dict[str, Any]:
    """Inverse of :func:`dump_history`; ``ValueError`` on any damage (zlib checks it)."""
    if not data.startswith(_MAGIC):
        raise ValueError("not a dashboard history file (bad header)")
    try:
        state = codec.unpackb(zlib.decompress(data[len(_MAGIC) :]))
        t = [float(x) for x in np.asarray(state["t"], dtype=np.float64).tolist()]
        return {
            "t": t,
            "values": {str(k): _values(v, len(t)) for k, v in state["values"].items()},
            "classes": {str(k): _values(v, len(t)) for k, v in state["classes"].items()},
        }
    except ValueError:
        raise
    except Exception as exc:  # zlib, msgpack and a wrong shape each raise their own
        raise ValueError(f"damaged dashboard history ({type(exc).__name__}: {exc})") from exc


def save_history(path: Path, columns: dict[str, Any], interval_s: float) -> int:
    """Replace the file at ``path`` (write a temporary file, fsync, rename); returns its size."""
    data = dump_history(columns, interval_s)
    write_atomic(path, data)
    return len(data)


def load_history(path: Path) -> dict[str, Any] | None:
    """The ring kept at ``path`` as columns, or None (logged) when there is none to use."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.info("no dashboard history at %s yet: the charts start empty", path)
        return None
    except OSError as exc:
        log.warning("cannot read the dashboard history %s (%s): the charts start empty", path, exc)
        return None
    try:
        columns = parse_history(data)
    except ValueError as exc:
        log.warning("ignoring %s: %s; the charts start empty", path, exc)
        return None
    log.info("dashboard history: %d points from %s", len(columns["t"]), path)
    return columns
