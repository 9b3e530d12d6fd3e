"""Cumulative: the head retrained on everything the memory holds, at every experience."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

from edgecl.strategies.experience import ExperienceHead
from edgecl.strategies.linear import BoolArray, check_batch, positive_int
from edgecl.strategies.net import Net, sgd_net
from edgecl.strategies.stores import PaperStore
from edgecl.types import FloatArray, IntArray, State

#: ``replay_size`` asked for while a boundary is pending: more than any store holds, so the
#: learner mixes in every stored item (it samples ``min(n, len(store))``).
EVERYTHING = 1 << 30


class Cumulative(ExperienceHead):
    """The cumulative baseline: at each experience, a fresh head trained on everything seen
    so far, within the memory's budget (its store is the class-balanced one GDumb uses).
    A baseline of the field rather than one paper's method (e.g. CORe50's "cumulative",
    Lomonaco & Maltoni 2017, which keeps every sample; a bounded store is the deviation).

    Between boundaries it learns as :class:`~edgecl.strategies.latent_replay.LatentReplay`
    (each batch plus ``replay_size`` replayed latents). When a batch brings a class never
    trained (the boundary of :mod:`edgecl.strategies.experience`; ``add_classes`` is how
    the learner announces it), its ``replay_size`` reads as "everything" for that one
    batch, so the learner mixes the whole store in, and the head is re-initialised and
    trained from scratch for ``retrain_epochs`` epochs on the store plus the batch (the
    rate cosine-annealed from ``lr``).
    ``retrain`` (``edgecl.Learner.retrain``, the daemon's ``POST /retrain``) does the same
    on request from the memory alone, off to the side. A ``consolidate_every`` boundary
    retrains on what that batch brings (the batch and ``replay_size`` replayed latents):
    the store is only reached at class boundaries or on request.

    Hyper-parameters (defaults): ``replay_size`` (32), ``retrain_epochs`` (10),
    ``consolidate_every`` (0), ``hidden`` (none: the linear head), and the SGD of
    ``latent_replay`` (``lr`` 0.01, ``epochs`` 3, ``batch_size`` 64, ``weight_decay`` 0,
    ``seed`` 0), which the retraining uses too. Without a store it is ``naive`` with a
    reset at each new class.

    >>> s = Cumulative(lr=0.5)
    >>> s.add_classes(1)
    >>> s.learn_many(np.array([[1, 0]], np.float32), np.array([0]))
    >>> s.add_classes(2)  # a new class arrives: the learner will replay everything
    >>> s.replay_size == EVERYTHING
    True
    >>> s.learn_many(np.array([[0, 1], [1, 0]], np.float32), np.array([1, 0]))
    >>> s.replay_size, s.experiences
    (32, 1)
    """

    name = "cumulative"
    paper_store = PaperStore("class_balanced")

    def __init__(
        self,
        replay_size: int = 32,
        retrain_epochs: int = 10,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        self.pending = False
        super().__init__(
            lr, epochs, batch_size, weight_decay, seed, replay_size, hidden, consolidate_every
        )
        self.retrain_epochs = positive_int("retrain_epochs", retrain_epochs)

    @property
    def replay_size(self) -> int:
        return EVERYTHING if self.pending else self._replay_size

    @replay_size.setter
    def replay_size(self, value: int) -> None:
        self._replay_size = value

    def options(self) -> dict[str, object]:
        return {**super().options(), "replay_size": self._replay_size}

    def add_classes(self, n_classes: int) -> None:
        if n_classes > len(self.counts) and (self.counts > 0).any():
            self.pending = True
        super().add_classes(n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = self.check(z, y)
        if not len(x):
            return
        self.pending = False
        if self.boundary(labels):
            self.experiences += 1
            self.since = 0
            self.net = self.fresh_net(x.shape[1])
            np.add.at(self.counts, labels, 1)
            self.fit_fresh(self.net, x, labels, self.counts > 0, self.calls, lambda f: True)
            self.calls += 1
        else:
            self.fit(x, labels)
        self.since += len(x)

    def fresh_net(self, dim: int) -> Net:
        net = Net(self.hidden, self.sgd.seed)
        net.grow(len(self.counts), dim)
        return net

    def fit_fresh(
        self,
        net: Net,
        x: FloatArray,
        labels: IntArray,
        trained: BoolArray,
        step: int,
        on_progress: Callable[[float], bool],
    ) -> None:
        """``retrain_epochs`` epochs of SGD on ``(x, labels)`` over the classes ``trained``,
        the rate cosine-annealed from ``lr`` towards 0 (at a constant rate the head ends
        wherever its last steps put it)."""
        cols = np.flatnonzero(trained)
        work = net.view(cols)
        local = np.searchsorted(cols, labels)
        rng = self.sgd.rng(step)
        for epoch in range(self.retrain_epochs):
            lr = 0.5 * self.sgd.lr * (1 + math.cos(math.pi * epoch / self.retrain_epochs))
            sgd_net(work, x, local, self.sgd, rng, lr=lr, epochs=1)
            if not on_progress((epoch + 1) / self.retrain_epochs):
                break
        net.put(cols, work)

    def retrain(self, z: FloatArray, y: IntArray, on_progress: Callable[[float], bool]) -> State:
        """A head trained from scratch on ``(z, y)`` (the memory), as a state to load;
        classes the memory does not hold are no longer answered (as after a boundary)."""
        x, labels = check_batch(z, y, len(self.counts), self.dim)
        if not len(x):
            raise ValueError("the memory is empty: nothing to retrain from")
        clone = copy.copy(self)
        clone.counts = np.bincount(labels, minlength=len(self.counts)).astype(np.int64)
        clone.net = self.fresh_net(x.shape[1])
        self.fit_fresh(clone.net, x, labels, clone.counts > 0, self.calls, on_progress)
        clone.calls = self.calls + 1
        clone.pending = False
        return clone.state_dict()
