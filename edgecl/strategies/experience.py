"""Experience boundaries in a stream that has none, the same for every strategy that
consolidates (``cumulative``, ``ensemble``, ``lwf``, ``ewc``, ``si``, ``progress_compress``).

**An experience ends when a batch brings a class never trained before** (while some class
was trained already), **or once** ``consolidate_every`` **samples were learned since the
last boundary** (0, the default: never on a count). The strategy consolidates (takes its
Fisher, freezes its teacher, adds a head, ...) *before* learning that batch, so what it
consolidates is what it learned from the experience that just ended. Replayed samples
count towards ``consolidate_every``; they never bring a new class.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecl.strategies.head import SoftmaxHead
from edgecl.strategies.linear import positive_int
from edgecl.strategies.net import Params, out_name
from edgecl.types import FloatArray, IntArray, State


class ExperienceHead(SoftmaxHead):
    """A :class:`~edgecl.strategies.head.SoftmaxHead` that calls :meth:`consolidate` at each
    experience boundary (see the module's docstring) and counts ``experiences``."""

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        replay_size: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        super().__init__(lr, epochs, batch_size, weight_decay, seed, replay_size, hidden)
        self.consolidate_every = positive_int("consolidate_every", consolidate_every, minimum=0)
        self.since = 0  # samples learned since the last boundary
        self.experiences = 0  # boundaries passed

    def boundary(self, labels: IntArray) -> bool:
        """Whether the batch of ``labels`` starts a new experience."""
        trained = self.counts > 0
        if not trained.any():
            return False
        new_class = not trained[labels].all()
        due = bool(self.consolidate_every) and self.since >= self.consolidate_every
        return new_class or due

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = self.check(z, y)
        if not len(x):
            return
        if self.boundary(labels):
            self.consolidate()
            self.experiences += 1
            self.since = 0
        self.fit(x, labels)
        self.since += len(x)

    def consolidate(self) -> None:
        """End the current experience (the subclass's mechanism)."""

    def extra_state(self) -> State | None:
        return {"since": self.since, "experiences": self.experiences, **self.more_state()}

    def load_extra(self, state: State | None) -> None:
        state = state or {}
        self.since = int(state.get("since", 0))
        self.experiences = int(state.get("experiences", 0))
        self.load_more(state)

    def more_state(self) -> State:
        """A subclass's own state (arrays copied)."""
        return {}

    def load_more(self, state: State) -> None:
        """Load :meth:`more_state`."""


def params_like(params: Params) -> Params:
    """Zeros shaped as ``params``."""
    return {k: np.zeros_like(v) for k, v in params.items()}


def grow_like(stored: Params, params: Params) -> Params:
    """``stored`` (per-parameter arrays) with zero output rows added up to ``params``' rows."""
    out = {}
    for k, v in params.items():
        s = stored.get(k)
        if s is None or s.shape[1:] != v.shape[1:]:
            out[k] = np.zeros_like(v)
        else:
            out[k] = np.concatenate([s, np.zeros((len(v) - len(s), *v.shape[1:]), v.dtype)])
    return out


def rows(stored: Params, work: Params, cols: IntArray) -> Params:
    """``stored`` (full per-parameter arrays) restricted as the working parameters are:
    the output layer's rows ``cols`` only."""
    out = out_name(work)
    return {k: (v[cols] if k in out else v) for k, v in stored.items() if k in work}


def add_rows(stored: Params, values: Params, cols: IntArray) -> None:
    """``stored += values`` where ``values`` are shaped as working parameters (output
    rows ``cols`` only)."""
    out = out_name(stored)
    for k, v in values.items():
        if k in out:
            stored[k][cols] += v
        else:
            stored[k] += v


def load_params(state: State) -> Params:
    return {str(k): np.array(v, dtype=np.float32) for k, v in state.items()}


def copy_params(params: Params) -> Params:
    return {k: v.copy() for k, v in params.items()}


def pull(coef: Params, anchor: Params, lr: float) -> Callable[[Params], Params]:
    """The penalty gradient ``coef (θ - anchor)`` of a quadratic anchor (EWC's ``λ F``,
    SI's ``2 c Ω``), with ``coef`` capped at ``1 / lr``: plain SGD on a quadratic diverges
    once ``lr · coef > 2``, and at the cap a step lands on the anchor instead."""
    capped = {k: np.minimum(v, 1.0 / lr) for k, v in coef.items()}
    return lambda p: {k: capped[k] * (p[k] - anchor[k]) for k in capped}
