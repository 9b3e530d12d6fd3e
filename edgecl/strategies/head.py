"""The SGD-trained softmax head: a linear layer, or ReLU hidden layers then the output."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.linear import (
    SGD,
    Float64Array,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.strategies.net import Net, Params, hidden_widths, joined, sgd_net, split_state
from edgecl.types import FloatArray, IntArray, State


class SoftmaxHead(Configurable):
    """A softmax head trained by a few epochs of minibatch SGD on each batch: ``W z + b``,
    or with ``hidden`` (a list of widths) ReLU layers before the output layer.

    The base of ``naive`` (the batch only), ``latent_replay`` (the learner mixes
    ``replay_size`` stored latents into each batch) and the regularised heads. Only trained
    classes' outputs take part in the softmax, when training and when predicting. With no
    hidden layer (the default) it computes exactly what the linear head always did.

    >>> head = SoftmaxHead(lr=0.5)
    >>> head.add_classes(2)
    >>> head.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> head.predict_proba_many(np.array([[2, 0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "softmax_head"

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        replay_size: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        self.sgd = SGD(lr, epochs, batch_size, weight_decay, seed=seed)
        self.replay_size = positive_int("replay_size", replay_size, minimum=0)
        self.hidden = hidden_widths(hidden)
        self.net = Net(self.hidden, seed)
        # Samples trained on per class (replayed ones included): tells trained classes.
        self.counts = np.zeros(0, dtype=np.int64)
        self.calls = 0

    @property
    def dim(self) -> int:
        return self.net.dim

    def add_classes(self, n_classes: int) -> None:
        self.net.grow(n_classes)
        self.counts = grow_rows(self.counts, n_classes)

    def check(self, z: FloatArray, y: IntArray) -> tuple[FloatArray, IntArray]:
        """The batch validated, and the network built once the latent dimension is known."""
        x, labels = check_batch(z, y, len(self.counts), self.dim)
        if len(x):
            self.net.grow(len(self.counts), x.shape[1])
        return x, labels

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = self.check(z, y)
        if len(x):
            self.fit(x, labels)

    def fit(self, x: FloatArray, labels: IntArray) -> None:
        """Train on a checked batch over the trained classes (those of the batch included)."""
        np.add.at(self.counts, labels, 1)
        cols = np.flatnonzero(self.counts > 0)
        work = self.net.view(cols)
        self.train(work, x, np.searchsorted(cols, labels), cols)
        self.net.put(cols, work)
        self.calls += 1

    def train(self, work: Params, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        """SGD on the working parameters (output rows ``cols``); the regularisers add to it."""
        sgd_net(work, x, local, self.sgd, self.sgd.rng(self.calls))

    # -- prediction -------------------------------------------------------------------
    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.dim)
        return masked_logits(self.net.scores(x), self.counts > 0)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(self.logits_many(z), self.counts > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The energy of the logits (:func:`~edgecl.strategies.base.energy`)."""
        return energy(self.logits_many(z))

    def snapshot(self) -> Any:
        """The current head, frozen: a copy owning copies of every array learning changes
        in place (the network's, the counts and whatever a subclass lists in ``frozen``)."""
        clone = copy.copy(self)
        clone.net = self.net.copy()
        clone.counts = self.counts.copy()
        for name in self.frozen:
            setattr(clone, name, copy.deepcopy(getattr(self, name)))
        return clone

    #: Further attributes a snapshot deep-copies (a subclass's prediction-time state).
    frozen: tuple[str, ...] = ()

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> State:
        """``w``/``b`` are the output layer (the linear head's keys), ``layers`` the hidden
        ones; a subclass adds its own under ``extra``."""
        w, b, layers = split_state(self.net, len(self.counts))
        state: State = {"w": w, "b": b, "counts": self.counts.copy(), "calls": self.calls}
        if layers:
            state["layers"] = layers
        extra = self.extra_state()
        if extra is not None:
            state["extra"] = extra
        return state

    def load_state_dict(self, state: State) -> None:
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.calls = int(state["calls"])
        base = Net(self.hidden, self.sgd.seed)
        self.net = joined(base, len(self.counts), state["w"], state["b"], state.get("layers", {}))
        self.load_extra(state.get("extra"))

    def extra_state(self) -> State | None:
        """What a subclass keeps beyond the network (None: nothing)."""
        return None

    def load_extra(self, state: State | None) -> None:
        """Load what :meth:`extra_state` returned."""
