"""MIR: replay the stored items whose loss a virtual update on the new batch raises most."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.gradient import MemoryHead, added, gradient, losses, memory_size_option
from edgecl.strategies.linear import positive_int
from edgecl.strategies.net import Params
from edgecl.strategies.stores import PaperStore
from edgecl.types import Float64Array, FloatArray, IntArray


class MIR(MemoryHead):
    """Maximally Interfered Retrieval (Aljundi et al. 2019, "Online Continual Learning
    with Maximally Interfered Retrieval"), ER-MIR, on a softmax head over latents.

    For each minibatch of the new batch: take a virtual SGD step on the minibatch alone
    (``θ_v = θ - lr ∇L_new(θ)``), score each memory candidate by how much its loss rises,
    ``L(θ_v) - L(θ)``, and make the real step on the sum of the minibatch's mean loss and
    the mean loss of the ``replay_k`` candidates that rise most (ties: the earlier drawn).

    Hyper-parameters (defaults):

    - ``memory_size`` (160): candidates the learner draws from its store per call (the
      paper's C).
    - ``replay_k`` (32): candidates replayed per step (the paper's k). The paper uses
      C = 50, k = 10 (C/k = 5) with incoming batches of 10 images; on latents the other
      heads here replay 32 items per batch (``latent_replay``'s default), so k = 32 and C
      keeps the paper's ratio, 5k = 160.
    - ``hidden`` (none): widths of ReLU layers before the output layer (an MLP head;
      the virtual step moves them too).
    - ``lr`` (0.01), ``epochs`` (1: the paper's single pass), ``batch_size`` (10: the
      paper's incoming batch), ``seed`` (0: minibatch order).

    Deviations forced by a stream of latents: the candidates are drawn once per
    ``learn_with_memory`` call (from the learner's store, its paper store: a reservoir, as
    the paper's) and scored again before every minibatch step at the current weights; the
    virtual step and the losses involve the hidden layers and the trained classes' rows
    only (every head here masks classes never trained). Without memory this is plain SGD
    on the batch.

    >>> s = MIR(lr=0.5, epochs=5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[2, 0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "mir"
    paper_store = PaperStore("reservoir")

    def __init__(
        self,
        memory_size: int = 160,
        replay_k: int = 32,
        lr: float = 0.01,
        epochs: int = 1,
        batch_size: int = 10,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, hidden)
        self.memory_size = memory_size_option(memory_size)
        self.replay_k = positive_int("replay_k", replay_k)

    def interference(
        self, params: Params, xb: FloatArray, yb: IntArray, xm: FloatArray, ym: IntArray
    ) -> Float64Array:
        """Each candidate's loss after a virtual step on ``(xb, yb)`` minus before it
        (the step moves every parameter, hidden layers included; the labels index the
        output rows of ``params``)."""
        g = gradient(params, xb, yb)
        virtual = {k: v - self.sgd.lr * g[k] for k, v in params.items()}
        return losses(virtual, xm, ym) - losses(params, xm, ym)

    def select(
        self, params: Params, xb: FloatArray, yb: IntArray, xm: FloatArray, ym: IntArray
    ) -> IntArray:
        """Indices of the ``replay_k`` candidates whose loss rises most, most first."""
        rise = self.interference(params, xb, yb, xm, ym)
        out: IntArray = np.argsort(-rise, kind="stable")[: self.replay_k]
        return out

    def learn_with_memory(self, z: FloatArray, y: IntArray, zm: FloatArray, ym: IntArray) -> None:
        x, labels = self.check(z, y)
        xm, lm = self.check_memory(zm, ym)
        if not len(x):
            return
        self.begin(x, labels)

        def direction(
            work: Params, xb: FloatArray, yb: IntArray, cols: IntArray, idx: IntArray
        ) -> Params:
            g = gradient(work, xb, yb)
            if not len(lm):
                return g
            local = np.searchsorted(cols, lm)
            top = self.select(work, xb, yb, xm, local)
            return added(g, gradient(work, xm[top], local[top]))

        self.descend(x, labels, direction)
