"""The base of the task-aware heads (``multi_head``, ``hat``, ``supsup``, ``pnn``,
``piggyback``, ``packnet``, ``hypernetwork``): tasks and classes taught per task, the
plain-Strategy side of :class:`~edgecl.protocols.TaskAware`, the byte budget, state and
frozen copies. A subclass keeps its parameters and says how one task learns and scores.

**When a task is finalised** (heads with ``finalises = True``: the column and mask
heads): when a batch brings a task other than the one being trained, that task is
*finalised* first (its column frozen, its mask binarised, its weights pruned, ...), then
the new task starts. A batch mixing tasks is taken task by task in order of first
appearance. A finalised task is frozen: a batch of it is refused (``ValueError`` naming
``task``, nothing changed), as the papers train each task once, in sequence. The last
task stays open until another task arrives. Heads without finalisation take a mixed
batch in task order, and a task may come back at any time.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.linear import (
    SGD,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.strategies.task_parts import Adam, check_tasks
from edgecl.types import FloatArray, IntArray, State

#: Default byte budget of a task-aware head: large, so only a deliberate setting bites.
MAX_BYTES = 64 << 20


class TaskHead(Configurable, ABC):
    """Per task, the classes it was taught (``counts[t, c]`` samples). A subclass gives
    ``grow`` (room for the tasks and classes known, once ``dim`` is), ``fit_task`` (or
    ``step``, one minibatch update), ``task_logits``, ``task_cost``, ``params_state`` /
    ``load_params``, and with finalisation ``start`` / ``finalise``."""

    name = "task_head"
    task_mode = "required"
    replay_size = 0
    finalises = False  # a batch of a new task finalises the one being trained
    state_key = "params"  # where the state holds the subclass's params_state()

    def __init__(self, lr: float, epochs: int, batch_size: int, seed: int, max_bytes: int) -> None:
        self.sgd = SGD(lr, epochs, batch_size, seed=seed)
        self.max_bytes = positive_int("max_bytes", max_bytes)
        self.counts = np.zeros((0, 0), dtype=np.int64)  # (tasks, classes)
        self.dim = 0
        self.calls = 0
        self.done = np.zeros(0, bool)  # finalised tasks
        self.current = -1  # the task being trained
        self.order: list[int] = []  # tasks in the order they started (a task's rank)
        self.opt = Adam()

    # -- growth and budget --------------------------------------------------------------
    @property
    def n_tasks(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.counts.shape[1])

    def taught(self, task: int) -> IntArray:
        """The classes ``task`` has been taught (its class mask, as indices)."""
        return np.flatnonzero(self.counts[task] > 0)

    def add_classes(self, n_classes: int) -> None:
        if n_classes > self.n_classes:
            self.counts = grow_rows(self.counts.T, n_classes).T.copy()
            self.grow()

    def add_tasks(self, n_tasks: int) -> None:
        if n_tasks <= self.n_tasks:
            return
        problem = self.task_budget_problem(n_tasks) if self.finalises else None
        if problem:
            raise ValueError(problem)
        self.counts = grow_rows(self.counts, n_tasks)
        self.done = grow_rows(self.done, n_tasks)
        self.grow()

    def grow(self) -> None:
        """Make room for the current tasks and classes (once ``dim`` is known)."""

    def task_budget_problem(self, n_tasks: int) -> str | None:
        # Heads that finalise hold nothing for a task before it starts, nor before `dim`.
        if self.finalises and (n_tasks <= self.n_tasks or not self.dim):
            return None
        need = self.nbytes_for(n_tasks)
        if need <= self.max_bytes:
            return None
        return (
            f"a new task would not fit: strategy {self.name!r} would hold {need} bytes for "
            f"{n_tasks} tasks, over its budget max_bytes={self.max_bytes}"
        )

    def nbytes_for(self, n_tasks: int) -> int:
        """Bytes the head would hold with ``n_tasks`` tasks (shared parameters included)."""
        held = len(self.order) if self.finalises else self.n_tasks
        need = sum(self.task_nbytes().values()) + self.shared_nbytes()
        return need + sum(self.task_cost(rank) for rank in range(held, n_tasks))

    def shared_nbytes(self) -> int:
        """Bytes held by no task in particular (shared weights); 0 unless overridden."""
        return 0

    @abstractmethod
    def task_cost(self, rank: int) -> int:
        """The most bytes the ``rank``-th task may hold."""
        ...

    def task_nbytes(self) -> dict[int, int]:
        return {t: self.task_cost(t) for t in range(self.n_tasks)}

    # -- learning -----------------------------------------------------------------------
    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        """Everything as task 0 (added if needed)."""
        x, _ = check_batch(z, y, self.n_classes, self.dim)  # a bad batch adds no task
        self.add_tasks(max(self.n_tasks, 1))
        self.learn_tasks(x, y, np.zeros(len(x), dtype=np.int64))

    def learn_tasks(self, z: FloatArray, y: IntArray, t: IntArray) -> None:
        x, labels = check_batch(z, y, self.n_classes, self.dim)
        tasks = check_tasks(t, len(x), self.n_tasks)
        if not len(x):
            return
        if self.finalises:
            _, first = np.unique(tasks, return_index=True)
            order = [int(tasks[i]) for i in sorted(first)]
        else:
            order = np.unique(tasks).tolist()
        for i, task in enumerate(order):
            why = self.closed_task_problem(task)
            if why or (self.finalises and i and task == self.current):
                raise ValueError(why or self._closed(task))
            problem = self.label_problem(task, labels[tasks == task])
            if problem:
                raise ValueError(problem)
        if not self.dim:
            self.dim = int(x.shape[1])
            self.grow()
        np.add.at(self.counts, (tasks, labels), 1)
        for task in order:
            if self.finalises and task != self.current:
                if self.current >= 0:
                    self.finalise(self.current)
                    self.done[self.current] = True
                self.opt.reset()
                self.order.append(task)
                self.current = task
                self.start(task)
            rows = tasks == task
            cols = self.taught(task)
            self.fit_task(task, x[rows], np.searchsorted(cols, labels[rows]), cols)
        self.calls += 1

    def fit_task(self, task: int, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        """Train task ``task`` on rows ``x`` whose classes index ``cols``: ``epochs``
        passes of minibatch ``step``s in a seeded order."""
        rng, bs = self.sgd.rng(self.calls), self.sgd.batch_size
        for _ in range(self.sgd.epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), bs):
                idx = order[start : start + bs]
                self.step(task, x[idx], local[idx], cols)

    if TYPE_CHECKING:  # one minibatch update: given by the heads that keep this fit_task

        def step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None: ...

    def start(self, task: int) -> None:
        """Set up a task that begins training (heads that finalise)."""

    def finalise(self, task: int) -> None:
        """Freeze a task a later one has replaced (heads that finalise)."""

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

    def label_problem(self, task: int, labels: IntArray) -> str | None:
        """Why ``task`` cannot learn ``labels`` (checked before anything changes), or None."""
        return None

    # -- prediction ---------------------------------------------------------------------
    @abstractmethod
    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        """Scores ``(N, n_classes)`` of every class by task ``task``'s parameters."""
        ...

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
                "and predicts only within a given one (field `task`)"
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
            if self.counts[task].any():  # a task taught nothing stays uniform
                out[rows] = masked_softmax(self.task_logits(task, x[rows]), self.counts[task] > 0)
        return out

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return self.predict_proba_tasks(z, None)

    def snapshot(self) -> Any:
        """A deep copy: these heads are small, and learning changes arrays in place."""
        return copy.deepcopy(self)

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> State:
        state = {
            "counts": self.counts.copy(),
            "dim": self.dim,
            "calls": self.calls,
            self.state_key: copy.deepcopy(self.params_state()),
        }
        if self.finalises:
            state.update(done=self.done.copy(), current=self.current, order=list(self.order))
            state["adam"] = self.opt.state()
        return state

    def load_state_dict(self, state: State) -> None:
        counts = np.array(state["counts"], dtype=np.int64)
        self.counts = counts if counts.ndim == 2 else np.zeros((0, 0), dtype=np.int64)
        self.dim, self.calls = int(state["dim"]), int(state["calls"])
        self.done = np.zeros(self.n_tasks, bool)
        if self.finalises:
            self.done = np.array(state["done"], bool)
            self.current = int(state["current"])
            self.order = [int(t) for t in state["order"]]
            self.opt.load(state["adam"])
        self.load_params(state[self.state_key])

    @abstractmethod
    def params_state(self) -> State: ...

    @abstractmethod
    def load_params(self, state: State) -> None: ...
