"""How replay stores hold items compactly: int8 / float16 / float32 arrays or lz4 frames.

Byte accounting (what ``nbytes`` counts per held item):

- ``int8``: one byte per value, a float32 scale (4 B) and an int64 label (8 B);
- ``float16`` / ``float32``: 2 / 4 bytes per value and the label (8 B);
- ``lz4``: the frame's length, the label (8 B) and :data:`FRAME_OVERHEAD` (48 B: the
  CPython ``bytes`` header of 33 B, allocator alignment, and the list slot pointing at it);
- ``uint8``: one byte per value (integers 0..255, kept exactly) and the label (8 B): the
  code arrays of :class:`~edgecl.replay.pq.PQStore`, not a latent encoding (so not listed
  in :data:`ENCODINGS`).

A store may add its own per-item bookkeeping (the reservoir's float64 key).
"""

from __future__ import annotations

import math
from typing import Any

import lz4.frame
import numpy as np

from edgecl.types import AnyArray, FloatArray, IntArray

ENCODINGS = ("int8", "float16", "float32", "lz4")
LABEL_NBYTES = 8
SCALE_NBYTES = 4
FRAME_OVERHEAD = 48
FLOAT16_MAX = float(np.finfo(np.float16).max)
CODES = "uint8"
_VALUE_NBYTES = {"int8": 1, "float16": 2, "float32": 4, CODES: 1}


#: Items quantised at a time: a whole batch of 600 block14 latents (22 MiB as float32) took
#: four float32 temporaries of its size, 80 MiB above an AR1 daemon's working set.
QUANTIZE_BLOCK = 32


def quantize_int8(x: FloatArray, rows: IntArray | None = None) -> tuple[AnyArray, FloatArray]:
    """Per-item symmetric int8 codes and scales (max-abs / 127) for a batch ``(N, ...)``
    (``rows``: of those items of it only, never copied out together). Items are
    quantised :data:`QUANTIZE_BLOCK` at a time, each on its own: the same codes as all at once.

    >>> q, scale = quantize_int8(np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], np.float32))
    >>> q.tolist(), np.round(scale * 127, 6).tolist()
    ([[64, -127, 32], [0, 0, 0]], [2.0, 0.0])
    >>> quantize_int8(np.array([[1.0], [-4.0]], np.float32), np.array([1]))[0].tolist()
    [[-127]]
    """
    n = len(x) if rows is None else len(rows)
    q = np.empty((n, *x.shape[1:]), dtype=np.int8)
    scale = np.empty(n, dtype=np.float32)
    flat_q = q.reshape(n, math.prod(x.shape[1:]))
    for s in range(0, n, QUANTIZE_BLOCK):
        part = x[s : s + QUANTIZE_BLOCK] if rows is None else x[rows[s : s + QUANTIZE_BLOCK]]
        flat_q[s : s + len(part)], scale[s : s + len(part)] = _quantized(
            part.reshape(len(part), -1)
        )
    return q, scale


