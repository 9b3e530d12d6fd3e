"""CWR* (Lomonaco & Maltoni 2017/2019; Lomonaco et al. 2020) on a linear head, in NumPy."""

from __future__ import annotations

import numpy as np

from edgecl.registry import Configurable
from edgecl.strategies.base import energy, frozen_copy, masked_logits
from edgecl.strategies.linear import (
    SGD,
    check_batch,
    check_latents,
    grow_rows,
    masked_softmax,
    positive_int,
)
from edgecl.types import Float64Array, FloatArray, IntArray, State


def consolidate(
    cw: FloatArray, past: IntArray, classes: IntArray, cur: IntArray, tw: FloatArray
) -> None:
    """CWR*'s consolidation, in place: fold trained rows ``tw`` of ``classes`` into ``cw``.

    ``cur[j]`` samples of ``classes[j]`` were in the batch; ``past`` counts those before.

    >>> cw, past = np.zeros((2, 2), np.float32), np.array([0, 0])
    >>> consolidate(cw, past, np.array([0, 1]), np.array([3, 1]), np.eye(2, dtype=np.float32))
    >>> cw.tolist(), past.tolist()
    ([[0.5, -0.5], [-0.5, 0.5]], [3, 1])
    """
    tw = tw - tw.mean()
    wpast = np.sqrt(past[classes] / cur).astype(np.float32)[:, None]
    cw[classes] = (cw[classes] * wpast + tw) / (wpast + 1.0)
    past[classes] += cur


def background(outputs: int, known: int, in_batch: int) -> float:
    """How many zero outputs of the reference's fixed-size layer of ``outputs`` rows (grown
    to the ``known`` classes if there are more) the background row stands for when the
    batch holds ``in_batch`` classes; ``outputs == 0``: one row counted once.

    >>> background(10, 3, 2), background(10, 12, 2), background(0, 3, 2)
    (8.0, 10.0, 1.0)
    """
    if outputs == 0:
        return 1.0
    return float(max(outputs, known) - in_batch)


def tied_row(rows: int, tied: float) -> tuple[FloatArray, FloatArray]:
    """Logit shift ``(rows,)`` and gradient scale ``(rows, 1)`` by which the last of
    ``rows`` output rows stands for ``tied`` identical outputs (``tied == 0``: no such row).

    ``tied`` zero-initialised outputs that no sample belongs to get the same gradient at
    every step, so they stay equal; one row emulates them exactly: the softmax counts its
    logit ``tied`` times (``+ log tied``), so its probability is theirs together, and each
    of them gets ``1 / tied`` of the gradient that probability gives. The gradient reaching
    the features below is unchanged: ``tied`` rows of ``1 / tied`` of it each.

    >>> shift, scale = tied_row(3, 4.0)
    >>> [round(float(v), 3) for v in shift], scale.ravel().tolist()
    ([0.0, 0.0, 1.386], [1.0, 1.0, 0.25])
    """
    shift = np.zeros(rows, dtype=np.float32)
    scale = np.ones((rows, 1), dtype=np.float32)
    if tied:
        shift[-1], scale[-1] = np.log(tied), 1.0 / tied
    return shift, scale


