"""The latent replay memory of AR1* (Pellegrini et al. 2020): each batch replaces a share."""

from __future__ import annotations

from typing import cast

import numpy as np

from edgecl.replay.base import EncodedStore
from edgecl.types import AnyArray, State


class LatentReplayStore(EncodedStore):
    """Pellegrini et al.'s memory update: after batch ``i``, ``h = n / i`` of its items replace
    ``h`` random held items (``n``: the items the budget holds).

    Each ``add_many`` call is one batch. ``h`` random items of it go in: into free room
    while the memory is not full, then in place of random held items. So the memory
    first fills up, then every batch keeps about an equal share, ``n / i`` after ``i``
    batches, however many items it brought (the paper's batches are of similar size). A
    fractional ``n / i`` is rounded up with probability equal to its fractional part, so
    the share is right on average; with batches of one sample this is reservoir sampling.
    The reference code (Avalanche's ``AR1``) sets the memory to the first batch's share and
    never grows it; here a first batch smaller than the memory leaves room for the next.

    >>> store = LatentReplayStore(max_bytes=10 * (16 + 4 + 8), encoding="int8", seed=0)
    >>> for batch in range(4):  # 10 items fit
    ...     store.add_many(np.full((10, 16), float(batch)), np.full(10, batch))
    >>> len(store), store.batches, sorted(set(store.items()[1].tolist()))
    (10, 4, [0, 1, 2, 3])
    """

    name = "latent_replay"

    def __init__(self, max_bytes: int, encoding: str = "int8", seed: int = 0) -> None:
        super().__init__(max_bytes, encoding, seed)
        if self.encoding == "lz4":
            raise ValueError("encoding lz4 holds raw images; latent_replay holds latents")
        self.batches = 0

    def add_many(self, z: AnyArray, y: AnyArray) -> None:
        values, labels = self._check(z, y)
        if not len(values):
            return
        table = self._items
        fixed = cast(int, table.fixed_nbytes(values.shape[1:]))  # not None: lz4 is refused
        table.check_fits(fixed)
        # Validation is done: from here on the state changes.
        self.batches += 1
        capacity = self.max_bytes // fixed
        share = capacity / self.batches
        h = int(share) + int(self._rng.random() < share - int(share))
        h = min(h, len(values))
        rows = np.sort(self._rng.choice(len(values), size=h, replace=False))
        free = min(capacity - len(table), h)
        if free:
            enc = table.encode(values, rows[:free])
            table.append(enc, np.arange(free), labels[rows[:free]])
        rest = rows[free:]
        if len(rest):
            slots = np.sort(self._rng.choice(len(table), size=len(rest), replace=False))
            enc = table.encode(values, rest)
            table.put(slots, enc, np.arange(len(rest)), labels[rest])
            self.evictions += len(rest)

    def state_dict(self) -> State:
        state = self._base_state()
        state["batches"] = self.batches
        return state

    def load_state_dict(self, state: State) -> None:
        self._items, self._rng = self._load_base_state(state)
        self.evictions = int(state["evictions"])
        self.batches = int(state["batches"])
