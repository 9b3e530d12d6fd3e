"""Task-incremental heads: what ``pnn``, ``piggyback``,
``packnet`` and ``hypernetwork`` share (task bookkeeping, per-task class masks, the byte
budget, Adam, and the plain :class:`~edgecl.protocols.Strategy` methods in terms of the
task ones).

**When a task is finalised** (the same rule for the four): training happens inside
``learn_tasks`` calls, the batch's task telling which column / mask / embedding trains.
When a batch brings a task other than the one being trained, that task is *finalised*
first (its column frozen, its mask binarised, its weights pruned and frozen, its embedding
and the hypernetwork's targets stored), then the new task starts. A batch mixing tasks is
taken task by task in order of first appearance. A finalised task is frozen: a batch of it
is refused (``ValueError`` naming ``task``, nothing changed), as the papers train each
task once, in sequence. The last task stays open (unpruned, its mask real-valued) until
another task arrives.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.linear import (
    Float64Array,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
    positive_int,
)
from edgecl.strategies.task_parts import Adam, check_tasks
from edgecl.types import FloatArray, IntArray, State

Params = dict[str, Any]
MIB = 1 << 20


class TaskHead(Configurable, ABC):
    """The base of the task-column heads. A subclass gives ``_build()`` (shared parts,
    once the latent dimension is known), ``_start(task)``, ``_finalise(task)``,
    ``_step(task, x, y_local, cols)`` (one minibatch update), ``_scores(task, x)``
    (``(N, n_classes)`` scores), ``_task_cost(rank)`` (the most bytes the ``rank``-th
    task to start may hold), ``task_nbytes()`` and ``_model_state`` / ``_load_model``."""

    name = "task_head"
    task_mode = "required"
    replay_size = 0

    def __init__(self, lr: float, epochs: int, batch_size: int, seed: int, max_bytes: int):
        self.lr = positive_float("lr", lr)
        self.epochs = positive_int("epochs", epochs)
        self.batch_size = positive_int("batch_size", batch_size)
        self.seed = positive_int("seed", seed, minimum=0)
        self.max_bytes = positive_int("max_bytes", max_bytes)
        self.dim = 0
        self.counts = np.zeros((0, 0), np.int64)  # samples taught per (task, class)
        self.done = np.zeros(0, bool)  # finalised tasks
        self.current = -1  # the task being trained
        self.order: list[int] = []  # tasks in the order they started (a task's rank)
        self.calls = 0
        self.opt = Adam()

    @property
    def n_tasks(self) -> int:
        return len(self.counts)

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[1])

    def taught(self, task: int) -> IntArray:
        """The classes ``task`` has been taught (its class mask, as indices)."""
        return np.flatnonzero(self.counts[task] > 0)

    # -- growth and budget ---------------------------------------------------------------
    def add_classes(self, n_classes: int) -> None:
        if n_classes > self.n_classes:
            self.counts = grow_rows(self.counts.T, n_classes).T.copy()
            if self.dim:
                self._grow_classes(n_classes)

    def task_budget_problem(self, n_tasks: int) -> str | None:
        started = len(self.order)
        if n_tasks <= self.n_tasks or not self.dim:
            return None  # a task costs nothing until the latent dimension is known
        held = sum(self.task_nbytes().values()) + self.shared_nbytes()
        need = held + sum(self._task_cost(rank) for rank in range(started, n_tasks))
        if need <= self.max_bytes:
            return None
        return (
            f"{self.name} cannot take {n_tasks} tasks: they would hold about {need} bytes, "
            f"over its max_bytes of {self.max_bytes}; raise max_bytes or use fewer tasks"
        )

    def add_tasks(self, n_tasks: int) -> None:
        problem = self.task_budget_problem(n_tasks)
        if problem:
            raise ValueError(problem)
        if n_tasks > self.n_tasks:
            self.counts = grow_rows(self.counts, n_tasks)
            self.done = grow_rows(self.done, n_tasks)

    def shared_nbytes(self) -> int:
        """Bytes held by no task in particular (shared weights); 0 unless overridden."""
        return 0

    # -- learning ------------------------------------------------------------------------
    def learn_tasks(self, z: FloatArray, y: IntArray, t: IntArray) -> None:
        x, labels = check_batch(z, y, self.n_classes, self.dim)
        tasks = check_tasks(t, len(x), self.n_tasks)
        if not len(x):
            return
        _, first = np.unique(tasks, return_index=True)
        order = [int(tasks[i]) for i in sorted(first)]
        for i, task in enumerate(order):
            why = self.closed_task_problem(task)
            if why or (i and task == self.current):
                raise ValueError(why or self._closed(task))
            problem = self._problem(task, labels[tasks == task])
            if problem:
                raise ValueError(problem)
        if not self.dim:
            self.dim = x.shape[1]
            self._build()
        for task in order:
            if task != self.current:
                if self.current >= 0:
                    self._finalise(self.current)
                    self.done[self.current] = True
                self.opt.reset()
                self.order.append(task)
                self.current = task
                self._start(task)
            rows = tasks == task
            np.add.at(self.counts[task], labels[rows], 1)
            self._fit(task, x[rows], labels[rows])
        self.calls += 1

    def _fit(self, task: int, x: FloatArray, labels: IntArray) -> None:
        """``epochs`` passes of minibatch updates over the batch, in a seeded order."""
        cols = self.taught(task)
        local = np.searchsorted(cols, labels)
        rng = np.random.default_rng([self.seed, self.calls])
        for _ in range(self.epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), self.batch_size):
                idx = order[start : start + self.batch_size]
                self._step(task, x[idx], local[idx], cols)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        if not self.n_tasks:
            check_batch(z, y, self.n_classes, self.dim)  # a bad batch adds no task either
            self.add_tasks(1)
        self.learn_tasks(z, y, np.zeros(len(np.asarray(y)), np.int64))

    # -- prediction ----------------------------------------------------------------------
    def logits_tasks(self, z: FloatArray, t: IntArray | None) -> Float64Array:
        """Scores ``(N, n_classes)``, ``-inf`` outside each row's task's classes."""
        x = check_latents(z, self.dim)
        if t is None:
            raise ValueError(f"{self.name} needs the task of each sample (field `task`)")
        tasks = check_tasks(t, len(x), self.n_tasks)
        out = np.full((len(x), self.n_classes), -np.inf)
        for task in np.unique(tasks):
            rows = tasks == task
            cols = self.taught(int(task))
            if len(cols):
                out[rows] = masked_logits(self._scores(int(task), x[rows]), self.counts[task] > 0)
        return out

    def predict_proba_tasks(self, z: FloatArray, t: IntArray | None) -> FloatArray:
        logits = self.logits_tasks(z, t)
        out = np.full(logits.shape, 1.0 / max(self.n_classes, 1), np.float32)
        some = np.isfinite(logits).any(axis=1)  # rows of a task taught nothing: uniform
        if some.any():
            out[some] = masked_softmax(logits[some], np.ones(self.n_classes, bool))
        return out

    def _default_tasks(self, z: FloatArray) -> IntArray | None:
        if self.n_tasks > 1:
            raise ValueError(
                f"{self.name} holds {self.n_tasks} tasks: give the task of each sample "
                "(field `task`)"
            )
        return np.zeros(len(z), np.int64)

    def logits_many(self, z: FloatArray) -> Float64Array:
        if not self.n_tasks:
            return np.full((len(check_latents(z, self.dim)), self.n_classes), -np.inf)
        return self.logits_tasks(z, self._default_tasks(z))

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        if not self.n_tasks:
            n = len(check_latents(z, self.dim))
            return np.full((n, self.n_classes), 1.0 / max(self.n_classes, 1), np.float32)
        return self.predict_proba_tasks(z, self._default_tasks(z))

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The energy of the logits (:func:`~edgecl.strategies.base.energy`)."""
        return energy(self.logits_many(z))

    def snapshot(self) -> Any:
        return copy.deepcopy(self)

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "dim": self.dim,
            "counts": self.counts.copy(),
            "done": self.done.copy(),
            "current": self.current,
            "order": list(self.order),
            "calls": self.calls,
            "adam": self.opt.state(),
            "model": copy.deepcopy(self._model_state()) if self.dim else {},
        }

    def load_state_dict(self, state: State) -> None:
        self.dim = int(state["dim"])
        self.counts = np.array(state["counts"], np.int64)
        self.done = np.array(state["done"], bool)
        self.current, self.calls = int(state["current"]), int(state["calls"])
        self.order = [int(t) for t in state["order"]]
        self.opt.load(state["adam"])
        if self.dim:
            self._load_model(state["model"])

    # -- what a subclass gives -------------------------------------------------------------
    def closed_task_problem(self, task: int) -> str | None:
        """Why ``task`` can learn no more (finalised when a later task began), or None:
        asked before a sample is accepted, so that it is refused, not logged and dropped."""
        return self._closed(task) if task < len(self.done) and self.done[task] else None

    @staticmethod
    def _closed(task: int) -> str:
        return (
            f"task {task} was finalised when a later task began; its parameters are frozen "
            "and it cannot learn more"
        )

    def _problem(self, task: int, labels: IntArray) -> str | None:
        """Why ``task`` cannot learn ``labels`` (checked before anything changes), or None."""
        return None

    @abstractmethod
    def _build(self) -> None: ...

    @abstractmethod
    def _grow_classes(self, n_classes: int) -> None: ...

    @abstractmethod
    def _start(self, task: int) -> None: ...

    @abstractmethod
    def _finalise(self, task: int) -> None: ...

    @abstractmethod
    def _step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None: ...

    @abstractmethod
    def _scores(self, task: int, x: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _task_cost(self, rank: int) -> int: ...

    @abstractmethod
    def task_nbytes(self) -> dict[int, int]: ...

    @abstractmethod
    def _model_state(self) -> State: ...

    @abstractmethod
    def _load_model(self, state: State) -> None: ...
