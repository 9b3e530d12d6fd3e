"""The softmax head of :mod:`~edgecl.strategies.net` with its gradients in the open, for
the strategies that act on them (MIR's virtual step, A-GEM's and GEM's projections) and
those that train on generated latents; and the stream's experiences, where a method needs
task boundaries.

Only trained classes take part in the softmax, as in
:class:`~edgecl.strategies.head.SoftmaxHead`; the parameters a step touches are the hidden
layers (none by default) and the output rows of those classes, flattened input side
first as ``[w0.ravel(), b0, ..., W[cols].ravel(), b[cols]]`` when a method needs one
gradient vector (with no hidden layer: ``[W[cols].ravel(), b[cols]]``).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.linear import (
    SGD,
    BoolArray,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.strategies.net import (
    Net,
    Params,
    backward,
    forward,
    hidden_widths,
    joined,
    order,
    softmax_grad,
    split_state,
)
from edgecl.types import Float64Array, FloatArray, IntArray, State

H = TypeVar("H", bound="GradientHead")
#: ``(params, x, y, cols, idx) -> grads by name``: a minibatch step's direction for the
#: working parameters (float64; output rows ``cols``, which ``y`` indexes; ``idx``: which
#: rows of the descended set the minibatch ``x`` is).
Direction = Callable[[Params, FloatArray, IntArray, IntArray, IntArray], Params]


def losses(params: Params, x: FloatArray, y: IntArray) -> Float64Array:
    """Cross-entropy of each sample under ``params`` (output rows indexed by ``y``).

    >>> p = {"w0": np.zeros((2, 1)), "b0": np.zeros(2)}
    >>> losses(p, np.ones((1, 1), np.float32), np.array([0])).round(4).tolist()
    [0.6931]
    """
    s = forward(params, x)[0]
    s -= np.max(s, axis=1, keepdims=True)
    lse = np.log(np.sum(np.exp(s), axis=1))
    return np.asarray(lse - s[np.arange(len(y)), y], dtype=np.float64)


def gradient(params: Params, x: FloatArray, y: IntArray, rows: BoolArray | None = None) -> Params:
    """Gradients by name of the mean cross-entropy over ``(x, y)``; ``rows`` (a mask over
    the output rows), if given, drops the other rows' share (their outputs still take part
    in the softmax; the hidden layers get only the kept rows' gradient)."""
    logits, cache = forward(params, x)
    g = softmax_grad(logits, y)
    if rows is not None:
        g[:, ~rows] = 0.0
    return backward(params, cache, g)


def flat(grads: Params) -> Float64Array:
    """One gradient vector, input side first (see the module's docstring)."""
    return np.concatenate([grads[k].ravel() for k in order(grads)])


def unflat(g: Float64Array, like: Params) -> Params:
    """``flat``'s inverse for parameters shaped as ``like``.

    >>> p = {"w0": np.ones((2, 1)), "b0": np.zeros(2)}
    >>> [v.tolist() for v in unflat(flat(p), p).values()]
    [[[1.0], [1.0]], [0.0, 0.0]]
    """
    out: Params = {}
    start = 0
    for k in order(like):
        size = like[k].size
        out[k] = g[start : start + size].reshape(like[k].shape)
        start += size
    return out


def added(a: Params, b: Params) -> Params:
    """Gradients summed by name."""
    return {k: a[k] + b[k] for k in a}


