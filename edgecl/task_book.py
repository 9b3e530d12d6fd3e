"""Tasks beside labels: the learner's task names, what each task was taught, how a replay
store keeps an item's task, and how a :class:`~edgecl.protocols.TaskAware` head is asked.

A sample's task is optional: ``-1`` stands for "no task" wherever tasks are ints. Stores
keep an item's task inside the int64 label they already hold (:func:`pack`): the class
index in the low 32 bits, ``task + 1`` above them, so an item without a task keeps exactly
the label it always had, and every store, its state and its policy stay as they were (a
class-balanced store balances (class, task) pairs once tasks are used).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgecl.labels import LabelMap
from edgecl.protocols import Strategy, TaskAware
from edgecl.types import FloatArray, IntArray, Label, State, check_label

SHIFT = 32
NO_TASK = -1


def pack(y: IntArray, t: IntArray | None) -> IntArray:
    """Store labels of class indices ``y`` with tasks ``t`` (``-1``: none).

    >>> pack(np.array([3, 3]), np.array([-1, 1])).tolist(), unpack(np.array([8589934595]))
    ([3, 8589934595], (array([3]), array([1])))
    """
    y = np.asarray(y, dtype=np.int64)
    if t is None:
        return y
    return y + ((np.asarray(t, dtype=np.int64) + 1) << SHIFT)


def unpack(keys: IntArray) -> tuple[IntArray, IntArray]:
    """Class indices and tasks (``-1``: none) of store labels made by :func:`pack`."""
    keys = np.asarray(keys, dtype=np.int64)
    return keys & ((1 << SHIFT) - 1), (keys >> SHIFT) - 1


class TaskError(ValueError):
    """A sample's task is missing or unusable; the message names ``samples[i].task``."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"samples[{index}].task: {message}")
        self.index = index


def task_aware(strategy: Strategy) -> TaskAware | None:
    if not hasattr(strategy, "add_tasks"):  # a protocol's isinstance costs tens of µs
        return None
    return strategy if isinstance(strategy, TaskAware) else None


