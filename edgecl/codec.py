"""Plain-data serialisation: msgpack with numpy arrays, never pickle.

Arrays travel as a msgpack extension holding dtype, shape and the raw bytes, so state
dicts of numbers, strings, lists, dicts and arrays round-trip exactly.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from edgecl.types import State

_ND_EXT = 42
#: Upper bound of an array's packed ``[dtype, shape]`` head (64 dimensions fit in 1 KiB).
_HEAD_BYTES = 4096
#: dtypes allowed in serialised arrays (object arrays would need pickle).
_DTYPES = {
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
}


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        dtype = obj.dtype.name
        if dtype not in _DTYPES:
            raise TypeError(f"cannot serialise an array of dtype {dtype}")
        arr = np.ascontiguousarray(obj).astype(obj.dtype.newbyteorder("<"), copy=False)
        head = msgpack.packb([dtype, list(arr.shape)])
        return msgpack.ExtType(_ND_EXT, head + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code != _ND_EXT:
        return msgpack.ExtType(code, data)
    # Only the small [dtype, shape] head goes through an Unpacker: feeding it the whole
    # array would copy it and trip its 100 MiB default buffer limit.
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_HEAD_BYTES)
    unpacker.feed(data[:_HEAD_BYTES])
    try:
        dtype, shape = next(unpacker)
    except (StopIteration, ValueError, TypeError) as exc:
        raise ValueError("serialised array has a malformed header") from exc
    if dtype not in _DTYPES:
        raise ValueError(f"serialised array has unsupported dtype {dtype!r}")
    offset = unpacker.tell()
    arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), offset=offset)
    return arr.astype(np.dtype(dtype), copy=True).reshape(shape)


def packb(state: Any) -> bytes:
    """Serialise plain data (with numpy arrays) to msgpack bytes.

    >>> s = {"w": np.arange(3, dtype=np.float32), "n": 2, "names": ["a", 1]}
    >>> out = unpackb(packb(s))
    >>> out["w"].tolist(), out["n"], out["names"]
    ([0.0, 1.0, 2.0], 2, ['a', 1])
    """
    out: bytes = msgpack.packb(state, default=_default, use_bin_type=True)
    return out


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def roundtrip(state: State) -> State:
    """What a state looks like after being written and read back."""
    out: State = unpackb(packb(state))
    return out
