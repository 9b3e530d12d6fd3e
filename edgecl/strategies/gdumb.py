"""GDumb (Prabhu, Torr & Dokania, ECCV 2020): a head retrained from scratch on memory only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import frozen_copy
from edgecl.strategies.linear import (
    SGD,
    BoolArray,
    Float64Array,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_float,
)
from edgecl.strategies.sgdr import train_sgdr
from edgecl.types import FloatArray, IntArray, State


@dataclass(frozen=True)
class _Head:
    """A trained head; replaced whole, never changed in place (the swap is one assignment)."""

    w: FloatArray
    b: FloatArray
    trained: BoolArray  # classes the memory held when it was trained

    def state(self) -> State:
        return {"w": self.w.copy(), "b": self.b.copy(), "trained": self.trained.copy()}

    @classmethod
    def from_state(cls, state: State) -> _Head:
        return cls(
            np.array(state["w"], dtype=np.float32),
            np.array(state["b"], dtype=np.float32),
            np.array(state["trained"], dtype=bool),
        )


class GDumb(Configurable):
    """GDumb: the memory is the model's only teacher; the head is retrained on request.

    GDumb is two halves. The memory half is the ``class_balanced`` store
    (:class:`~edgecl.replay.class_balanced.ClassBalancedStore`, the paper's greedy
    class-balanced sampler). This half trains a head from scratch on everything the memory
    holds, when asked: :meth:`edgecl.Learner.retrain` or the daemon's ``POST /retrain``
    call :meth:`retrain`, which trains a new head off to the side (reporting progress, and
    stopping when told to) and returns it as state; loading that state swaps the head in
    one assignment. Until then predictions come from the last trained head. Classes that
    were not in memory when it was trained (learned since) are answered by nearest class
    mean over running means of every sample learned, which ``learn_many`` keeps up to date
    (that is all ``learn_many`` does): the NCM probabilities of the new classes are kept,
    and the NCM mass of the head's classes is shared out as the head's softmax says.
    Before the first retrain everything is NCM.

    The paper trains a whole CNN; here the head is linear softmax on frozen latents (no
    augmentation such as CutMix applies to latents), trained with the reference code's
    schedule (:func:`~edgecl.strategies.sgdr.train_sgdr`): SGD with momentum 0.9, one
    warm-up epoch at ``lr / 10``, then cosine annealing from ``lr`` to ``min_lr`` with warm
    restarts (``T0 = 1``, ``Tmult = 2``), gradients clipped to norm 10.

    Hyper-parameters (defaults):

    - ``lr`` (0.01) and ``min_lr`` (0.0001): top and bottom of the schedule, the
      reference's ratio of 100; the reference's 0.05 trains a CNN from scratch, and on
      latents 0.003 to 0.01 did best on validation splits (see BENCHMARKS.md);
    - ``epochs`` (32): passes over the memory per retrain; 4, 8, 16, 32, 64, ... end at
      the bottom of a restart cycle;
    - ``momentum`` (0.9) and ``clip`` (10.0, 0 for none): the reference's;
    - ``batch_size`` (16, the paper's) and ``weight_decay`` (1e-6, the paper's);
    - ``temperature`` (1.0): NCM scores are ``-distance / temperature``;
    - ``seed`` (0): minibatch order (with the number of retrains so far).

    >>> s = GDumb()
    >>> s.add_classes(2)
    >>> z, y = np.array([[0, 0], [4, 4]], np.float32), np.array([0, 1])
    >>> s.learn_many(z, y)
    >>> s.load_state_dict(s.retrain(z, y, lambda fraction: True))  # the atomic swap
    >>> s.retrains, s.predict_proba_many(np.array([[3.5, 3.9]], np.float32)).argmax().item()
    (1, 1)
    """

    name = "gdumb"
    replay_size = 0

    def __init__(
        self,
        lr: float = 0.01,
        min_lr: float = 0.0001,
        epochs: int = 32,
        batch_size: int = 16,
        weight_decay: float = 1e-6,
        temperature: float = 1.0,
        seed: int = 0,
        momentum: float = 0.9,
        clip: float = 10.0,
    ) -> None:
        self.sgd = SGD(lr, epochs, batch_size, weight_decay, momentum, seed)
        self.clip = positive_float("clip", clip, allow_zero=True)
        self.min_lr = positive_float("min_lr", min_lr, allow_zero=True)
        if self.min_lr > self.sgd.lr:
            raise ValueError(f"min_lr must be at most lr={lr}, got {min_lr!r}")
        self.temperature = positive_float("temperature", temperature)
        self.means = np.zeros((0, 0), dtype=np.float64)
        self.counts = np.zeros(0, dtype=np.int64)
        self.retrains = 0
        self._head: _Head | None = None

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def add_classes(self, n_classes: int) -> None:
        self.means = grow_rows(self.means, n_classes)
        self.counts = grow_rows(self.counts, n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        """Fold samples into the running class means; the head changes only by retraining."""
        x, labels = check_batch(z, y, len(self.counts), self.dim)
        if not len(x):
            return
        if self.dim == 0:
            self.means = np.zeros((len(self.counts), x.shape[1]))
        for c in np.unique(labels):
            xc = x[labels == c].astype(np.float64)
            n0 = self.counts[c]
            self.means[c] = (self.means[c] * n0 + xc.sum(axis=0)) / (n0 + len(xc))
            self.counts[c] = n0 + len(xc)

    # -- retraining -------------------------------------------------------------------
    def retrain(self, z: FloatArray, y: IntArray, on_progress: Callable[[float], bool]) -> State:
        """A head trained from scratch on ``(z, y)`` (the memory), as a state to load.

        Nothing live changes. ``on_progress(fraction)`` is called after every epoch; when it
        returns False the training stops early (the caller then discards the result).
        """
        x, labels = check_batch(z, y, len(self.counts), self.dim)
        if not len(x):
            raise ValueError("the memory is empty: nothing to retrain from")
        k = len(self.counts)
        w = np.zeros((k, x.shape[1]), dtype=np.float32)
        b = np.zeros(k, dtype=np.float32)
        cols = np.unique(labels)
        ww, bb, local = w[cols], b[cols], np.searchsorted(cols, labels)
        sgd = self.sgd
        train_sgdr(
            ww,
            bb,
            x,
            local,
            lr=sgd.lr,
            min_lr=self.min_lr,
            epochs=sgd.epochs,
            batch_size=sgd.batch_size,
            weight_decay=sgd.weight_decay,
            momentum=sgd.momentum,
            clip=self.clip,
            rng=sgd.rng(self.retrains),
            on_epoch=lambda epoch: on_progress((epoch + 1) / sgd.epochs),
        )
        w[cols], b[cols] = ww, bb
        trained = np.zeros(k, dtype=bool)
        trained[cols] = True
        return {"head": _Head(w, b, trained).state(), "retrains": self.retrains + 1}

    # -- prediction -------------------------------------------------------------------
    def _ncm_scores(self, x: FloatArray) -> Float64Array:
        x64 = x.astype(np.float64)
        d = (
            np.sum(x64**2, axis=1, keepdims=True)
            - 2.0 * x64 @ self.means.T
            + np.sum(self.means**2, axis=1)[None, :]
        )
        out: Float64Array = -np.sqrt(np.maximum(d, 0.0)) / self.temperature
        return out

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        x = check_latents(z, self.dim)
        seen = self.counts > 0
        if self.dim == 0:
            return masked_softmax(np.zeros((len(x), len(self.counts))), seen)
        head = self._head  # read once: a swap meanwhile does not mix two heads
        ncm = masked_softmax(self._ncm_scores(x), seen)
        if head is None:
            return ncm
        in_head = grow_rows(head.trained, len(seen))[: len(seen)] & seen
        if not in_head.any():
            return ncm
        k = len(head.b)
        scores = np.zeros((len(x), len(seen)), dtype=np.float32)
        scores[:, :k] = x @ head.w.T + head.b
        by_head = masked_softmax(scores, in_head)
        if np.array_equal(in_head, seen):
            return by_head
        # Learned since the retrain: NCM keeps their share, the head splits the rest.
        old_mass = ncm[:, in_head].sum(axis=1, keepdims=True)
        out: FloatArray = np.where(in_head[None, :], old_mass * by_head, ncm).astype(np.float32)
        return out

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """Distance to the nearest running class mean (of every sample learned, as NCM's):
        told unseen classes apart better than the head's top probability on the
        validation splits (BENCHMARKS.md)."""
        x = check_latents(z, self.dim)
        if self.dim == 0:
            return np.full(len(x), np.inf)
        near = np.where(self.counts > 0, self._ncm_scores(x), -np.inf).max(axis=1)
        return np.asarray(-near * self.temperature, dtype=np.float64)

    def snapshot(self) -> GDumb:
        """The current head, frozen (see :func:`~edgecl.strategies.base.frozen_copy`;
        a retrain replaces the head whole)."""
        return frozen_copy(self, "means", "counts")

    # -- state ------------------------------------------------------------------------
    def state_dict(self) -> State:
        return {
            "means": self.means.copy(),
            "counts": self.counts.copy(),
            "head": None if self._head is None else self._head.state(),
            "retrains": self.retrains,
        }

    def load_state_dict(self, state: State) -> None:
        """Load a full state, or the head-only state :meth:`retrain` returned (a swap that
        keeps the running means, which may have moved on while the head was trained)."""
        head = None if state["head"] is None else _Head.from_state(state["head"])
        if "means" in state:
            self.means = np.array(state["means"], dtype=np.float64)
            self.counts = np.array(state["counts"], dtype=np.int64)
        self.retrains = int(state["retrains"])
        self._head = head