class GradientHead(Configurable):
    """Base of the heads below: the network (``hidden`` ReLU layers, none by default, then
    one output row per class) over trained classes, SGD options, state, and the experience
    each class opened (a stream has no task boundaries: an experience begins with a batch
    that brings a class not seen before, and owns the classes it brought)."""

    replay_size = 0

    def __init__(
        self, lr: float, epochs: int, batch_size: int, seed: int, hidden: object = ()
    ) -> None:
        self.sgd = SGD(lr, epochs, batch_size, seed=seed)
        self.hidden = hidden_widths(hidden)
        self.net = Net(self.hidden, seed)
        self.counts = np.zeros(0, dtype=np.int64)  # samples trained on per class
        self.opened = np.zeros(0, dtype=np.int64)  # 1 + the experience a class opened; 0: none
        self.experiences = 0
        self.calls = 0

    @property
    def dim(self) -> int:
        """The latent dimension (0 before the first batch)."""
        return self.net.dim

    def add_classes(self, n_classes: int) -> None:
        self.net.grow(n_classes)
        self.counts = grow_rows(self.counts, n_classes)
        self.opened = grow_rows(self.opened, n_classes)

    # -- learning helpers ---------------------------------------------------------------
    def check(self, z: FloatArray, y: IntArray) -> tuple[FloatArray, IntArray]:
        """A checked batch (``ValueError`` before any change)."""
        x, labels = check_batch(z, y, len(self.counts), self.dim)
        return x, labels

    def check_memory(self, zm: FloatArray, ym: IntArray) -> tuple[FloatArray, IntArray]:
        """A checked memory draw; items of classes never trained are dropped."""
        if not len(ym):
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64)
        x, labels = check_batch(zm, ym, len(self.counts), self.dim)
        known = self.counts[labels] > 0
        return x[known], labels[known]

    def begin(self, x: FloatArray, labels: IntArray) -> None:
        """Build the network, open an experience if the batch brings a new class, count."""
        self.net.grow(len(self.counts), x.shape[1])
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
        within the call), on the hidden layers and the trained classes' output rows."""
        cols = np.flatnonzero(self.trained)
        work = {k: v.astype(np.float64) for k, v in self.net.view(cols).items()}
        local = np.searchsorted(cols, labels)
        for idx in self.minibatches(len(x)):
            grads = direction(work, x[idx], local[idx], cols, idx)
            for k, g in grads.items():
                work[k] -= self.sgd.lr * g
        self.net.put(cols, {k: v.astype(np.float32) for k, v in work.items()})
        self.calls += 1

    # -- prediction ---------------------------------------------------------------------
    @property
    def trained(self) -> BoolArray:
        out: BoolArray = self.counts > 0
        return out

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.dim)
        scores = self.net.scores(x) if self.dim else np.zeros((len(x), len(self.counts)))
        return masked_logits(scores, self.trained)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(self.logits_many(z), self.trained)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The energy of the logits (:func:`~edgecl.strategies.base.energy`)."""
        return energy(self.logits_many(z))

    def snapshot(self: H) -> H:
        """The current head, frozen: a copy owning copies of what learning changes in place
        (see :func:`~edgecl.strategies.base.frozen_copy`)."""
        clone = copy.copy(self)
        clone.net = self.net.copy()
        clone.counts, clone.opened = self.counts.copy(), self.opened.copy()
        return clone

    # -- state --------------------------------------------------------------------------
    def state_dict(self) -> State:
        """``w``/``b`` are the output layer (the linear head's keys), ``layers`` the hidden
        ones (only with ``hidden``)."""
        w, b, layers = split_state(self.net, len(self.counts))
        state: State = {
            "w": w,
            "b": b,
            "counts": self.counts.copy(),
            "opened": self.opened.copy(),
            "experiences": self.experiences,
            "calls": self.calls,
        }
        if layers:
            state["layers"] = layers
        return state

    def load_state_dict(self, state: State) -> None:
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.opened = np.array(state["opened"], dtype=np.int64)
        self.experiences = int(state["experiences"])
        self.calls = int(state["calls"])
        layers = state.get("layers", {})
        self.net = joined(self.net, len(self.counts), state["w"], state["b"], layers)


class MemoryHead(GradientHead, ABC):
    """A head the learner hands a memory draw apart from the batch
    (:class:`~edgecl.protocols.MemoryReplay`); on its own, a batch is learned with none."""

    memory_size: int

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        self.learn_with_memory(z, y, z[:0], np.zeros(0, np.int64))

    @abstractmethod
    def learn_with_memory(
        self, z: FloatArray, y: IntArray, zm: FloatArray, ym: IntArray
    ) -> None: ...


def memory_size_option(value: object) -> int:
    """``memory_size`` checked: an integer >= 0 (0: the learner draws nothing)."""
    return positive_int("memory_size", value, minimum=0)
