"""GDumb's training schedule on a linear softmax head: SGD with momentum, a warm-up epoch,
warm restarts (SGDR) and gradient-norm clipping, as the GDumb reference code trains."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgecl.types import FloatArray, IntArray


def sgdr_lr(epoch: int, lr: float, min_lr: float, t0: int = 1, t_mult: int = 2) -> float:
    """Learning rate of ``epoch`` (from 0) in GDumb's schedule: ``lr / 10`` for the warm-up
    epoch, ``lr`` for the next, then cosine annealing from ``lr`` to ``min_lr`` restarted
    after 1, 2, 4, ... epochs (``T0 = 1``, ``Tmult = 2``: PyTorch's
    ``CosineAnnealingWarmRestarts``, stepped once per epoch from the third epoch on).

    >>> [round(sgdr_lr(e, 0.1, 0.0), 4) for e in range(8)]
    [0.01, 0.1, 0.1, 0.05, 0.1, 0.0854, 0.05, 0.0146]
    """
    if epoch == 0:
        return lr * 0.1
    k = epoch - 1  # scheduler steps taken
    if k < t0:
        t_cur, t_i = k, t0
    else:
        n = int(math.log(k / t0 * (t_mult - 1) + 1, t_mult))
        t_cur, t_i = k - t0 * (t_mult**n - 1) // (t_mult - 1), t0 * t_mult**n
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def train_sgdr(
    w: FloatArray,
    b: FloatArray,
    x: FloatArray,
    y: IntArray,
    *,
    lr: float,
    min_lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float,
    momentum: float,
    clip: float,
    rng: np.random.Generator,
    on_epoch: Callable[[int], bool] = lambda epoch: True,
) -> None:
    """Softmax cross-entropy on ``W x + b`` (updated in place), ``y`` indexing rows.

    Each step as PyTorch's ``clip_grad_norm_`` then ``SGD`` do it: the gradient of
    ``(w, b)`` is scaled down to norm ``clip`` if above (``clip == 0``: never), weight
    decay is added, then ``v = momentum v + g`` and ``p -= lr v``. ``on_epoch(epoch)``
    after each epoch; False stops.
    """
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    n = len(x)
    for epoch in range(epochs):
        step = sgdr_lr(epoch, lr, min_lr)
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx]
            logits = xb @ w.T + b
            logits -= np.max(logits, axis=1, keepdims=True)
            p = np.exp(logits)
            p /= np.sum(p, axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            g = p / len(idx)
            gw, gb = g.T @ xb, g.sum(axis=0)
            norm = math.sqrt(float(np.sum(gw * gw)) + float(np.sum(gb * gb)))
            if clip and norm > clip:
                gw, gb = gw * (clip / norm), gb * (clip / norm)
            if weight_decay:
                gw, gb = gw + weight_decay * w, gb + weight_decay * b
            vw *= momentum
            vw += gw
            vb *= momentum
            vb += gb
            w -= (step * vw).astype(w.dtype)
            b -= (step * vb).astype(b.dtype)
        if not on_epoch(epoch):
            return
