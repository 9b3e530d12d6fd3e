"""Multi-head: one output head per task over the shared, frozen latents.

The classic task-incremental baseline (e.g. Li & Hoiem 2016's "multiple heads"; van de
Ven & Tolias 2019, "Three scenarios for continual learning"): the representation (here
the frozen backbone) is shared, and each task has its own linear softmax layer, trained
only on that task's samples and asked only about that task's classes. Learning one task
never touches another's head, so nothing is forgotten when the task is given.

Hyper-parameters (defaults): ``lr`` (0.05), ``epochs`` (3), ``batch_size`` (32): the
minibatch SGD of each head on each learned batch; ``seed`` (0): minibatch order;
``max_bytes`` (64 MiB): the budget of all heads (a new task that would pass it is refused);
``infer_task`` (None): with ``"entropy"`` the task of a sample given without one is the
head whose softmax over its own classes has the lowest entropy (task_mode "inferred");
with None a task is required when more than one exists.

Deviations: class indices are global (a label is one class in every task that teaches
it), so a head has a row per class and its softmax covers only its task's taught classes;
bytes per task count the head's rows for every class known (``(n_classes, dim + 1)``
float32), as held. A task of a single class has zero entropy, so entropy inference
favours it; the criterion is the common baseline, not a paper's method.
"""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import sgd_softmax
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import EnergyNovelty, as_f32
from edgecl.types import FloatArray, IntArray, State

_INFER = (None, "entropy")


class MultiHead(EnergyNovelty, TaskHead):
    """One linear softmax head per task.

    >>> head = MultiHead(lr=0.5)
    >>> head.add_classes(4)
    >>> head.add_tasks(2)
    >>> z = np.array([[1, 0], [0, 1]], np.float32)
    >>> head.learn_tasks(z, np.array([0, 1]), np.array([0, 0]))
    >>> head.learn_tasks(z, np.array([2, 3]), np.array([1, 1]))
    >>> head.predict_proba_tasks(z, np.array([1, 0])).argmax(axis=1).tolist()
    [2, 1]
    """

    name = "multi_head"

    def __init__(
        self,
        lr: float = 0.05,
        epochs: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
        infer_task: str | None = None,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        if infer_task not in _INFER:
            raise ValueError(f"infer_task must be 'entropy' or None, got {infer_task!r}")
        self.infer_task = infer_task
        self.task_mode = "inferred" if infer_task else "required"
        self.w = np.zeros((0, 0, 0), dtype=np.float32)  # (tasks, classes, dim)
        self.b = np.zeros((0, 0), dtype=np.float32)

    def grow(self) -> None:
        t, k, d = self.n_tasks, self.n_classes, self.dim
        if self.w.shape != (t, k, d):
            w = np.zeros((t, k, d), dtype=np.float32)
            b = np.zeros((t, k), dtype=np.float32)
            if self.w.shape[2] == d:
                w[: self.w.shape[0], : self.w.shape[1]] = self.w
                b[: self.b.shape[0], : self.b.shape[1]] = self.b
            self.w, self.b = w, b

    def task_cost(self, rank: int) -> int:
        return self.n_classes * (self.dim + 1) * 4

    def fit_task(self, task: int, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        w, b = self.w[task, cols], self.b[task, cols]
        sgd_softmax(w, b, x, local, self.sgd, self.sgd.rng(self.calls))
        self.w[task, cols], self.b[task, cols] = w, b

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        out: FloatArray = x @ self.w[task].T + self.b[task]
        return out

    def infer_tasks(self, z: FloatArray) -> IntArray:
        """The task whose head is surest (lowest entropy over its own classes)."""
        if self.n_tasks <= 1 or self.infer_task is None:
            return super().infer_tasks(z) if self.n_tasks > 1 else np.zeros(len(z), np.int64)
        x = np.ascontiguousarray(z.reshape(len(z), -1), dtype=np.float32)
        ent = np.full((len(x), self.n_tasks), np.inf)
        for task in range(self.n_tasks):
            taught = self.counts[task] > 0
            if taught.any():
                s = self.task_logits(task, x)[:, taught].astype(np.float64)
                s -= s.max(axis=1, keepdims=True)
                p = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
                ent[:, task] = -(p * np.log(np.maximum(p, 1e-30))).sum(axis=1)
        return np.asarray(np.argmin(ent, axis=1), dtype=np.int64)

    def params_state(self) -> State:
        return {"w": self.w.copy(), "b": self.b.copy()}

    def load_params(self, state: State) -> None:
        self.w, self.b = as_f32(state["w"]), as_f32(state["b"])
        self.w = self.w.reshape(self.n_tasks, self.n_classes, self.dim)
        self.b = self.b.reshape(self.n_tasks, self.n_classes)