def sgd_tied(
    w: FloatArray, tied: float, x: FloatArray, y: IntArray, sgd: SGD, rng: np.random.Generator
) -> None:
    """Minibatch SGD on softmax cross-entropy, bias-free, updating ``w`` (K, D) in place,
    where the last row stands for ``tied`` identical outputs (:func:`tied_row`; ``tied ==
    0``: no such row). ``y`` indexes the other rows."""
    shift, scale = tied_row(len(w), tied)
    for _ in range(sgd.epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), sgd.batch_size):
            idx = order[start : start + sgd.batch_size]
            xb = x[idx]
            logits = xb @ w.T + shift
            logits -= np.max(logits, axis=1, keepdims=True)
            p = np.exp(logits)
            p /= np.sum(p, axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            grad_w = (p / len(idx)).T @ xb * scale
            if sgd.weight_decay:
                grad_w += sgd.weight_decay * w
            w -= (sgd.lr * grad_w).astype(w.dtype)


class CWRStar(Configurable):
    """Copy-Weight-with-Reinit*: consolidated weights ``cw``, temporary weights ``tw``.

    For each batch with classes ``B`` (``cur[j]`` samples of class ``j``): ``tw[j]`` starts
    from ``cw[j]`` for classes seen before and from zero for new ones (the CWR* rule;
    CWR+ always reset to zero) and is trained for ``epochs`` of SGD on the batch with
    ``B``'s outputs and the rest of the layer (below) active; then, with ``avg``
    the mean of ``tw`` over ``B``'s rows (one number, as in the reference code), for
    every ``j`` in ``B``:
    ``wpast = sqrt(past[j] / cur[j])``,
    ``cw[j] = (cw[j] * wpast + (tw[j] - avg)) / (wpast + 1)``, ``past[j] += cur[j]``.
    Predictions use ``cw`` (no bias, as in the paper); classes never trained score
    ``-inf``.

    Training keeps the reference's output layer (Avalanche's ``CWRStarPlugin``): a
    fixed-size layer of ``outputs`` rows, in which the classes outside the batch are reset
    to zero and train along (pushed down), then are thrown away. Those ``m`` rows stay
    equal, so one row stands for them exactly (:func:`sgd_tied`); ``m`` is
    ``max(outputs, classes known) - len(B)``. They give every batch the same reference,
    so weights consolidated from different batches are comparable, and a single-class
    batch still has a gradient (over its own output alone the softmax is constant).
    ``outputs=0`` keeps one background row counted once, whatever the classes (edgecl's
    rule before issue 17). :class:`~edgecl.strategies.ar1.AR1` trains with the same layer.

    >>> s = CWRStar(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> s.predict_proba_many(np.array([[0, 2]], np.float32)).argmax(axis=1).tolist()
    [1]
    """

    name = "cwr_star"
    replay_size = 0

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 4,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        outputs: int = 10,
    ) -> None:
        self.sgd = SGD(lr, epochs, batch_size, weight_decay, seed=seed)
        self.outputs = positive_int("outputs", outputs, minimum=0)
        self.cw = np.zeros((0, 0), dtype=np.float32)
        self.past = np.zeros(0, dtype=np.int64)
        self.calls = 0

    def add_classes(self, n_classes: int) -> None:
        self.cw = grow_rows(self.cw, n_classes)
        self.past = grow_rows(self.past, n_classes)

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        x, labels = check_batch(z, y, len(self.past), self.cw.shape[1])
        if not len(x):
            return
        if self.cw.shape[1] == 0:
            self.cw = np.zeros((len(self.past), x.shape[1]), dtype=np.float32)
        classes, cur = np.unique(labels, return_counts=True)
        # Classes seen before start from their consolidated weights (CWR*; CWR+ reset
        # them to zero), new ones from zero (cw rows of untrained classes are zero). One
        # zero row stands for the classes outside the batch.
        tied = self.background(len(classes))
        tw = self.cw[classes]
        if tied:
            tw = np.vstack([tw, np.zeros((1, x.shape[1]), dtype=np.float32)])
        local = np.searchsorted(classes, labels)
        sgd_tied(tw, tied, x, local, self.sgd, self.sgd.rng(self.calls))
        consolidate(self.cw, self.past, classes, cur, tw[: len(classes)])
        self.calls += 1

    def background(self, in_batch: int) -> float:
        """How many zero outputs the background row stands for, with ``in_batch`` classes."""
        return background(self.outputs, len(self.past), in_batch)

    def logits_many(self, z: FloatArray) -> Float64Array:
        x = check_latents(z, self.cw.shape[1])
        scores = x @ self.cw.T if self.cw.shape[1] else np.zeros((len(x), len(self.past)))
        return masked_logits(scores, self.past > 0)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return masked_softmax(self.logits_many(z), self.past > 0)

    def novelty_many(self, z: FloatArray) -> Float64Array:
        """The energy of the logits (:func:`~edgecl.strategies.base.energy`)."""
        return energy(self.logits_many(z))

    def snapshot(self) -> CWRStar:
        """The current head, frozen (see :func:`~edgecl.strategies.base.frozen_copy`)."""
        return frozen_copy(self, "cw", "past")

    def state_dict(self) -> State:
        return {"cw": self.cw.copy(), "past": self.past.copy(), "calls": self.calls}

    def load_state_dict(self, state: State) -> None:
        self.cw = np.array(state["cw"], dtype=np.float32)
        self.past = np.array(state["past"], dtype=np.int64)
        self.calls = int(state["calls"])
