"""Generative replay on latents: class-conditional Gaussians stand in for stored samples."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.generator import ClassGaussians
from edgecl.strategies.gradient import GradientHead, gradient
from edgecl.strategies.linear import positive_int
from edgecl.strategies.net import Params
from edgecl.strategies.stores import NONE
from edgecl.types import FloatArray, IntArray, State


class GenerativeReplay(GradientHead):
    """Shin et al. 2017's deep generative replay, at the latent level: a generator replaces
    the replay memory, and each learning step mixes generated latents of the classes
    learned before with the new batch, labelled by the class they were generated for.

    The generator is :class:`~edgecl.strategies.generator.ClassGaussians`: per class, a
    mixture of ``components`` diagonal Gaussians fitted streaming on every latent learned
    (Welford), so no sample is kept (its paper store is none) and it holds
    :meth:`nbytes` bytes, independent of how many samples were learned. The head is a
    softmax over trained classes (linear, or ``hidden`` ReLU layers first), trained by
    minibatch SGD on the new batch plus ``generated`` latents whose classes are drawn
    uniformly among the classes fitted before the batch; the batch is then fitted into
    the generator.

    Hyper-parameters (defaults):

    - ``generated`` (32): latents generated per call (as ``latent_replay``'s 32 replayed).
    - ``components`` (1): Gaussians per class (more: a small mixture).
    - ``hidden`` (none): widths of ReLU layers before the output layer (an MLP head).
    - ``lr`` (0.01), ``epochs`` (3), ``batch_size`` (64), ``seed`` (0: minibatch order and
      generation): ``latent_replay``'s.

    Deviations forced by latents and a stream: Shin et al. train a GAN on images and label
    replayed images with the previous solver; here the backbone's latents of a class are
    close enough to a Gaussian mixture that a class-conditional one is fitted exactly and
    streaming, and its samples carry their class (conditional replay), so no old solver is
    kept. No task boundary is needed: "old" is every class fitted before the batch.

    >>> s = GenerativeReplay(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[2, 0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "generative_replay"
    paper_store = NONE

    def __init__(
        self,
        generated: int = 32,
        components: int = 1,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 64,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, hidden)
        self.generated = positive_int("generated", generated, minimum=0)
        self.components = positive_int("components", components)
        self.generator = ClassGaussians(self.components)

    def add_classes(self, n_classes: int) -> None:
        super().add_classes(n_classes)
        self.generator.grow(n_classes, self.dim)

    def replayed(self, labels: IntArray, old: IntArray) -> tuple[FloatArray, IntArray]:
        """This call's generated latents and their classes, drawn among ``old``."""
        if not len(old) or not self.generated:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64)
        rng = np.random.default_rng([self.sgd.seed, self.calls, 1])
        classes = old[rng.integers(len(old), size=self.generated)]
        return self.generator.sample(classes, rng), classes

    def old_classes(self, labels: IntArray) -> IntArray:
        """The classes the generated latents are drawn among: every fitted class."""
        out: IntArray = np.flatnonzero(self.generator.fitted)
        return out

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = self.check(z, y)
        if not len(x):
            return
        self.begin(x, labels)
        self.generator.grow(len(self.counts), x.shape[1])
        xg, yg = self.replayed(labels, self.old_classes(labels))
        self.train(x, labels, xg, yg)
        self.generator.fit(x, labels)

    def train(self, x: FloatArray, labels: IntArray, xg: FloatArray, yg: IntArray) -> None:
        """SGD on the batch and the generated latents alike."""

        def direction(
            work: Params, xb: FloatArray, yb: IntArray, cols: IntArray, idx: IntArray
        ) -> Params:
            return gradient(work, xb, yb)

        self.descend(np.concatenate([x, xg]), np.r_[labels, yg], direction)

    def nbytes(self) -> int:
        """Bytes the generator holds (what replaces the replay memory)."""
        return self.generator.nbytes()

    def snapshot(self) -> GenerativeReplay:
        frozen = super().snapshot()
        frozen.generator = self.generator.copy()
        return frozen

    def state_dict(self) -> State:
        return {**super().state_dict(), "generator": self.generator.state_dict()}

    def load_state_dict(self, state: State) -> None:
        super().load_state_dict(state)
        self.generator.load_state_dict(state["generator"])
