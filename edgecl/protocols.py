"""The three roles a learner is built from, and the optional capabilities a strategy may
have (:class:`Retrainable`, :class:`Logits`, :class:`Novelty`, :class:`Snapshot`,
:class:`MemoryReplay`, :class:`ReadsRows`).
Interfaces only, no logic."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgecl.types import Float64Array, FloatArray, IntArray, State


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
class Logits(Protocol):
    """A strategy whose probabilities are a softmax of scores it can give: ``logits_many``
    returns them ``(N, n_classes)``, ``-inf`` for classes never trained. Temperature
    scaling divides them; from probabilities alone a saturated 1.0 cannot be undone."""

    def logits_many(self, z: FloatArray) -> Float64Array: ...


@runtime_checkable
class Novelty(Protocol):
    """A strategy that scores how unlike every taught class each latent is: ``(N,)``,
    higher = more novel (a distance or an energy, in the head's own units)."""

    def novelty_many(self, z: FloatArray) -> Float64Array: ...


@runtime_checkable
class Snapshot(Protocol):
    """A strategy that can hand out a frozen copy of itself: the same methods (its
    :class:`Logits` and :class:`Novelty` too), answering as the head does now whatever
    it learns later, so predictions may read it without waiting for learning."""

    def snapshot(self) -> Strategy: ...


@runtime_checkable
class MemoryReplay(Protocol):
    """A strategy that takes its replay apart from the new batch (MIR, A-GEM, GEM).

    For such a strategy the :class:`~edgecl.Learner` calls ``learn_with_memory(z, y, zm,
    ym)`` instead of ``learn_many``: ``(z, y)`` is the new batch, ``(zm, ym)`` a draw of
    ``memory_size`` items from its replay store (with replacement as the store samples,
    decoded to latents; empty, ``(0, *latent_shape)``, without a store, with an empty one
    or with ``memory_size == 0``). The strategy decides what the memory is for (candidates
    to select from, constraints, a reference gradient); ``replay_size`` stays 0, so
    nothing is concatenated. The learner stays the one owner of the store: the strategy
    only reads the draw and never adds to or removes from the store.

    The draw uses the learner's generator, whose state is part of the learner's, so
    learning the same batches again from a checkpoint (the daemon replaying its write-ahead
    log after a crash) draws the same items and reaches the same state. ``learn_many(z, y)``
    must still work and means an empty memory (conformance checks, re-embedding).
    """

    memory_size: int

    def learn_with_memory(self, z: FloatArray, y: IntArray, zm: FloatArray, ym: IntArray) -> None:
        """Learn the new batch ``(z, y)`` with the memory draw ``(zm, ym)`` beside it."""
        ...


class Rows(Protocol):
    """A batch of latents read a few rows at a time (:class:`~edgecl.replay.drawn.LatentRows`):
    ``take(index)`` gives rows ``(len(index), *item_shape)`` as float32."""

    @property
    def item_shape(self) -> tuple[int, ...]: ...

    def __len__(self) -> int: ...

    def take(self, index: IntArray) -> FloatArray: ...


@runtime_checkable
class ReadsRows(Protocol):
    """A strategy that reads its batch a minibatch at a time (AR1), so that its replay need
    never be decoded whole.

    For such a strategy (not task-aware) the :class:`~edgecl.Learner` calls ``learn_rows
    (rows, y)`` instead of ``learn_many``: ``rows`` are the new latents followed by the
    ``replay_size`` items drawn from the store, those still as the store holds them (int8
    codes: a quarter of float32's bytes) and decoded when read; ``y`` the class index of
    every row. It must learn exactly what ``learn_many(rows.take(all rows), y)`` would:
    the learner draws the same items either way.
    """

    replay_size: int

    def learn_rows(self, rows: Rows, y: IntArray) -> None: ...


@runtime_checkable
class TaskAware(Protocol):
    """A strategy that learns and predicts per task (task-incremental learning).

    Tasks are ints 0..n_tasks-1: the Learner maps task names to them as it maps labels to
    class indices. Class indices stay global (one per label, shared by all tasks); a task's
    classes are those it has been taught. ``task_mode`` says what a sample without a task
    means: "required" (the daemon answers 422 naming the field `task`), or "inferred"
    (prediction infers the task, e.g. SupSup's entropy criterion; learning still needs one).
    """

    task_mode: str  # "required" | "inferred"

    def add_tasks(self, n_tasks: int) -> None:
        """Grow to ``n_tasks`` (never shrinks)."""
        ...

    def task_budget_problem(self, n_tasks: int) -> str | None:
        """A sentence if growing to ``n_tasks`` would pass the strategy's byte budget
        (checked before anything is written), else None."""
        ...

    def learn_tasks(self, z: FloatArray, y: IntArray, t: IntArray) -> None: ...

    def predict_proba_tasks(self, z: FloatArray, t: IntArray | None) -> FloatArray:
        """``(N, n_classes)`` float32 rows summing to 1; with ``t``, only classes task
        ``t[i]`` was taught get mass; ``t`` None: infer the task (task_mode "inferred"),
        else ``ValueError`` naming `task`."""
        ...

    def task_nbytes(self) -> dict[int, int]:
        """Bytes held per task (masks, columns, embeddings)."""
        ...
