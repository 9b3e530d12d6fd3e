"""Ensemble: one head per experience, each class answered by the head that learned it."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgecl.strategies.base import energy, masked_logits
from edgecl.strategies.experience import ExperienceHead
from edgecl.strategies.linear import Float64Array, check_latents, grow_rows
from edgecl.strategies.net import Net
from edgecl.types import FloatArray, IntArray, State


class Ensemble(ExperienceHead):
    """One softmax head per experience, combined at prediction (a baseline, not one
    paper's method: the task-agnostic ensemble of independent per-experience models).

    Each experience (:mod:`edgecl.strategies.experience`) gets a fresh head (the same
    initialisation), trained by SGD on that experience's batches only, with its softmax
    over every class trained so far: with one new class per experience a softmax over the
    experience's classes alone would have nothing to learn, so the older classes' outputs
    are the negatives. At a boundary the head is frozen and kept.

    Combination: each class's logit is taken from its *owner*, the latest head that trained
    on it, and the probabilities are the softmax of these assembled logits over trained
    classes (equivalently each head's softmax over its own classes, weighted by
    ``exp(-energy)`` of those logits). Heads are not calibrated against each other; nothing
    but their scale decides between classes owned by different heads. Novelty is the
    energy of the assembled logits.

    Hyper-parameters (defaults): ``consolidate_every`` (0), ``hidden`` (none: linear
    heads), and the SGD of :class:`~edgecl.strategies.naive.Naive` (``lr`` 0.01,
    ``epochs`` 3, ``batch_size`` 32, ``weight_decay`` 0, ``seed`` 0). No replay. The state
    holds every head: memory grows by one head per experience.

    >>> s = Ensemble(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0]], np.float32), np.array([0]))
    >>> s.learn_many(np.array([[0, 1]], np.float32), np.array([1]))  # a boundary
    >>> len(s.heads), s.owner.tolist()
    (1, [0, 1])
    """

    name = "ensemble"

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        super().__init__(lr, epochs, batch_size, weight_decay, seed, 0, hidden, consolidate_every)
        self.heads: list[Net] = []  # frozen heads of past experiences
        self.owner = np.zeros(0, dtype=np.int64)  # per class: its head (len(heads): current)

    def add_classes(self, n_classes: int) -> None:
        super().add_classes(n_classes)
        self.owner = grow_rows(self.owner, n_classes)

    def consolidate(self) -> None:
        self.heads = [*self.heads, self.net]
        fresh = Net(self.hidden, self.sgd.seed)
        fresh.grow(len(self.counts), self.dim)
        self.net = fresh

    def fit(self, x: FloatArray, labels: IntArray) -> None:
        super().fit(x, labels)
        self.owner[labels] = len(self.heads)

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.dim)
        scores = np.zeros((len(x), len(self.counts)), dtype=np.float64)
        for i, head in enumerate([*self.heads, self.net]):
            mine = np.flatnonzero((self.owner == i) & (self.counts > 0))
            if len(mine):
                scores[:, mine] = head.scores(x)[:, mine]
        return masked_logits(scores, self.counts > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        return energy(self.logits_many(z))

    def snapshot(self) -> Any:
        clone = copy.copy(self)
        clone.net, clone.counts, clone.owner = (
            self.net.copy(),
            self.counts.copy(),
            self.owner.copy(),
        )
        clone.heads = list(self.heads)  # past heads never change
        return clone

    def more_state(self) -> State:
        return {"heads": [h.state() for h in self.heads], "owner": self.owner.copy()}

    def load_more(self, state: State) -> None:
        self.heads = []
        for h in state.get("heads", []):
            net = Net(self.hidden, self.sgd.seed)
            net.load(h)
            self.heads.append(net)
        self.owner = np.array(state.get("owner", np.zeros(len(self.counts))), dtype=np.int64)
