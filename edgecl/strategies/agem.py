"""A-GEM: project the gradient so that the loss on a memory draw does not rise."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.gradient import MemoryHead, flat, gradient, memory_size_option, unflat
from edgecl.strategies.net import Params
from edgecl.strategies.stores import PaperStore
from edgecl.types import Float64Array, FloatArray, IntArray


def project(g: Float64Array, g_ref: Float64Array) -> Float64Array:
    """A-GEM's projection: ``g`` itself if ``g . g_ref >= 0``, else
    ``g - (g . g_ref / g_ref . g_ref) g_ref``, whose dot product with ``g_ref`` is 0.

    >>> project(np.array([1.0, -1.0]), np.array([0.0, 1.0])).tolist()
    [1.0, 0.0]
    """
    dot = float(g @ g_ref)
    norm = float(g_ref @ g_ref)
    if dot >= 0 or norm == 0:
        return g
    return np.asarray(g - (dot / norm) * g_ref, dtype=np.float64)


class AGEM(MemoryHead):
    """Averaged GEM (Chaudhry et al. 2019, "Efficient Lifelong Learning with A-GEM") on a
    softmax head over latents.

    Each SGD step computes the gradient ``g`` of the new minibatch's cross-entropy and the
    reference gradient ``g_ref`` of the cross-entropy on the memory items of past
    experiences, both at the current weights; if ``g . g_ref < 0`` the step follows
    ``g - (g . g_ref / g_ref . g_ref) g_ref`` instead (:func:`project`), so to first order
    the memory's loss does not rise. The memory itself is never trained on.

    Hyper-parameters (defaults):

    - ``memory_size`` (256): items the learner draws from its store for ``g_ref`` each
      call, A-GEM's reference batch (256 in the paper's runs).
    - ``hidden`` (none): widths of ReLU layers before the output layer (an MLP head;
      the projected gradient then covers them too).
    - ``lr`` (0.01), ``epochs`` (1: the paper's single pass), ``batch_size`` (10: the
      paper's), ``seed`` (0: minibatch order).

    Deviations forced by a stream of latents: the paper's episodic memory holds past tasks
    only, a ring buffer per task written at its end; here the memory is the learner's store
    (declared as a reservoir: a stream has no task labels to keep a buffer per task by),
    and the reference gradient uses the drawn items whose class
    belongs to an experience before the current one, an experience beginning with each
    batch that brings a class not seen before (so a stream that never brings a new class
    is never projected: that is plain SGD). The draw is made once per ``learn_with_memory``
    call and reused by its minibatch steps, at their current weights.

    >>> s = AGEM(lr=0.5, epochs=5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[2, 0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "agem"
    paper_store = PaperStore("reservoir")

    def __init__(
        self,
        memory_size: int = 256,
        lr: float = 0.01,
        epochs: int = 1,
        batch_size: int = 10,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, hidden)
        self.memory_size = memory_size_option(memory_size)

    def learn_with_memory(self, z: FloatArray, y: IntArray, zm: FloatArray, ym: IntArray) -> None:
        x, labels = self.check(z, y)
        xm, lm = self.check_memory(zm, ym)
        if not len(x):
            return
        self.begin(x, labels)
        keep = self.past(lm)
        xm, lm = xm[keep], lm[keep]

        def direction(
            work: Params, xb: FloatArray, yb: IntArray, cols: IntArray, idx: IntArray
        ) -> Params:
            g = gradient(work, xb, yb)
            if not len(lm):
                return g
            g_ref = flat(gradient(work, xm, np.searchsorted(cols, lm)))
            return unflat(project(flat(g), g_ref), g)

        self.descend(x, labels, direction)
