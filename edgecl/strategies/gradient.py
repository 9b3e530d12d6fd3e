"""A linear softmax head with its gradients in the open, for the strategies that act on
them (MIR's virtual step, A-GEM's and GEM's projections) and those that train on
generated latents; and the stream's experiences, where a method needs task boundaries.

Only trained classes take part in the softmax, as in
:class:`~edgecl.strategies.linear.SoftmaxHead`; the parameters a step touches are the
rows of those classes, flattened as ``[W[cols].ravel(), b[cols]]`` when a method needs
one gradient vector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy, frozen_copy, masked_logits
from edgecl.strategies.linear import (
    SGD,
    BoolArray,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.types import Float64Array, FloatArray, IntArray, State

H = TypeVar("H", bound="GradientHead")
#: ``(w, b, x, y, cols, idx) -> (grad_w, grad_b)``: a minibatch step's direction for the
#: trained rows ``cols`` (``w``, ``b`` are theirs, ``y`` indexes them; ``idx``: which rows
#: of the descended set the minibatch ``x`` is).
Direction = Callable[
    [Float64Array, Float64Array, FloatArray, IntArray, IntArray, IntArray],
    tuple[Float64Array, Float64Array],
]


def softmax_rows(scores: Float64Array) -> Float64Array:
    """Row softmax of finite scores (float64)."""
    s = scores - np.max(scores, axis=1, keepdims=True)
    e = np.exp(s)
    return np.asarray(e / np.sum(e, axis=1, keepdims=True), dtype=np.float64)


def losses(w: Any, b: Any, x: Any, y: IntArray) -> Float64Array:
    """Cross-entropy of each sample under the head ``(w, b)`` (rows indexed by ``y``).

    >>> losses(np.zeros((2, 1)), np.zeros(2), np.ones((1, 1)), np.array([0])).round(4).tolist()
    [0.6931]
    """
    s = np.asarray(x, np.float64) @ np.asarray(w, np.float64).T + b
    s -= np.max(s, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(s), axis=1))
    return np.asarray(lse - s[np.arange(len(y)), y], dtype=np.float64)


def gradient(
    w: Any, b: Any, x: Any, y: IntArray, rows: BoolArray | None = None
) -> tuple[Float64Array, Float64Array]:
    """Gradient of the mean cross-entropy over ``(x, y)`` with respect to ``(w, b)``;
    ``rows`` (a mask over ``w``'s rows), if given, zeroes the gradient of the other rows
    (their outputs still take part in the softmax)."""
    xs = np.asarray(x, np.float64)
    p = softmax_rows(xs @ np.asarray(w, np.float64).T + b)
    p[np.arange(len(y)), y] -= 1.0
    p /= max(len(y), 1)
    if rows is not None:
        p[:, ~rows] = 0.0
    return p.T @ xs, p.sum(axis=0)


def flat(gw: Float64Array, gb: Float64Array) -> Float64Array:
    """One gradient vector ``[gw.ravel(), gb]``."""
    return np.concatenate([gw.ravel(), gb])


def unflat(g: Float64Array, k: int, d: int) -> tuple[Float64Array, Float64Array]:
    """``flat``'s inverse for ``k`` rows of ``d`` weights.

    >>> [a.tolist() for a in unflat(flat(np.ones((2, 1)), np.zeros(2)), 2, 1)]
    [[[1.0], [1.0]], [0.0, 0.0]]
    """
    return g[: k * d].reshape(k, d), g[k * d :]


class GradientHead(Configurable):
    """Base of the heads below: ``W z + b`` over trained classes, SGD options, state, and
    the experience each class opened (a stream has no task boundaries: an experience begins
    with a batch that brings a class not seen before, and owns the classes it brought)."""

    replay_size = 0

    def __init__(self, lr: float, epochs: int, batch_size: int, seed: int) -> None:
        self.sgd = SGD(lr, epochs, batch_size, seed=seed)
        self.w = np.zeros((0, 0), dtype=np.float32)
        self.b = np.zeros(0, dtype=np.float32)
        self.counts = np.zeros(0, dtype=np.int64)  # samples trained on per class
        self.opened = np.zeros(0, dtype=np.int64)  # 1 + the experience a class opened; 0: none
        self.experiences = 0
        self.calls = 0

    def add_classes(self, n_classes: int) -> None:
        self.w = grow_rows(self.w, n_classes)
        self.b = grow_rows(self.b, n_classes)
        self.counts = grow_rows(self.counts, n_classes)
        self.opened = grow_rows(self.opened, n_classes)

    # -- learning helpers ---------------------------------------------------------------
    def check(self, z: FloatArray, y: IntArray) -> tuple[FloatArray, IntArray]:
        """A checked batch (``ValueError`` before any change)."""
        x, labels = check_batch(z, y, len(self.counts), self.w.shape[1])
        return x, labels

    def check_memory(self, zm: FloatArray, ym: IntArray) -> tuple[FloatArray, IntArray]:
        """A checked memory draw; items of classes never trained are dropped."""
        if not len(ym):
            return np.zeros((0, self.w.shape[1]), np.float32), np.zeros(0, np.int64)
        x, labels = check_batch(zm, ym, len(self.counts), self.w.shape[1])
        known = self.counts[labels] > 0
        return x[known], labels[known]

    def begin(self, x: FloatArray, labels: IntArray) -> None:
        """Size ``W``, open an experience if the batch brings a new class, count it."""
        if self.w.shape[1] == 0:
            self.w = np.zeros((len(self.counts), x.shape[1]), dtype=np.float32)
        fresh = np.unique(labels[self.opened[labels] == 0])
        if len(fresh):
            self.experiences += 1
            self.opened[fresh] = self.experiences
        np.add.at(self.counts, labels, 1)

    def past(self, labels: IntArray) -> BoolArray:
        """Which of ``labels`` belong to an experience before the current one."""
        out: BoolArray = self.opened[labels] < self.experiences
        return out

    def minibatches(self, n: int) -> list[IntArray]:
        """This call's minibatch order over ``n`` rows, ``epochs`` times."""
        rng = self.sgd.rng(self.calls)
        size = self.sgd.batch_size
        out = []
        for _ in range(self.sgd.epochs):
            order = rng.permutation(n)
            out += [order[s : s + size] for s in range(0, n, size)]
        return out

    def descend(self, x: FloatArray, labels: IntArray, direction: Direction) -> None:
        """``epochs`` of minibatch SGD over ``(x, labels)`` along ``direction`` (float64
        within the call), on the trained classes' rows."""
        cols = np.flatnonzero(self.trained)
        w, b = self.w[cols].astype(np.float64), self.b[cols].astype(np.float64)
        local = np.searchsorted(cols, labels)
        for idx in self.minibatches(len(x)):
            gw, gb = direction(w, b, x[idx], local[idx], cols, idx)
            w -= self.sgd.lr * gw
            b -= self.sgd.lr * gb
        self.w[cols], self.b[cols] = w, b
        self.calls += 1

    # -- prediction ---------------------------------------------------------------------
    @property
    def trained(self) -> BoolArray:
        out: BoolArray = self.counts > 0
        return out

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.w.shape[1])
        scores = x @ self.w.T + self.b if self.w.shape[1] else np.zeros((len(x), len(self.b)))
        return masked_logits(scores, self.trained)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(self.logits_many(z), self.trained)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The energy of the logits (:func:`~edgecl.strategies.base.energy`)."""
        return energy(self.logits_many(z))

    def snapshot(self: H) -> H:
        """The current head, frozen (see :func:`~edgecl.strategies.base.frozen_copy`)."""
        return frozen_copy(self, "w", "b", "counts", "opened")

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "w": self.w.copy(),
            "b": self.b.copy(),
            "counts": self.counts.copy(),
            "opened": self.opened.copy(),
            "experiences": self.experiences,
            "calls": self.calls,
        }

    def load_state_dict(self, state: State) -> None:
        self.w = np.array(state["w"], dtype=np.float32)
        self.b = np.array(state["b"], dtype=np.float32)
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.opened = np.array(state["opened"], dtype=np.int64)
        self.experiences = int(state["experiences"])
        self.calls = int(state["calls"])


def memory_size_option(value: object) -> int:
    """``memory_size`` checked: an integer >= 0 (0: the learner draws nothing)."""
    return positive_int("memory_size", value, minimum=0)
