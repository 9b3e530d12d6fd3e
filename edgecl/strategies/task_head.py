"""What the task-aware heads of ``multi_head``, ``hat`` and ``supsup`` share: tasks and
classes taught per task, the plain-Strategy side of :class:`~edgecl.protocols.TaskAware`,
the byte budget, state and frozen copies. A subclass keeps its parameters and says how
one task learns, scores and (optionally) infers tasks.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy
from edgecl.strategies.linear import (
    SGD,
    Float64Array,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.types import FloatArray, IntArray, State

#: Default byte budget of a task-aware head: large, so only a deliberate setting bites.
MAX_BYTES = 64 << 20


def check_tasks(t: Any, n: int, n_tasks: int) -> IntArray:
    """Task ints ``(n,)`` in ``0..n_tasks-1``; ``ValueError`` naming `task` otherwise."""
    tasks = np.asarray(t)
    if tasks.shape != (n,) or (n and tasks.dtype.kind not in "iu"):
        raise ValueError(f"task must be one int per sample, got shape {tasks.shape}")
    if n and (tasks.min() < 0 or tasks.max() >= n_tasks):
        raise ValueError(f"task {int(tasks.max())} is out of range for {n_tasks} tasks")
    return tasks.astype(np.int64)


class TaskHead(Configurable):
    """Per task, the classes it was taught (``counts[t, c]`` samples); the subclass's
    ``fit_task``, ``task_logits`` and ``params_nbytes`` do the rest."""

    name = "task_head"
    task_mode = "required"

    def __init__(self, lr: float, epochs: int, batch_size: int, seed: int, max_bytes: int) -> None:
        self.sgd = SGD(lr, epochs, batch_size, seed=seed)
        self.max_bytes = positive_int("max_bytes", max_bytes)
        self.replay_size = 0
        self.counts = np.zeros((0, 0), dtype=np.int64)  # (tasks, classes)
        self.dim = 0
        self.calls = 0

    # -- growth -----------------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[1])

    def add_classes(self, n_classes: int) -> None:
        if n_classes > self.n_classes:
            grown = np.zeros((self.n_tasks, n_classes), dtype=np.int64)
            grown[:, : self.n_classes] = self.counts
            self.counts = grown
            self.grow()

    def add_tasks(self, n_tasks: int) -> None:
        self.counts = grow_rows(self.counts, n_tasks)
        self.grow()

    def grow(self) -> None:
        """Make room for the current tasks and classes (once ``dim`` is known)."""

    def task_budget_problem(self, n_tasks: int) -> str | None:
        need = self.nbytes_for(max(n_tasks, self.n_tasks))
        if need <= self.max_bytes:
            return None
        return (
            f"a new task would not fit: strategy {self.name!r} would hold {need} bytes for "
            f"{n_tasks} tasks, over its budget max_bytes={self.max_bytes}"
        )

    def nbytes_for(self, n_tasks: int) -> int:
        """Bytes the head would hold with ``n_tasks`` tasks (shared parameters included)."""
        return sum(self.task_nbytes_for(n_tasks).values()) + self.shared_nbytes()

    def shared_nbytes(self) -> int:
        return 0

    def task_nbytes_for(self, n_tasks: int) -> dict[int, int]:
        raise NotImplementedError

    def task_nbytes(self) -> dict[int, int]:
        return self.task_nbytes_for(self.n_tasks)

    # -- learning ---------------------------------------------------------------------
    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        """Everything as task 0 (added if needed)."""
        x, _ = check_batch(z, y, self.n_classes, self.dim)
        self.add_tasks(max(self.n_tasks, 1))
        self.learn_tasks(x, y, np.zeros(len(x), dtype=np.int64))

    def learn_tasks(self, z: FloatArray, y: IntArray, t: IntArray) -> None:
        x, labels = check_batch(z, y, self.n_classes, self.dim)
        tasks = check_tasks(t, len(x), self.n_tasks)
        if not len(x):
            return
        if not self.dim:
            self.dim = int(x.shape[1])
            self.grow()
        np.add.at(self.counts, (tasks, labels), 1)
        for task in np.unique(tasks).tolist():
            rows = tasks == task
            cols = np.flatnonzero(self.counts[task] > 0)
            self.fit_task(task, x[rows], np.searchsorted(cols, labels[rows]), cols)
        self.calls += 1

    def fit_task(self, task: int, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        """Train task ``task`` on rows ``x`` whose classes index ``cols``."""
        raise NotImplementedError

    # -- prediction -------------------------------------------------------------------
    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        """Scores ``(N, n_classes)`` of every class by task ``task``'s parameters."""
        raise NotImplementedError

    def infer_tasks(self, z: FloatArray) -> IntArray:
        """The task of each row when none is given (task_mode "inferred")."""
        raise ValueError(f"task is required: strategy {self.name!r} cannot infer it")

    def tasks_for(self, x: FloatArray, t: IntArray | None) -> IntArray:
        if t is not None:
            return check_tasks(t, len(x), self.n_tasks)
        if self.n_tasks <= 1:
            return np.zeros(len(x), dtype=np.int64)
        if self.task_mode != "inferred":
            raise ValueError(
                f"task is required: strategy {self.name!r} holds {self.n_tasks} tasks "
                "and predicts only within a given one"
            )
        return self.infer_tasks(x)

    def predict_proba_tasks(self, z: FloatArray, t: IntArray | None) -> FloatArray:
        x = check_latents(z, self.dim)
        out = np.full((len(x), self.n_classes), 1.0 / max(self.n_classes, 1), np.float32)
        if not self.dim or not self.n_tasks or not len(x):
            return out
        tasks = self.tasks_for(x, t)
        for task in np.unique(tasks).tolist():
            rows = tasks == task
            out[rows] = masked_softmax(self.task_logits(task, x[rows]), self.counts[task] > 0)
        return out

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return self.predict_proba_tasks(z, None)

    def snapshot(self) -> Any:
        """A deep copy: these heads are small, and learning changes arrays in place."""
        return copy.deepcopy(self)

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "counts": self.counts.copy(),
            "dim": self.dim,
            "calls": self.calls,
            "params": self.params_state(),
        }

    def load_state_dict(self, state: State) -> None:
        counts = np.array(state["counts"], dtype=np.int64)
        self.counts = counts if counts.ndim == 2 else np.zeros((0, 0), dtype=np.int64)
        self.dim, self.calls = int(state["dim"]), int(state["calls"])
        self.load_params(state["params"])

    def params_state(self) -> State:
        raise NotImplementedError

    def load_params(self, state: State) -> None:
        raise NotImplementedError


def as_f32(state: Any) -> FloatArray:
    return np.array(state, dtype=np.float32)


class EnergyNovelty:
    """Novelty for a :class:`TaskHead` whose logits are meaningful beyond its data."""

    dim: int
    n_tasks: int
    counts: IntArray

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        raise NotImplementedError

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
