"""Checking a snapshot file as it is read, a piece at a time: the file is never held whole,
nor any array in it (an AR1 checkpoint's replay memory alone is 16 MiB).

A walk over the msgpack encoding that :mod:`edgecl.codec` writes: every value is read and
checked as :func:`edgecl.codec.unpack_checked` would check it, each array's values only
counted against its ``[dtype, shape]`` head, with the CRC32 taken over every byte on the way.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any, BinaryIO

import msgpack
import numpy as np

from edgecl import codec

_PIECE = 1 << 20
_FIXED = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}
_FIXED.update({0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"})
_SIZED = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # bin 8/16/32, str 8/16/32
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_LONG = {0xDC: (2, False), 0xDD: (4, False), 0xDE: (2, True), 0xDF: (4, True)}


class Reader:
    """Bytes of ``f``, their CRC32 and count taken as they are read."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.crc, self.read_bytes = f, 0, 0

    def take(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise ValueError("the data ends early")
        self.crc = zlib.crc32(data, self.crc)
        self.read_bytes += n
        return data

    def skip(self, n: int) -> None:
        """Read ``n`` bytes into the checksum, keeping none."""
        while n > 0:
            n -= len(self.take(min(n, _PIECE)))

    def rest(self) -> int:
        """Read what is left into the checksum; how many bytes that was."""
        before = self.read_bytes
        while piece := self.f.read(_PIECE):
            self.crc = zlib.crc32(piece, self.crc)
            self.read_bytes += len(piece)
        return self.read_bytes - before


def value(r: Reader) -> Any:
    """The next value, as :func:`edgecl.codec.unpack_checked` gives it (arrays: None)."""
    b = r.take(1)[0]
    if b <= 0x7F or b >= 0xE0:
        return b if b <= 0x7F else b - 0x100
    if b <= 0x8F:
        return _map(r, b & 0x0F)
    if b <= 0x9F:
        return [value(r) for _ in range(b & 0x0F)]
    if b <= 0xBF:
        return _text(r.take(b & 0x1F))
    if b in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[b]
    if b in _FIXED:
        fmt = _FIXED[b]
        return struct.unpack(fmt, r.take(struct.calcsize(fmt)))[0]
    if b in _SIZED:
        data = r.take(_length(r, _SIZED[b]))
        return data if b <= 0xC6 else _text(data)
    if b in _EXT:
        n = _length(r, _EXT[b])
        return _ext(r, r.take(1)[0], n)
    if b in _FIXEXT:
        return _ext(r, r.take(1)[0], _FIXEXT[b])
    if b in _LONG:
        width, is_map = _LONG[b]
        n = _length(r, width)
        return _map(r, n) if is_map else [value(r) for _ in range(n)]
    raise ValueError(f"byte 0x{b:02x} starts no value")


def _length(r: Reader, width: int) -> int:
    return int.from_bytes(r.take(width), "big")


def _text(data: bytes) -> str:
    return data.decode("utf-8")  # UnicodeDecodeError is a ValueError


def _map(r: Reader, n: int) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for _ in range(n):
        key = value(r)
        try:
            out[key] = value(r)
        except TypeError as exc:  # a list as a key
            raise ValueError(f"a map key cannot be {type(key).__name__}") from exc
    return out


def _ext(r: Reader, code: int, n: int) -> Any:
    if code != codec.ND_EXT:
        return msgpack.ExtType(code, r.take(n))
    head = r.take(min(n, codec.HEAD_BYTES))
    dtype, shape, offset = codec.array_head(head)
    try:
        count, extra = divmod(n - offset, np.dtype(dtype).itemsize)
        dims = [int(d) for d in shape]
    except TypeError as exc:
        raise ValueError("serialised array has a malformed header") from exc
    if extra or min(dims, default=0) < 0 or math.prod(dims) != count:
        raise ValueError(f"serialised array does not hold shape {shape!r}")
    r.skip(n - len(head))
    return None
