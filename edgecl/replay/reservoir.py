"""Reservoir sampling: a uniform sample of the whole stream within a byte budget."""

from __future__ import annotations

import numpy as np

from edgecl.replay.base import EncodedStore
from edgecl.types import AnyArray, IntArray, State

KEY_NBYTES = 8


class ReservoirStore(EncodedStore):
    """Uniform reservoir sampling over the whole stream, within ``max_bytes``.

    Every offered item draws a uniform random key; the store holds the items with the
    largest keys that fit, evicting the lowest keys first, and turns away any later item
    whose key is not above the highest key it ever evicted. For equal-size items this keeps
    a uniform random subset of everything seen (what Algorithm R keeps); with lz4 frames of
    varying size every position of the stream is still equally likely to be held. Each
    held key costs 8 bytes, counted in ``nbytes``.

    >>> store = ReservoirStore(max_bytes=10_000, encoding="int8", seed=0)
    >>> rng = np.random.default_rng(0)
    >>> store.add_many(rng.normal(size=(500, 64)), rng.integers(0, 3, size=500))
    >>> len(store), store.bytes_per_item, store.nbytes <= store.max_bytes, store.seen
    (119, 84.0, True, 500)
    >>> z, y = store.sample(8, rng)
    >>> z.shape, z.dtype, y.dtype
    ((8, 64), dtype('float32'), dtype('int64'))
    """

    name = "reservoir"
    extra_nbytes = KEY_NBYTES

    def __init__(self, max_bytes: int, encoding: str = "int8", seed: int = 0) -> None:
        super().__init__(max_bytes, encoding, seed)
        self.seen = 0
        #: Keys at or below this were evicted (or would have been): they are turned away.
        self.threshold = -1.0
        self._keys = np.zeros(0, dtype=np.float64)

    def add_many(self, z: AnyArray, y: AnyArray) -> None:
        values, labels = self._check(z, y)
        if not len(values):
            return
        table = self._items
        # lz4 sizes are only known after compressing, so every item is encoded up front
        # (an oversized one must fail before any change); arrays encode only newcomers.
        enc_all = table.encode(values) if self.encoding == "lz4" else None
        fixed = table.fixed_nbytes(values.shape[1:])
        if fixed is not None:
            table.check_fits(fixed)
        # Validation is done: from here on the state changes.
        keys = self._rng.random(len(values))
        self.seen += len(values)
        cand = np.flatnonzero(keys > self.threshold)
        if not len(cand):
            return
        if enc_all is None:
            enc, rows, labels = table.encode(values[cand]), np.arange(len(cand)), labels[cand]
        else:
            enc, rows = enc_all, cand
        new_keys = keys[cand]
        n = len(table)
        excess = table.nbytes + int(enc.sizes[rows].sum()) - self.max_bytes
        if excess <= 0:
            table.append(enc, rows, labels)
            self._keys = np.concatenate([self._keys[:n], new_keys])
            return
        all_keys = np.concatenate([self._keys[:n], new_keys])
        drop = _lowest_covering(all_keys, np.concatenate([table.sizes, enc.sizes[rows]]), excess)
        self.threshold = max(self.threshold, float(all_keys[drop].max()))
        holes = drop[drop < n]
        keep_new = np.ones(len(cand), dtype=bool)
        keep_new[drop[drop >= n] - n] = False
        rows, new_keys = rows[keep_new], new_keys[keep_new]
        self.evictions += len(holes)
        m = min(len(holes), len(rows))
        table.put(holes[:m], enc, rows[:m], labels)
        keys_held = self._keys[:n].copy()
        keys_held[holes[:m]] = new_keys[:m]
        if len(rows) > m:
            table.append(enc, rows[m:], labels)
            keys_held = np.concatenate([keys_held, new_keys[m:]])
        elif len(holes) > m:
            keys_held = keys_held[table.remove(holes[m:])]
        self._keys = keys_held

    def state_dict(self) -> State:
        state = self._base_state()
        state.update(keys=self._keys.copy(), threshold=self.threshold, seen=self.seen)
        return state

    def load_state_dict(self, state: State) -> None:
        items, rng = self._load_base_state(state)
        keys = np.asarray(state["keys"], dtype=np.float64)
        if keys.shape != (len(items),):
            raise ValueError(f"state has {len(keys)} keys for {len(items)} items")
        self._items, self._rng, self._keys = items, rng, keys
        self.evictions = int(state["evictions"])
        self.threshold = float(state["threshold"])
        self.seen = int(state["seen"])


def _lowest_covering(keys: AnyArray, sizes: IntArray, excess: int) -> IntArray:
    """Positions of the fewest lowest-key items whose sizes add up to ``excess`` or more."""
    n = len(keys)
    d = min(n, -(-excess // int(sizes.max())))  # no fewer items can cover it
    while True:
        if d == 1:  # the common case for equal sizes: one newcomer, one eviction
            idx = np.array([np.argmin(keys)])
        else:
            idx = np.argpartition(keys, d - 1)[:d] if d < n else np.arange(n)
        idx = idx[np.argsort(keys[idx], kind="stable")]
        cum = np.cumsum(sizes[idx])
        j = int(np.searchsorted(cum, excess))
        if j < len(idx):
            out: IntArray = idx[: j + 1]
            return out
        d = min(n, 2 * d)
