"""The table of held items: encoded payloads, labels and the bytes each costs."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgecl.replay.compress import (
    check_encoding,
    compress_uint8,
    decompress_uint8,
    item_nbytes,
    quantize_int8,
)
from edgecl.replay.drawn import EncodedDraw
from edgecl.state_views import owned
from edgecl.types import AnyArray, FloatArray, IntArray, State


@dataclass
class Encoded:
    """A batch in held form: codes (+ scales) for arrays, frames for lz4; bytes per item."""

    shape: tuple[int, ...]
    sizes: IntArray
    codes: AnyArray | None = None
    scales: FloatArray | None = None
    frames: list[bytes] = field(default_factory=list)


class EncodedItems:
    """Items of one shape held encoded with their labels, counting the bytes they cost.

    Positions ``0..len-1`` are dense; :meth:`remove` fills holes from the end and returns
    where every remaining item came from, so a store can keep parallel columns in step.

    >>> table = EncodedItems("int8", max_bytes=1000)
    >>> enc = table.encode(np.ones((3, 4), np.float32))
    >>> table.append(enc, np.arange(3), np.array([0, 1, 1]))
    >>> len(table), table.nbytes, table.decode(np.array([2])).tolist()
    (3, 48, [[1.0, 1.0, 1.0, 1.0]])
    """

    def __init__(self, encoding: str, max_bytes: int, extra_nbytes: int = 0) -> None:
        self.encoding = check_encoding(encoding)
        self.max_bytes = max_bytes
        self.extra_nbytes = extra_nbytes
        self.shape: tuple[int, ...] | None = None
        self.nbytes = 0
        self._n = 0
        self._labels = np.zeros(0, dtype=np.int64)
        self._sizes = np.zeros(0, dtype=np.int64)
        self._codes: AnyArray | None = None
        self._scales = np.zeros(0, dtype=np.float32)
        self._frames: list[bytes] = []

    def __len__(self) -> int:
        return self._n

    @property
    def labels(self) -> IntArray:
        return self._labels[: self._n]

    @property
    def sizes(self) -> IntArray:
        return self._sizes[: self._n]

    def fixed_nbytes(self, shape: tuple[int, ...]) -> int | None:
        """Bytes per item when every item costs the same (None for lz4)."""
        if self.encoding == "lz4":
            return None
        return item_nbytes(self.encoding, shape) + self.extra_nbytes

    def encode(self, values: AnyArray, rows: IntArray | None = None) -> Encoded:
        """Encode a checked batch (``rows``: those items of it); ``ValueError`` if an item
        alone exceeds the budget. int8 reads the rows a few at a time, never copied out."""
        shape = tuple(values.shape[1:])
        if self.encoding == "int8":
            codes, scales = quantize_int8(values, rows)
            fixed = item_nbytes(self.encoding, shape) + self.extra_nbytes
            enc = Encoded(shape, np.full(len(codes), fixed, dtype=np.int64))
            enc.codes, enc.scales = codes, scales
        elif self.encoding == "lz4":
            picked = values if rows is None else values[rows]
            enc = self._frames_encoded(shape, compress_uint8(picked))
        else:
            picked = values if rows is None else values[rows]
            fixed = item_nbytes(self.encoding, shape) + self.extra_nbytes
            enc = Encoded(shape, np.full(len(picked), fixed, dtype=np.int64))
            enc.codes = picked.astype(np.dtype(self.encoding))
        if len(enc.sizes):
            self.check_fits(int(enc.sizes.max()))
        return enc

    def check_fits(self, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            raise ValueError(f"an item costs {nbytes} bytes, more than max_bytes={self.max_bytes}")

    def _frames_encoded(self, shape: tuple[int, ...], frames: list[bytes]) -> Encoded:
        extra = item_nbytes("lz4", shape) + self.extra_nbytes
        sizes = np.array([len(f) + extra for f in frames], dtype=np.int64).reshape(-1)
        return Encoded(shape, sizes, frames=frames)

    def _reserve(self, n: int, shape: tuple[int, ...]) -> None:
        if self.shape is None:
            self.shape = shape
        if n <= len(self._labels):
            return
        fixed = self.fixed_nbytes(shape)
        cap = max(n, 2 * len(self._labels), 16)
        if fixed is not None:
            # Never allocate rows the budget could not fill.
            cap = max(n, min(cap, self.max_bytes // fixed))
            codes = np.zeros((cap, *shape), dtype=np.dtype(self.encoding))
            if self._codes is not None:
                codes[: self._n] = self._codes[: self._n]
            self._codes = codes
        if self.encoding == "int8":
            self._scales = _grown(self._scales, cap, self._n)
        self._labels = _grown(self._labels, cap, self._n)
        self._sizes = _grown(self._sizes, cap, self._n)

    def put(self, slots: IntArray, enc: Encoded, rows: IntArray, labels: IntArray) -> None:
        """Write batch ``rows`` at ``slots``; slots equal to ``len`` and beyond append."""
        if not len(rows):
            return
        n_after = max(self._n, int(slots.max()) + 1)
        self._reserve(n_after, enc.shape)
        self.nbytes += int(enc.sizes[rows].sum())
        if self._n:
            old = slots[slots < self._n]
            self.nbytes -= int(self._sizes[old].sum())
        if enc.codes is not None and self._codes is not None:
            self._codes[slots] = enc.codes[rows]
        if enc.scales is not None:
            self._scales[slots] = enc.scales[rows]
        if enc.frames:
            self._frames.extend([b""] * (n_after - len(self._frames)))
            for slot, row in zip(slots.tolist(), rows.tolist(), strict=True):
                self._frames[slot] = enc.frames[row]
        self._labels[slots] = labels[rows]
        self._sizes[slots] = enc.sizes[rows]
        self._n = n_after

    def append(self, enc: Encoded, rows: IntArray, labels: IntArray) -> None:
        self.put(np.arange(self._n, self._n + len(rows)), enc, rows, labels)

    def remove(self, slots: IntArray) -> IntArray:
        """Drop items at ``slots``; returns, for each new position, its old position."""
        n_new = self._n - len(slots)
        self.nbytes -= int(self._sizes[slots].sum())
        gone = np.zeros(self._n, dtype=bool)
        gone[slots] = True
        holes = np.flatnonzero(gone[:n_new])
        movers = n_new + np.flatnonzero(~gone[n_new:])
        kept = np.arange(n_new)
        kept[holes] = movers
        for col in (self._labels, self._sizes, self._scales, self._codes):
            if col is not None and len(col):
                col[holes] = col[movers]
        if self._frames:
            for hole, mover in zip(holes.tolist(), movers.tolist(), strict=True):
                self._frames[hole] = self._frames[mover]
            del self._frames[n_new:]
        self._n = n_new
        return kept

    def decode(self, slots: IntArray) -> FloatArray:
        if self.encoding == "lz4":
            shape = self.shape if self.shape is not None else ()
            raw = decompress_uint8([self._frames[i] for i in slots.tolist()], shape)
            return raw.astype(np.float32)
        return self.encoded(slots).decode()

    def encoded(self, slots: IntArray) -> EncodedDraw:
        """Copies of the items at ``slots`` as held (not for lz4: frames are not arrays)."""
        if self.encoding == "lz4":
            raise ValueError("lz4 items are frames of raw inputs; decode them instead")
        if self._codes is None:
            shape = self.shape if self.shape is not None else ()
            return EncodedDraw(np.zeros((0, *shape), dtype=np.float32))
        scales = self._scales[slots] if self.encoding == "int8" else None
        return EncodedDraw(self._codes[slots], scales)

    def picks(self, n: int, rng: np.random.Generator) -> IntArray:
        """Up to ``n`` distinct positions of held items, drawn without replacement."""
        picks = rng.choice(self._n, size=min(max(n, 0), self._n), replace=False)
        return np.asarray(picks, dtype=np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, IntArray]:
        """Up to ``n`` distinct held items (without replacement), decoded, with labels."""
        picks = self.picks(n, rng)
        return self.decode(picks), self._labels[picks].copy()

    def draw(self, n: int, rng: np.random.Generator) -> tuple[EncodedDraw, IntArray]:
        """What :meth:`sample` gives (the same items for the same ``rng``), still encoded:
        the drawn rows of the held arrays, not a copy, so it reads what the table holds
        until the table next changes (not for lz4)."""
        picks = self.picks(n, rng)
        if self.encoding == "lz4" or self._codes is None:
            return self.encoded(picks), self._labels[picks].copy()
        scales = self._scales if self.encoding == "int8" else None
        return EncodedDraw(self._codes, scales, picks), self._labels[picks].copy()

    def state_dict(self) -> State:
        n = self._n
        state: State = {
            "encoding": self.encoding,
            "shape": None if self.shape is None else list(self.shape),
            "labels": owned(self.labels),
        }
        if self.encoding == "lz4":
            state["frames"] = list(self._frames[:n])
        elif self._codes is not None:
            state["codes"] = owned(self._codes[:n])
            if self.encoding == "int8":
                state["scales"] = owned(self._scales[:n])
        return state

    def load_state_dict(self, state: State) -> None:
        if state["encoding"] != self.encoding:
            raise ValueError(f"state holds {state['encoding']} items, not {self.encoding}")
        fresh = EncodedItems(self.encoding, self.max_bytes, self.extra_nbytes)
        labels = np.asarray(state["labels"], dtype=np.int64)
        if state["shape"] is not None and len(labels):
            shape = tuple(int(s) for s in state["shape"])
            if self.encoding == "lz4":
                enc = self._frames_encoded(shape, [bytes(f) for f in state["frames"]])
            else:
                codes = np.asarray(state["codes"], dtype=np.dtype(self.encoding))
                fixed = item_nbytes(self.encoding, shape) + self.extra_nbytes
                enc = Encoded(shape, np.full(len(codes), fixed, dtype=np.int64))
                enc.codes = codes.reshape(len(codes), *shape)
                if self.encoding == "int8":
                    enc.scales = np.asarray(state["scales"], dtype=np.float32)
            if len(enc.sizes) != len(labels):
                raise ValueError(f"state has {len(enc.sizes)} items for {len(labels)} labels")
            fresh.shape = shape
            fresh.append(enc, np.arange(len(labels)), labels)
        elif state["shape"] is not None:
            fresh.shape = tuple(int(s) for s in state["shape"])
        if fresh.nbytes > self.max_bytes:
            raise ValueError(f"state holds {fresh.nbytes} bytes, over max_bytes={self.max_bytes}")
        self.__dict__.update(fresh.__dict__)


def _grown(arr: AnyArray, cap: int, n: int) -> AnyArray:
    out = np.zeros(cap, dtype=arr.dtype)
    out[:n] = arr[:n]
    return out
