"""GEM: project the gradient so that no past experience's memory loss rises."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.gradient import MemoryHead, flat, gradient, memory_size_option, unflat
from edgecl.strategies.linear import positive_float
from edgecl.strategies.net import Params
from edgecl.strategies.stores import PaperStore
from edgecl.types import Float64Array, FloatArray, IntArray


def solve_dual(
    p: Float64Array, q: Float64Array, margin: float, tol: float = 1e-10, max_iter: int = 10_000
) -> Float64Array:
    """``argmin_v 1/2 v'Pv + q'v`` subject to ``v >= margin``, by projected coordinate
    descent (Gauss-Seidel on a convex box-constrained QP; ``P`` is the small positive
    semi-definite Gram matrix of the experiences' gradients). Stops when no coordinate
    moves by more than ``tol`` times the largest.

    >>> solve_dual(np.eye(2), np.array([-1.0, 1.0]), 0.0).tolist()
    [1.0, 0.0]
    """
    v = np.full(len(q), margin, dtype=np.float64)
    diag = np.diag(p)
    for _ in range(max_iter):
        moved = 0.0
        for i in range(len(q)):
            if diag[i] <= 0:  # a zero gradient constrains nothing
                continue
            new = max(margin, v[i] - (p[i] @ v + q[i]) / diag[i])
            moved = max(moved, abs(new - v[i]))
            v[i] = new
        if moved <= tol * max(1.0, float(np.max(np.abs(v)))):
            break
    return v


def project(g: Float64Array, memories: Float64Array, margin: float = 0.0) -> Float64Array:
    """GEM's projection of ``g`` given one gradient per past experience (rows of
    ``memories``): ``g`` itself if no dot product is negative, else ``g + M'v`` with ``v``
    the dual solution (:func:`solve_dual` with ``P = MM'``, ``q = Mg``), the closest
    gradient to ``g`` whose dot product with every row is >= 0 (``margin`` > 0 adds at
    least ``margin`` of each row, as the paper's γ).

    >>> project(np.array([1.0, -1.0]), np.array([[0.0, 1.0]])).tolist()
    [1.0, 0.0]
    """
    if not len(memories) or np.all(memories @ g >= 0):
        return g
    v = solve_dual(memories @ memories.T, memories @ g, margin)
    return np.asarray(g + memories.T @ v, dtype=np.float64)


class GEM(MemoryHead):
    """Gradient Episodic Memory (Lopez-Paz & Ranzato 2017) on a softmax head over
    latents.

    Each SGD step computes the gradient ``g`` of the new minibatch's cross-entropy and, for
    every past experience with items in the memory draw, the gradient ``g_k`` of the
    cross-entropy on those items; if some ``g . g_k < 0`` the step follows the closest
    vector with every such dot product >= 0, found by solving the dual QP (one variable per
    past experience, :func:`solve_dual`: NumPy only, tolerance 1e-10 relative). The memory
    is never trained on.

    Hyper-parameters (defaults):

    - ``memory_size`` (256): items the learner draws from its store per call (the paper
      keeps 256 per task on MNIST; here the draw is shared by the past experiences).
    - ``margin`` (0.5): the paper's γ, the least weight of each experience's gradient once
      a projection happens (0: the plain projection).
    - ``hidden`` (none): widths of ReLU layers before the output layer (an MLP head;
      the projected gradient then covers them too).
    - ``lr`` (0.01), ``epochs`` (1: the paper's single pass), ``batch_size`` (10: the
      paper's), ``seed`` (0: minibatch order).

    Deviations forced by a stream of latents: the paper's memory keeps the last items of
    each task, labelled by task; here the learner's store (its paper store: class-balanced,
    which keeps every class, hence every experience, in memory) is drawn at random and each
    item's experience is its class's: an experience begins with each batch that brings a
    class not seen before and owns the classes it brought. The current experience's items
    are not constraints (as in the paper, only past tasks are). The paper's ``eps`` added
    to the Gram matrix's diagonal is left out so the constraints hold to the tolerance.

    >>> s = GEM(lr=0.5, epochs=5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[2, 0]], np.float32)).argmax(axis=1).tolist()
    [0]
    """

    name = "gem"
    paper_store = PaperStore("class_balanced")

    def __init__(
        self,
        memory_size: int = 256,
        margin: float = 0.5,
        lr: float = 0.01,
        epochs: int = 1,
        batch_size: int = 10,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, hidden)
        self.memory_size = memory_size_option(memory_size)
        self.margin = positive_float("margin", margin, allow_zero=True)

    def learn_with_memory(self, z: FloatArray, y: IntArray, zm: FloatArray, ym: IntArray) -> None:
        x, labels = self.check(z, y)
        xm, lm = self.check_memory(zm, ym)
        if not len(x):
            return
        self.begin(x, labels)
        keep = self.past(lm)
        xm, lm = xm[keep], lm[keep]
        groups = [self.opened[lm] == e for e in np.unique(self.opened[lm])]

        def direction(
            work: Params, xb: FloatArray, yb: IntArray, cols: IntArray, idx: IntArray
        ) -> Params:
            g = gradient(work, xb, yb)
            if not groups:
                return g
            local = np.searchsorted(cols, lm)
            rows = [flat(gradient(work, xm[m], local[m])) for m in groups]
            return unflat(project(flat(g), np.stack(rows), self.margin), g)

        self.descend(x, labels, direction)
