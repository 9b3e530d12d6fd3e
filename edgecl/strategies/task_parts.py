"""Pieces of the task-aware heads (:mod:`edgecl.strategies.task_head`): the check of task
indices, Adam over named arrays whose set changes from task to task, and the two ways a
head gives logits and novelty."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.linear import Float64Array, check_latents, grow_rows
from edgecl.types import FloatArray, IntArray, State

Params = dict[str, Any]


def check_tasks(t: object, n: int, n_tasks: int) -> IntArray:
    """Task indices ``(n,)`` int64, each in ``0..n_tasks-1``, else ``ValueError`` naming
    ``task``.

    >>> check_tasks([0, 1], 2, 2).tolist()
    [0, 1]
    >>> check_tasks([2], 1, 2)
    Traceback (most recent call last):
    ...
    ValueError: task 2 is out of range for 2 tasks; call add_tasks first
    """
    tasks = np.asarray(t)
    if tasks.shape != (n,) or (n and tasks.dtype.kind not in "iu"):
        raise ValueError(f"task must be {n} integer task indices, got shape {tasks.shape}")
    if n and (tasks.min() < 0 or tasks.max() >= n_tasks):
        bad = int(tasks.max() if tasks.max() >= n_tasks else tasks.min())
        raise ValueError(f"task {bad} is out of range for {n_tasks} tasks; call add_tasks first")
    return tasks.astype(np.int64)


class Adam:
    """Adam (Kingma & Ba 2015, PyTorch's defaults) over named arrays, updated in place;
    its moments live as long as the parameters they follow (``reset`` at a new task)."""

    def __init__(self) -> None:
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def reset(self) -> None:
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params: Params, grads: Params, lr: dict[str, float]) -> None:
        self.t += 1
        b1, b2 = 0.9, 0.999
        for name, g in grads.items():
            m = self.m.setdefault(name, np.zeros_like(g, dtype=np.float32))
            v = self.v.setdefault(name, np.zeros_like(g, dtype=np.float32))
            if m.shape != g.shape:  # output rows of classes added since the last step
                m = self.m[name] = grow_rows(m, len(g))
                v = self.v[name] = grow_rows(v, len(g))
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            update = lr[name] * (m / (1 - b1**self.t)) / (np.sqrt(v / (1 - b2**self.t)) + 1e-8)
            params[name] -= update.astype(np.float32)

    def state(self) -> State:
        copies = {k: {n: a.copy() for n, a in d.items()} for k, d in (("m", self.m), ("v", self.v))}
        return {**copies, "t": self.t}

    def load(self, state: State) -> None:
        self.m = {str(k): np.array(a, np.float32) for k, a in state["m"].items()}
        self.v = {str(k): np.array(a, np.float32) for k, a in state["v"].items()}
        self.t = int(state["t"])


def as_f32(state: Any) -> FloatArray:
    return np.array(state, dtype=np.float32)


class EnergyNovelty:
    """Novelty for a task head whose logits are meaningful beyond its data."""

    dim: int
    n_tasks: int
    counts: IntArray

    if TYPE_CHECKING:  # the head's own (TaskHead's subclass)

        def task_logits(self, task: int, x: FloatArray) -> FloatArray: ...

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The lowest energy over the tasks (each over its own classes): how unlike every
        taught class, whichever task it belongs to; ``+inf`` before anything is learned."""
        x = check_latents(z, self.dim)
        best = np.full(len(x), np.inf)
        if not self.dim:
            return best
        for task in range(self.n_tasks):
            taught = self.counts[task] > 0
            if taught.any():
                s = np.where(taught, self.task_logits(task, x).astype(np.float64), -np.inf)
                best = np.minimum(best, energy(s))
        return best


class TaskLogits(EnergyNovelty):
    """``logits_many`` (``-inf`` outside a task's classes) for a task head that predicts
    without a task only while it holds one, and novelty as the energy of those logits."""

    n_classes: int
    tasks_for: Callable[[FloatArray, IntArray | None], IntArray]  # the head's

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.dim)
        out = np.full((len(x), self.n_classes), -np.inf)
        if not self.n_tasks:
            return out
        tasks = self.tasks_for(x, None)
        for task in np.unique(tasks).tolist():
            rows = tasks == task
            if self.counts[task].any():
                s = self.task_logits(task, x[rows])
                out[rows] = masked_logits(s, self.counts[task] > 0)
        return out

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The energy of the logits (:func:`~edgecl.strategies.base.energy`)."""
        return energy(self.logits_many(z))
