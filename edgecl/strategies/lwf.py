"""Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017) on the head."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecl.strategies.experience import ExperienceHead
from edgecl.strategies.net import Net, Params, sgd_net
from edgecl.types import FloatArray, IntArray, State


def soft(logits: Any, temperature: float) -> FloatArray:
    """Row softmax of ``logits / temperature``."""
    s = logits / temperature
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    out: FloatArray = e / e.sum(axis=1, keepdims=True)
    return out


class LwF(ExperienceHead):
    """Learning without Forgetting: distil the previous head's answers on the new data.

    At each experience boundary (:mod:`edgecl.strategies.experience`) a frozen copy of the
    head becomes the teacher, with the classes it was trained on (the *old* classes). On
    each new batch the loss is the cross-entropy over the trained classes plus
    ``λ · KD``, where ``KD = -Σ_old softmax(teacher / T) log softmax(student / T)`` over the
    old classes' outputs: the paper's modified cross-entropy (``y^(1/T)`` renormalised is
    ``softmax(logits / T)``). Its gradient on the student's old-class logits is
    ``λ (softmax(student / T) - softmax(teacher / T)) / T``; like the paper, no ``T²``.

    The paper learns a new task head on a shared trunk and warms the new head up first;
    here there is one head whose output rows grow with the classes (class-incremental), so
    there is no warm-up step and the old classes' outputs are the rows the teacher knew.

    Hyper-parameters (defaults, the paper's): ``lwf_lambda`` (1.0, ``λ_o``),
    ``temperature`` (2.0, ``T``); ``consolidate_every`` (0), ``hidden`` (none: the linear
    head), and the SGD of :class:`~edgecl.strategies.naive.Naive` (``lr`` 0.01, ``epochs``
    3, ``batch_size`` 32, ``weight_decay`` 0, ``seed`` 0). No replay.

    >>> s = LwF(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0]], np.float32), np.array([0]))
    >>> s.learn_many(np.array([[0, 1]], np.float32), np.array([1]))  # a boundary
    >>> s.teacher_classes.tolist()
    [0]
    """

    name = "lwf"

    def __init__(
        self,
        lwf_lambda: float = 1.0,
        temperature: float = 2.0,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        from edgecl.strategies.linear import positive_float

        super().__init__(lr, epochs, batch_size, weight_decay, seed, 0, hidden, consolidate_every)
        self.lwf_lambda = positive_float("lwf_lambda", lwf_lambda, allow_zero=True)
        self.temperature = positive_float("temperature", temperature)
        self.teacher: Net | None = None
        self.teacher_classes = np.zeros(0, dtype=np.int64)

    def consolidate(self) -> None:
        self.teacher = self.net.copy()
        self.teacher_classes = np.flatnonzero(self.counts > 0)

    def kd_grad(self, x: FloatArray, cols: IntArray) -> Any:
        """The distillation term's gradient on a minibatch's logits (columns ``cols``)."""
        if self.teacher is None or not len(self.teacher_classes) or not self.lwf_lambda:
            return None
        old = self.teacher_classes
        target = soft(self.teacher.scores(x)[:, old], self.temperature)
        where = np.searchsorted(cols, old)
        scale = self.lwf_lambda / self.temperature

        def grad(idx: IntArray, logits: FloatArray) -> FloatArray:
            g = np.zeros_like(logits)
            g[:, where] = scale * (soft(logits[:, where], self.temperature) - target[idx])
            out: FloatArray = (g / len(idx)).astype(np.float32)
            return out

        return grad

    def train(self, work: Params, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        rng = self.sgd.rng(self.calls)
        sgd_net(work, x, local, self.sgd, rng, logit_grad=self.kd_grad(x, cols))

    def more_state(self) -> State:
        teacher = None if self.teacher is None else self.teacher.state()
        return {"teacher": teacher, "teacher_classes": self.teacher_classes.copy()}

    def load_more(self, state: State) -> None:
        teacher = state.get("teacher")
        self.teacher = None
        if teacher is not None:
            self.teacher = Net(self.hidden, self.sgd.seed)
            self.teacher.load(teacher)
        self.teacher_classes = np.array(state.get("teacher_classes", []), dtype=np.int64)