class TaskBook:
    """Task names → ints 0.. (like labels), samples and classes taught per task.

    >>> book = TaskBook()
    >>> book.encode(["tools", None, "parts"]).tolist(), book.names.labels
    ([0, -1, 1], ['tools', 'parts'])
    """

    def __init__(self) -> None:
        self.names = LabelMap()
        self.counts: list[int] = []
        self.classes: list[set[int]] = []

    def __len__(self) -> int:
        return len(self.names)

    def check(
        self, strategy: Strategy, tasks: Sequence[object] | None, n: int, learning: bool
    ) -> list[Label | None] | None:
        """``n`` tasks (None: the sample has none), checked against ``strategy``: a
        task-aware one learns only samples with a task, a "required" one holding several
        tasks predicts only with a task, and new tasks must fit its byte budget."""
        if tasks is None:
            checked: list[Label | None] = [None] * n
        else:
            if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
                raise ValueError("tasks must be a sequence of str, int or None, one per sample")
            if len(tasks) != n:
                raise ValueError(f"got {n} samples but {len(tasks)} tasks")
            checked = []
            for i, task in enumerate(tasks):
                try:
                    checked.append(None if task is None else check_label(task))
                except ValueError as exc:
                    raise TaskError(i, str(exc).replace("label", "task")) from None
        head = task_aware(strategy)
        if head is None:
            return None if tasks is None else checked
        # Predicting, a missing task is unambiguous while there is at most one task.
        if learning or (head.task_mode == "required" and len(self) > 1):
            for i, task in enumerate(checked):
                if task is None:
                    doing = "learns" if learning else "predicts"
                    raise TaskError(i, f"strategy {strategy.name!r} {doing} per task: give a task")
        if learning:
            new = {(type(t), t) for t in checked if t is not None and t not in self.names}
            problem = head.task_budget_problem(len(self) + len(new)) if new else None
            if problem:
                raise ValueError(problem)
            closed = getattr(head, "closed_task_problem", None)  # tasks taught once, in turn
            for i, task in enumerate(checked):
                if callable(closed) and task is not None and task in self.names:
                    why = closed(self.names.index(task))
                    if why:
                        raise TaskError(i, why)
        else:
            for i, task in enumerate(checked):
                if task is not None and task not in self.names:
                    raise TaskError(i, f"task {str(task)[:100]!r} was never taught")
        return checked

    def encode(self, tasks: Sequence[Label | None] | None, n: int = 0) -> IntArray:
        """Task ints (``-1``: none), adding new names."""
        if tasks is None:
            return np.full(n, NO_TASK, dtype=np.int64)
        out = [NO_TASK if t is None else self.names.encode(t) for t in tasks]
        grow = len(self.names) - len(self.counts)
        self.counts.extend([0] * grow)
        self.classes.extend(set() for _ in range(grow))
        return np.asarray(out, dtype=np.int64).reshape(-1)

    def lookup(self, tasks: Sequence[Label | None] | None, n: int) -> IntArray | None:
        """Task ints of known names for prediction (None: no sample has a task)."""
        if tasks is None or all(t is None for t in tasks):
            return None
        return np.asarray([NO_TASK if t is None else self.names.index(t) for t in tasks])

    def taught(self, y: IntArray, t: IntArray) -> None:
        for c, task in zip(y.tolist(), t.tolist(), strict=True):
            if task >= 0:
                self.counts[task] += 1
                self.classes[task].add(c)

    def owner(self, c: int) -> int:
        """The first task taught class ``c`` (``-1``: none)."""
        return next((t for t, cs in enumerate(self.classes) if c in cs), NO_TASK)

    def report(self, labels: Sequence[Label], strategy: Strategy) -> list[dict[str, Any]]:
        """Per task: name, samples, classes (labels) and bytes the head holds for it."""
        head = task_aware(strategy)
        nbytes = head.task_nbytes() if head is not None else {}
        return [
            {
                "name": name,
                "samples": self.counts[t],
                "classes": [labels[c] for c in sorted(self.classes[t])],
                "bytes": nbytes.get(t),
            }
            for t, name in enumerate(self.names.labels)
        ]

    def state_dict(self) -> State:
        return {
            "names": self.names.state_dict(),
            "counts": list(self.counts),
            "classes": [sorted(cs) for cs in self.classes],
        }

    def load_state_dict(self, state: State | None) -> None:
        """From :meth:`state_dict`; None (a state from before tasks) means no task."""
        if state is None:
            state = {"names": {"labels": []}, "counts": [], "classes": []}
        self.names = LabelMap.from_state(state["names"])
        self.counts = [int(c) for c in state["counts"]]
        self.classes = [{int(c) for c in cs} for cs in state["classes"]]


def proba(strategy: Strategy, z: FloatArray, t: IntArray | None) -> FloatArray:
    """Class probabilities of ``z``: with their tasks for a task-aware head (rows without a
    task are left to the head, which infers the task or refuses); the plain ones else."""
    head = task_aware(strategy)
    if head is None or t is None or not (t >= 0).any():
        return strategy.predict_proba_many(z)
    if (t >= 0).all():
        return head.predict_proba_tasks(z, t)
    given = t >= 0
    part = head.predict_proba_tasks(z[given], t[given])
    out = np.zeros((len(z), part.shape[1]), np.float32)
    out[given] = part
    out[~given] = strategy.predict_proba_many(z[~given])
    return out


def infer(strategy: Strategy, book: TaskBook, z: FloatArray, p: FloatArray) -> IntArray:
    """The task a task-aware head used for rows predicted without one (probabilities
    ``p``): its own ``infer_tasks`` if it has one, else the task taught the top class."""
    own = getattr(strategy, "infer_tasks", None)
    if callable(own):
        return np.asarray(own(z), dtype=np.int64)
    return np.asarray([book.owner(int(c)) for c in np.argmax(p, axis=1)], dtype=np.int64)


class TaskBound:
    """A task-aware head bound to the tasks of a batch of rows: its plain
    ``predict_proba_many`` answers with them (what calibration and frozen heads call)."""

    def __init__(self, head: Strategy, t: IntArray | None) -> None:
        self.head, self.t = head, t
        self.name, self.replay_size = head.name, 0

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return proba(self.head, z, self.t)
