"""ExStream (Hayes, Cahill & Kanan, ICRA 2019): streaming rehearsal from merged prototypes."""

from __future__ import annotations

import copy

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.linear import (
    SGD,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.strategies.mlp import AdamMLP
from edgecl.types import Float64Array, FloatArray, IntArray, State


class ExStream(Configurable):
    """ExStream's learner: an MLP trained by Adam on the store's class prototypes.

    ExStream is two halves. The memory half is the ``exstream`` store
    (:class:`~edgecl.replay.exstream.ExStreamStore`): one fixed-capacity buffer per class,
    and when a class buffer is full its two nearest prototypes (Euclidean) merge into their
    count-weighted mean. This half is the update, as in the paper's reference code: each
    new sample is first stored (merged), then the head trains for one epoch over the whole
    buffer. ``learns_after_store`` tells the :class:`~edgecl.Learner` so: it adds the
    batch to the store first and hands the head the ``replay_size`` prototypes drawn from
    it (all of them when it holds fewer), without the raw batch. Without a store the head
    trains on the batch alone.

    The head is the reference's: ``hidden`` ReLU units (Glorot-normal weights, biases 1)
    and a softmax output, trained with Adam (lr 2e-3, minibatches of 128). The
    reference's batch normalisation after the hidden layer is left out: it has no
    running statistics worth keeping after one epoch per sample over a buffer that the
    merges keep changing. ``hidden=0`` is a linear softmax head trained the same way.

    Hyper-parameters (defaults):

    - ``replay_size`` (1500): prototypes trained on per sample; the paper trains on the
      whole buffer, so make it at least the number of items the store holds.
    - ``hidden`` (128; 0: linear head), ``lr`` (0.002), ``batch_size`` (128), ``epochs``
      (1), ``weight_decay`` (0): the network and Adam.
    - ``seed`` (0): initial weights and minibatch order.

    >>> s = ExStream(lr=0.05, hidden=8)
    >>> s.add_classes(2)
    >>> for _ in range(20):
    ...     s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[0, 3]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "exstream"
    learns_after_store = True

    def __init__(
        self,
        replay_size: int = 1500,
        lr: float = 0.002,
        epochs: int = 1,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: int = 128,
    ) -> None:
        self.sgd = SGD(lr, epochs, batch_size, weight_decay, seed=seed)
        self.replay_size = positive_int("replay_size", replay_size, minimum=0)
        self.hidden = positive_int("hidden", hidden, minimum=0)
        self.net = AdamMLP(self.hidden, self.sgd.lr, self.sgd.weight_decay, self.sgd.seed)
        self.counts = np.zeros(0, dtype=np.int64)  # samples trained on, per class
        # Their sums: the class centres novelty is measured from (None: a state saved
        # before they were kept; novelty falls back to the logits' energy).
        self.sums: Float64Array | None = np.zeros((0, 0))
        self.dim = 0
        self.calls = 0

    def add_classes(self, n_classes: int) -> None:
        self.counts = grow_rows(self.counts, n_classes)
        if self.sums is not None:
            self.sums = grow_rows(self.sums, n_classes)
        if self.dim:
            self.net.grow(len(self.counts), self.dim)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = check_batch(z, y, len(self.counts), self.dim)
        if not len(x):
            return
        if not self.dim:
            self.dim = x.shape[1]
            self.net.grow(len(self.counts), self.dim)
        np.add.at(self.counts, labels, 1)
        if self.sums is not None:
            if self.sums.shape[1] != x.shape[1]:
                self.sums = np.zeros((len(self.counts), x.shape[1]))
            np.add.at(self.sums, labels, x.astype(np.float64))
        trained = self.counts > 0
        rng = self.sgd.rng(self.calls)
        for _ in range(self.sgd.epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), self.sgd.batch_size):
                idx = order[start : start + self.sgd.batch_size]
                self.net.step(x[idx], labels[idx], trained)
        self.calls += 1

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.dim)
        scores = self.net.scores(x) if self.dim else np.zeros((len(x), len(self.counts)))
        return masked_logits(scores, self.counts > 0)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(self.logits_many(z), self.counts > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """Distance to the nearest class centre (the mean of what the head trained on: the
        prototypes): an MLP's logits stay large far from every class, so their energy
        tells unseen inputs apart poorly."""
        trained = self.counts > 0
        if self.sums is None or not self.dim or not trained.any():
            return energy(self.logits_many(z))
        x = check_latents(z, self.dim).astype(np.float64)
        centres = self.sums[trained] / self.counts[trained, None]
        d = np.sum(x**2, 1)[:, None] - 2.0 * x @ centres.T + np.sum(centres**2, 1)[None, :]
        return np.asarray(np.sqrt(np.maximum(d.min(axis=1), 0.0)), dtype=np.float64)

    def snapshot(self) -> ExStream:
        """The current head, frozen: a copy owning copies of the arrays training changes."""
        clone = copy.copy(self)
        clone.net = copy.deepcopy(self.net)
        clone.counts = self.counts.copy()
        clone.sums = None if self.sums is None else self.sums.copy()
        return clone

    def state_dict(self) -> State:
        return {
            "net": self.net.state(),
            "counts": self.counts.copy(),
            "sums": None if self.sums is None else self.sums.copy(),
            "dim": self.dim,
            "calls": self.calls,
        }

    def load_state_dict(self, state: State) -> None:
        """Load a state; one saved before the MLP head (a linear ``w``, ``b`` trained by
        SGD) loads as the linear head (``hidden=0``) with fresh Adam moments."""
        self.counts = np.array(state["counts"], dtype=np.int64)
        self.calls = int(state["calls"])
        sums = state.get("sums")
        self.sums = None if sums is None else np.array(sums, dtype=np.float64)
        if "net" in state:
            self.dim = int(state["dim"])
            self.net.load(state["net"])
            return
        w = np.array(state["w"], dtype=np.float32)
        self.hidden, self.dim = 0, int(w.shape[1]) if w.ndim == 2 else 0
        net = AdamMLP(0, self.sgd.lr, self.sgd.weight_decay, self.sgd.seed)
        self.net = net
        if not self.dim:
            return
        moments = {
            f"{s}_{k}": 0.0 * np.asarray(v)
            for k, v in (("w2", w), ("b2", state["b"]))
            for s in "mv"
        }
        net.load({"w2": w, "b2": state["b"], **moments, "t": 0})
