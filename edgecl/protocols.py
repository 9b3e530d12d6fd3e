"""The three roles a learner is built from, and the optional capabilities a strategy may
have (:class:`Retrainable`, :class:`Freezable`). Interfaces only, no logic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgecl.types import FloatArray, IntArray, State


@runtime_checkable
class Backbone(Protocol):
    """Frozen feature extractor: inputs ``(N, ...)`` to latents ``(N, *latent_shape)``."""

    latent_shape: tuple[int, ...]

    def embed(self, x: np.ndarray[Any, Any]) -> FloatArray: ...

    def spec(self) -> State:
        """Plain data from which :func:`edgecl.backbones.from_spec` rebuilds it."""
        ...


@runtime_checkable
class ReplayStore(Protocol):
    """What to remember, within ``max_bytes``. Its policy decides what is kept.

    A store may say ``holds = "inputs"``: it then keeps raw inputs (uint8 images, as the
    backbone's ``prepare`` gives them) instead of latents, and the learner embeds what it
    replays through the current backbone (see :func:`edgecl.replay.holds_inputs`).
    """

    name: str
    max_bytes: int

    def options(self) -> dict[str, Any]:
        """The arguments it was built with, so ``edgecl.replay.create`` can rebuild it."""
        ...

    def add(self, z: FloatArray, y: int) -> None: ...

    def add_many(self, z: FloatArray, y: IntArray) -> None: ...

    def sample(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, IntArray]: ...

    def items(self) -> tuple[FloatArray, IntArray]:
        """Every held item, decoded (used by retraining strategies)."""
        ...

    def __len__(self) -> int: ...

    @property
    def nbytes(self) -> int: ...

    def state_dict(self) -> State: ...

    def load_state_dict(self, state: State) -> None: ...


@runtime_checkable
class Strategy(Protocol):
    """How the head is updated. Class indices are 0..n_classes-1, grown by ``add_classes``.

    ``replay_size`` is how many stored latents the learner mixes into each ``learn_many``
    call (0: the strategy does not replay).
    """

    name: str
    replay_size: int

    def learn_many(self, z: FloatArray, y: IntArray) -> None: ...

    def predict_proba_many(self, z: FloatArray) -> FloatArray: ...

    def add_classes(self, n_classes: int) -> None: ...

    def options(self) -> dict[str, Any]:
        """The hyper-parameters it was built with (for ``/stats`` and re-creation)."""
        ...

    def state_dict(self) -> State: ...

    def load_state_dict(self, state: State) -> None: ...


@runtime_checkable
class Retrainable(Protocol):
    """A strategy that can rebuild its head from the replay memory (e.g. GDumb).

    ``retrain`` trains a fresh head on ``(z, y)`` without touching the live one and returns
    its state (for :meth:`edgecl.Learner.swap_head`); ``on_progress(fraction)`` returns
    False once the caller gave up, and the strategy should then return promptly.
    """

    def retrain(
        self, z: FloatArray, y: IntArray, on_progress: Callable[[float], bool]
    ) -> State: ...


@runtime_checkable
class Freezable(Protocol):
    """A strategy that can hand out a frozen copy of its head: a function of latents that
    later learning does not change (predictions read it without waiting for learning)."""

    def predictor(self) -> Callable[[FloatArray], FloatArray]: ...
