"""Plain-data serialisation: msgpack with numpy arrays, never pickle.

Arrays travel as a msgpack extension holding dtype, shape and the raw bytes, so state
dicts of numbers, strings, lists, dicts and arrays round-trip exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np

from edgecl.types import State

ND_EXT = 42
#: Upper bound of an array's packed ``[dtype, shape]`` head (64 dimensions fit in 1 KiB).
HEAD_BYTES = 4096
#: dtypes allowed in serialised arrays (object arrays would need pickle).
DTYPES = {
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


#: Arrays of at least this many bytes are written from their own memory by :func:`pack_to`
#: (msgpack's ``ext 32`` form, the one it takes for them too).
_STREAM_BYTES = 1 << 16
_EXT32 = b"\xc9"


def _array_parts(obj: np.ndarray[Any, Any]) -> tuple[bytes, memoryview]:
    """An array's serialised ``[dtype, shape]`` head and its little-endian values' bytes."""
    dtype = obj.dtype.name
    if dtype not in DTYPES:
        raise TypeError(f"cannot serialise an array of dtype {dtype}")
    arr = np.ascontiguousarray(obj).astype(obj.dtype.newbyteorder("<"), copy=False)
    return msgpack.packb([dtype, list(arr.shape)]), arr.reshape(-1).view(np.uint8).data


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        head, values = _array_parts(obj)
        # One copy of the values (``head + arr.tobytes()`` made two, alive at once).
        return msgpack.ExtType(ND_EXT, b"".join((head, values)))
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def array_head(data: bytes) -> tuple[str, Any, int]:
    """A serialised array's dtype, shape (as written) and where its values start, from
    (at least) its first :data:`HEAD_BYTES` bytes."""
    # Only the small [dtype, shape] head goes through an Unpacker: feeding it the whole
    # array would copy it and trip its 100 MiB default buffer limit.
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=HEAD_BYTES)
    unpacker.feed(data[:HEAD_BYTES])
    try:
        dtype, shape = next(unpacker)
    except (StopIteration, ValueError, TypeError) as exc:
        raise ValueError("serialised array has a malformed header") from exc
    if dtype not in DTYPES:
        raise ValueError(f"serialised array has unsupported dtype {dtype!r}")
    return dtype, shape, unpacker.tell()


def _array_view(data: bytes) -> tuple[np.ndarray[Any, Any], str, list[int]]:
    """The values of a serialised array (a read-only view of ``data``), its dtype, shape."""
    dtype, shape, offset = array_head(data)
    arr = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), offset=offset)
    return arr, dtype, shape


def _ext_hook(code: int, data: bytes) -> Any:
    if code != ND_EXT:
        return msgpack.ExtType(code, data)
    arr, dtype, shape = _array_view(data)
    return arr.astype(np.dtype(dtype), copy=True).reshape(shape)


def _checked_ext(code: int, data: bytes) -> Any:
    """What :func:`_ext_hook` checks, without building the array."""
    if code != ND_EXT:
        return msgpack.ExtType(code, data)
    arr, _, shape = _array_view(data)
    try:
        arr.reshape(shape)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"serialised array does not hold shape {shape!r}") from exc
    return None


def packb(state: Any) -> bytes:
    """Serialise plain data (with numpy arrays) to msgpack bytes.

    >>> s = {"w": np.arange(3, dtype=np.float32), "n": 2, "names": ["a", 1]}
    >>> out = unpackb(packb(s))
    >>> out["w"].tolist(), out["n"], out["names"]
    ([0.0, 1.0, 2.0], 2, ['a', 1])
    """
    out: bytes = msgpack.packb(state, default=_default, use_bin_type=True)
    return out


def pack_view(state: Any) -> memoryview:
    """What :func:`packb` gives, as a view of the packer's buffer: a large state is then
    never held twice (the buffer and a ``bytes`` copy of it).

    >>> bytes(pack_view({"n": 1})) == packb({"n": 1})
    True
    """
    packer = msgpack.Packer(default=_default, use_bin_type=True, autoreset=False)
    packer.pack(state)
    view: memoryview = packer.getbuffer()  # keeps the packer, and so its buffer, alive
    return view


def pack_to(write: Callable[[bytes | memoryview], object], state: Any) -> None:
    """Give ``write`` the bytes of :func:`packb` in pieces: dicts and lists are walked and
    a large array's values are written from its own memory, so nothing holds the whole
    (a checkpoint streams to its file).

    >>> parts = []
    >>> s = {"w": np.arange(20000, dtype=np.float32), "n": [1, "a"]}
    >>> pack_to(parts.append, s)
    >>> b"".join(parts) == packb(s)
    True
    """
    packer = msgpack.Packer(default=_default, use_bin_type=True)
    _pack_to(packer, write, state)


def _pack_to(
    packer: msgpack.Packer, write: Callable[[bytes | memoryview], object], obj: Any
) -> None:
    if isinstance(obj, dict):
        write(packer.pack_map_header(len(obj)))
        for key, value in obj.items():
            _pack_to(packer, write, key)
            _pack_to(packer, write, value)
    elif isinstance(obj, (list, tuple)):
        write(packer.pack_array_header(len(obj)))
        for value in obj:
            _pack_to(packer, write, value)
    elif isinstance(obj, np.ndarray) and obj.nbytes >= _STREAM_BYTES:
        head, values = _array_parts(obj)
        size = len(head) + values.nbytes
        if size > 0xFFFFFFFF:
            raise ValueError(f"an array of {values.nbytes} bytes is too large to serialise")
        write(_EXT32 + size.to_bytes(4, "big") + bytes([ND_EXT]) + head)
        write(values)
    else:
        write(packer.pack(obj))


def unpackb(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def unpack_checked(data: bytes | memoryview) -> Any:
    """What :func:`unpackb` gives, with None in place of every array: every array is
    checked as it would be loaded, none is built (a check that holds no second copy).

    >>> unpack_checked(packb({"w": np.ones(3), "n": 2}))
    {'w': None, 'n': 2}
    """
    return msgpack.unpackb(data, ext_hook=_checked_ext, raw=False, strict_map_key=False)


def roundtrip(state: State) -> State:
    """What a state looks like after being written and read back."""
    out: State = unpackb(packb(state))
    return out