def _quantized(flat: FloatArray) -> tuple[AnyArray, FloatArray]:
    scale = (np.max(np.abs(flat), axis=1) / np.float32(127.0)).astype(np.float32)
    # An all-zero item keeps scale 0; dividing by 1 instead keeps its codes at 0.
    safe = np.where(scale > 0, scale, np.float32(1.0))
    q = np.clip(np.rint(flat / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


def dequantize_int8(q: AnyArray, scale: FloatArray) -> FloatArray:
    """Float32 values back from int8 codes; the error per value is at most ``scale / 2``.

    >>> x = np.array([[0.3, -1.0, 0.7]], np.float32)
    >>> bool(np.all(np.abs(dequantize_int8(*quantize_int8(x)) - x) <= 1.0 / 254 + 1e-7))
    True
    """
    shape = (len(q),) + (1,) * (q.ndim - 1)
    out: FloatArray = q.astype(np.float32)
    out *= scale.reshape(shape)  # in place: one float32 copy of the items, not two
    return out


def to_float16(x: FloatArray) -> AnyArray:
    """Float16 copy of ``x``; ``ValueError`` where a value would overflow to infinity.

    >>> to_float16(np.array([0.1, 1000.0], np.float32)).tolist()
    [0.0999755859375, 1000.0]
    >>> to_float16(np.array([1e6], np.float32))
    Traceback (most recent call last):
    ...
    ValueError: float16 encoding: values must be within +-65504.0
    """
    if x.size and float(np.max(np.abs(x))) > FLOAT16_MAX:
        raise ValueError(f"float16 encoding: values must be within +-{FLOAT16_MAX}")
    return x.astype(np.float16)


def compress_uint8(x: AnyArray) -> list[bytes]:
    """One lz4 frame per item of a uint8 batch ``(N, ...)``.

    >>> frames = compress_uint8(np.zeros((2, 28, 28), np.uint8))
    >>> len(frames), len(frames[0]) < 28 * 28
    (2, True)
    """
    return [lz4.frame.compress(item.tobytes(), store_size=False) for item in x]


def decompress_uint8(frames: list[bytes], shape: tuple[int, ...]) -> AnyArray:
    """The uint8 batch ``(len(frames), *shape)`` that :func:`compress_uint8` encoded.

    >>> x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    >>> bool(np.array_equal(decompress_uint8(compress_uint8(x), (2, 3)), x))
    True
    """
    out = np.empty((len(frames), *shape), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.frombuffer(lz4.frame.decompress(frame), dtype=np.uint8).reshape(shape)
    return out


def item_nbytes(encoding: str, shape: tuple[int, ...], frame_nbytes: int = 0) -> int:
    """Bytes one held item costs: its encoded payload plus per-item overhead.

    >>> item_nbytes("int8", (1280,))  # 1280 codes + 4 scale + 8 label
    1292
    >>> item_nbytes("float16", (3, 4, 4))
    104
    >>> item_nbytes("lz4", (28, 28), frame_nbytes=300)  # frame + 48 object overhead + 8 label
    356
    """
    if encoding == "lz4":
        return frame_nbytes + FRAME_OVERHEAD + LABEL_NBYTES
    size = int(np.prod(shape, dtype=np.int64)) * _VALUE_NBYTES[encoding] + LABEL_NBYTES
    return size + (SCALE_NBYTES if encoding == "int8" else 0)


def check_encoding(encoding: str) -> str:
    if encoding not in ENCODINGS and encoding != CODES:
        raise ValueError(f"unknown encoding {encoding!r}; choose one of {list(ENCODINGS)}")
    return encoding


def check_batch(
    z: Any, y: Any, encoding: str, shape: tuple[int, ...] | None
) -> tuple[AnyArray, IntArray]:
    """Validate a batch for a store; return values (float32, or uint8 for lz4) and labels."""
    arr = np.asarray(z)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"items must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim < 2 or int(np.prod(arr.shape[1:])) == 0:
        raise ValueError(f"items must be a batch (N, ...) of non-empty items, got {arr.shape}")
    if shape is not None and arr.shape[1:] != shape:
        raise ValueError(f"items must have shape {shape}, got {arr.shape[1:]}")
    labels = np.asarray(y)
    if labels.dtype.kind not in "iu" or labels.shape != (len(arr),):
        raise ValueError(f"labels must be {len(arr)} ints, got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() > np.iinfo(np.int64).max):
        raise ValueError("labels must be class indices >= 0")
    if encoding in ("lz4", CODES):
        if not np.all((arr >= 0) & (arr <= 255) & (arr == np.round(arr))):
            raise ValueError(f"{encoding} stores uint8 arrays: values must be integers in 0..255")
        return arr.astype(np.uint8), labels.astype(np.int64)
    with np.errstate(over="ignore"):  # overflow shows up as inf, rejected just below
        # Float32 as given, not copied (a store encodes what it keeps into its own arrays):
        # a micro-batch of AR1's block14 latents is 22 MiB.
        values = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(values)):
        raise ValueError("items contain NaN or infinite values (or overflow float32)")
    if encoding == "float16":
        to_float16(values)  # raises if a value would overflow
    return values, labels.astype(np.int64)
