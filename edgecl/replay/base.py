"""What the built-in stores share: budget, encoding, seeded generator, held items."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.replay.compress import check_batch, check_encoding
from edgecl.replay.drawn import EncodedDraw
from edgecl.replay.table import EncodedItems
from edgecl.types import AnyArray, FloatArray, IntArray, State


def check_int(value: object, what: str, minimum: int) -> int:
    """``value`` as an int if it is one (not a bool) and at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def rng_state(rng: np.random.Generator) -> State:
    """A generator's state as msgpack-safe data (PCG64's 128-bit integers become strings).

    >>> rng = np.random.default_rng(1)
    >>> other = np.random.default_rng()
    >>> set_rng_state(other, rng_state(rng))
    >>> other.random() == rng.random()
    True
    """
    state = dict(rng.bit_generator.state)
    state["state"] = {k: str(v) for k, v in state["state"].items()}
    return state


def set_rng_state(rng: np.random.Generator, state: State) -> None:
    if "bit_generator" not in state:  # the flat PCG64 fields of early checkpoints
        nested = {"state": state["state"], "inc": state["inc"]}
        state = {**state, "bit_generator": "PCG64", "state": nested}
    inner = {k: int(v) for k, v in state["state"].items()}
    rng.bit_generator.state = {**state, "state": inner}


class EncodedStore(Configurable, ABC):
    """The basics every built-in store shares; a subclass adds its policy in ``add_many``.

    ``evictions`` counts held items dropped to make room (items of one ``add_many`` batch
    that never made it in are not counted).

    >>> from edgecl.replay.reservoir import ReservoirStore
    >>> store = ReservoirStore(max_bytes=1000, encoding="float16")
    >>> store.add(np.ones(4), 2)
    >>> isinstance(store, EncodedStore), len(store), store.nbytes, store.bytes_per_item
    (True, 1, 24, 24.0)
    """

    name: str
    #: Per-item bookkeeping bytes beyond the encoded item and its label.
    extra_nbytes = 0

    def __init__(self, max_bytes: int, encoding: str = "int8", seed: int = 0) -> None:
        self.max_bytes = check_int(max_bytes, "max_bytes", 1)
        self.encoding = check_encoding(encoding)
        self.seed = check_int(seed, "seed", 0)
        self.evictions = 0
        self._rng = np.random.default_rng(self.seed)
        self._items = EncodedItems(self.encoding, self.max_bytes, self.extra_nbytes)

    @property
    def holds(self) -> str:
        """``"inputs"`` for ``lz4`` (raw uint8 images, embedded again when replayed),
        else ``"latents"``."""
        return "inputs" if self.encoding == "lz4" else "latents"

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes the held items cost (see :mod:`edgecl.replay.compress`); <= max_bytes."""
        return self._items.nbytes

    @property
    def shape(self) -> tuple[int, ...] | None:
        """The shape of every item, fixed by the first one added."""
        return self._items.shape

    @property
    def bytes_per_item(self) -> float:
        """Bytes one held item costs: exact for array encodings, the mean for lz4."""
        shape = self._items.shape
        fixed = None if shape is None else self._items.fixed_nbytes(shape)
        if fixed is not None:
            return float(fixed)
        return self.nbytes / len(self) if len(self) else 0.0

    def add(self, z: AnyArray, y: int) -> None:
        """Offer one item ``z`` (of the store's item shape) with class index ``y``."""
        check_int(y, "label", 0)
        self.add_many(np.asarray(z)[None, ...], np.array([y], dtype=np.int64))

    @abstractmethod
    def add_many(self, z: AnyArray, y: AnyArray) -> None:
        """Offer a batch ``(N, *shape)`` with class indices ``y``; the policy decides."""

    @abstractmethod
    def state_dict(self) -> State: ...

    @abstractmethod
    def load_state_dict(self, state: State) -> None: ...

    def _check(self, z: Any, y: Any) -> tuple[AnyArray, IntArray]:
        return check_batch(z, y, self.encoding, self._items.shape)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, IntArray]:
        """``min(n, len)`` distinct held items, decoded to float32, with their labels."""
        return self._items.sample(n, rng)

    def draw(self, n: int, rng: np.random.Generator) -> tuple[EncodedDraw, IntArray]:
        """The items :meth:`sample` gives for the same ``rng``, still as held (int8: a
        quarter of float32's bytes), to decode a few at a time (see
        :mod:`edgecl.replay.drawn`): rows of the store's arrays, valid until the store next
        changes. ``ValueError`` for lz4, whose items are raw inputs."""
        return self._items.draw(n, rng)

    def items(self) -> tuple[FloatArray, IntArray]:
        """Every held item, decoded, with its label (in storage order)."""
        return self._items.decode(np.arange(len(self))), self._items.labels.copy()

    def chunks(self, size: int) -> Iterator[tuple[FloatArray, IntArray]]:
        """Every held item in storage order, ``size`` at a time: what :meth:`items` gives,
        without decoding a whole store of raw images at once."""
        for start in range(0, len(self), size):
            slots = np.arange(start, min(start + size, len(self)))
            yield self._items.decode(slots), self._items.labels[slots].copy()

    def _base_state(self) -> State:
        return {
            "items": self._items.state_dict(),
            "evictions": self.evictions,
            "rng": rng_state(self._rng),
        }

    def _load_base_state(self, state: State) -> tuple[EncodedItems, np.random.Generator]:
        items = EncodedItems(self.encoding, self.max_bytes, self.extra_nbytes)
        items.load_state_dict(state["items"])
        rng = np.random.default_rng()
        set_rng_state(rng, state["rng"])
        return items, rng
