"""A replay draw kept as the store holds it, and a training batch read a few rows at a time.

AR1's defaults replay 1500 block14 latents (9408-d) in every batch: 54 MiB as float32, and
twice that while decoding them at once, against 14 MiB as the int8 store holds them. A
strategy that trains a minibatch at a time (see :class:`~edgecl.protocols.ReadsRows`)
gets the draw still encoded and decodes only the rows of each minibatch. Decoding is per
item (an int8 item's codes times its own scale), so these are the float32 values that
decoding the whole draw gives, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from edgecl.replay.compress import dequantize_int8
from edgecl.types import AnyArray, FloatArray, IntArray


class EncodedDraw:
    """Items drawn from a store in held form: int8 codes with their scales, or float16 /
    float32 values (a float32 array: items already decoded, e.g. by another store kind);
    with ``picks``, the drawn rows of the store's own arrays, copied only when decoded.

    >>> from edgecl.replay.compress import quantize_int8
    >>> x = np.array([[0.5, -1.0], [2.0, 1.0], [0.0, 3.0]], np.float32)
    >>> draw = EncodedDraw(*quantize_int8(x))
    >>> len(draw), draw.item_shape, draw.nbytes
    (3, (2,), 18)
    >>> bool(np.array_equal(draw.decode(np.array([2, 0])), draw.decode(np.arange(3))[[2, 0]]))
    True
    """

    def __init__(
        self, codes: AnyArray, scales: FloatArray | None = None, picks: IntArray | None = None
    ) -> None:
        self.codes = codes
        self.scales = scales
        self.picks = picks  # the rows of ``codes`` drawn, in draw order (None: every row)

    def __len__(self) -> int:
        return len(self.codes) if self.picks is None else len(self.picks)

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.codes.shape[1:])

    @property
    def nbytes(self) -> int:
        """Bytes the drawn items take as held (codes and scales)."""
        per_item = self.codes[:1].nbytes + (0 if self.scales is None else self.scales[:1].nbytes)
        return len(self) * int(per_item)

    def decode(self, rows: IntArray | None = None) -> FloatArray:
        """Items ``rows`` of the draw (None: all) as float32, each the values decoding the
        whole draw gives for it."""
        index = rows if self.picks is None else self.picks if rows is None else self.picks[rows]
        codes = self.codes if index is None else self.codes[index]
        if self.scales is not None:
            return dequantize_int8(codes, self.scales if index is None else self.scales[index])
        out: FloatArray = codes.astype(np.float32)
        return out


class LatentRows:
    """A training batch: ``new`` float32 latents (its rows ``picks``, if given: a batch's
    rows left after some were held back, read without copying them all) followed by the
    items of ``replay``, indexed as if they were one array
    ``np.concatenate([new[picks], replay.decode(all)])``, and read with :meth:`take` a few
    rows at a time.

    >>> new = np.array([[1.0, 2.0], [3.0, 3.0]], np.float32)
    >>> rows = LatentRows(new, EncodedDraw(np.array([[4.0, 5.0]], np.float16)), np.array([1]))
    >>> len(rows), rows.item_shape, rows.take(np.array([1, 0])).tolist()
    (2, (2,), [[4.0, 5.0], [3.0, 3.0]])
    """

    def __init__(
        self, new: FloatArray, replay: EncodedDraw | None = None, picks: IntArray | None = None
    ) -> None:
        if replay is not None and len(replay) and replay.item_shape != tuple(new.shape[1:]):
            raise ValueError(
                f"replayed items have shape {replay.item_shape}, new latents {new.shape[1:]}"
            )
        self.new = new
        self.picks = picks
        self.replay = replay if replay is not None and len(replay) else None

    @property
    def fresh(self) -> int:
        """How many rows are new latents (the first ones)."""
        return len(self.new) if self.picks is None else len(self.picks)

    def __len__(self) -> int:
        return self.fresh + (0 if self.replay is None else len(self.replay))

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.new.shape[1:])

    @property
    def dim(self) -> int:
        """Values per latent (the size of a flattened one)."""
        return math.prod(self.item_shape)

    def take(self, index: IntArray) -> FloatArray:
        """Rows ``index`` (ints in ``0..len-1``) as float32 ``(len(index), *item_shape)``."""
        idx = np.asarray(index, dtype=np.intp)
        n = self.fresh
        if self.replay is None or (len(idx) and int(idx.max()) < n):
            return np.ascontiguousarray(self._new(idx), dtype=np.float32)
        out = np.empty((len(idx), *self.item_shape), dtype=np.float32)
        fresh = idx < n
        out[fresh] = self._new(idx[fresh])
        out[~fresh] = self.replay.decode(idx[~fresh] - n)
        return out

    def _new(self, idx: IntArray) -> FloatArray:
        out: FloatArray = self.new[idx if self.picks is None else self.picks[idx]]
        return out
