"""Shared pieces of the NumPy heads: option and input checks, masked softmax, SGD.

Every head here treats a class that has never been trained as absent: its score is
masked to ``-inf`` (probability 0), so a zero-initialised row can never win by accident.
While no class has been trained at all, the probabilities are uniform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl.strategies.base import flat
from edgecl.types import FloatArray, IntArray

Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


# -- option checks ----------------------------------------------------------------------
def positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else ``ValueError`` with a sentence.

    >>> positive_int("epochs", 3)
    3
    >>> positive_int("epochs", 0)
    Traceback (most recent call last):
    ...
    ValueError: epochs must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float ``> 0`` (or ``>= 0``), else ``ValueError``.

    >>> positive_float("lr", 0.1)
    0.1
    >>> positive_float("lr", -1)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0, got -1
    """
    bound = ">= 0" if allow_zero else "> 0"
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else float("nan")  # type: ignore[arg-type]
    if not np.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return number


# -- input checks -----------------------------------------------------------------------
def check_latents(z: FloatArray, dim: int) -> FloatArray:
    """Latents as ``(N, D)`` float32; ``ValueError`` if ``D`` is not the learned ``dim``.

    ``dim == 0`` means the dimension is not known yet (nothing learned).
    """
    x = flat(np.asarray(z))
    if dim and x.shape[1] != dim:
        raise ValueError(
            f"latent dimension mismatch: this head was trained on {dim}-d latents, "
            f"got {x.shape[1]}-d"
        )
    return x


def check_batch(
    z: FloatArray, y: IntArray, n_classes: int, dim: int
) -> tuple[FloatArray, IntArray]:
    """Validated ``(latents (N, D) float32, class indices (N,) int64)`` for ``learn_many``."""
    x = check_latents(z, dim)
    return x, check_classes(y, len(x), n_classes)


def check_classes(y: IntArray, n: int, n_classes: int) -> IntArray:
    """``n`` class indices in ``0..n_classes-1`` as int64, else ``ValueError``."""
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"got {n} latents but labels of shape {labels.shape}")
    if len(labels) and labels.dtype.kind not in "iu":
        raise ValueError(f"class indices must be integers, got dtype {labels.dtype}")
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"class index {int(labels.max())} is out of range for {n_classes} classes; "
            "call add_classes first"
        )
    return labels.astype(np.int64)


def grow_rows(a: npt.NDArray[Any], n_rows: int) -> npt.NDArray[Any]:
    """``a`` with zero rows appended up to ``n_rows`` rows (never shrinks).

    >>> grow_rows(np.ones((1, 2)), 3).tolist()
    [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    """
    missing = n_rows - len(a)
    if missing <= 0:
        return a
    return np.concatenate([a, np.zeros((missing, *a.shape[1:]), dtype=a.dtype)])


# -- prediction -------------------------------------------------------------------------
def masked_softmax(scores: npt.NDArray[Any], trained: BoolArray) -> FloatArray:
    """Row softmax over the trained columns; untrained columns get probability 0.

    >>> masked_softmax(np.array([[1.0, 5.0]]), np.array([True, False])).tolist()
    [[1.0, 0.0]]
    >>> masked_softmax(np.zeros((1, 2)), np.array([False, False])).tolist()
    [[0.5, 0.5]]
    """
    n, k = scores.shape
    if k == 0:
        return np.zeros((n, 0), dtype=np.float32)
    if not trained.any():
        return np.full((n, k), 1.0 / k, dtype=np.float32)
    s = np.where(trained[None, :], scores.astype(np.float64), -np.inf)
    s -= np.max(s, axis=1, keepdims=True)
    e = np.exp(s)
    out: FloatArray = (e / np.sum(e, axis=1, keepdims=True)).astype(np.float32)
    return out


# -- training ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SGD:
    """Minibatch SGD hyper-parameters of a head, checked once.

    Heads take them as plain constructor arguments (so settings and checkpoints name
    ``lr``, ``epochs``, ...) and keep them as one value, ``self.sgd``, which
    :func:`~edgecl.registry.constructor_options` reads them back from.

    >>> SGD(lr=0.1, epochs=2).batch_size
    32
    >>> SGD(lr=0)
    Traceback (most recent call last):
    ...
    ValueError: lr must be a finite number > 0, got 0
    """

    lr: float = 0.01
    epochs: int = 3
    batch_size: int = 32
    weight_decay: float = 0.0
    momentum: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        checked = {
            "lr": positive_float("lr", self.lr),
            "epochs": positive_int("epochs", self.epochs),
            "batch_size": positive_int("batch_size", self.batch_size),
            "weight_decay": positive_float("weight_decay", self.weight_decay, allow_zero=True),
            "momentum": positive_float("momentum", self.momentum, allow_zero=True),
            "seed": positive_int("seed", self.seed, minimum=0),
        }
        if checked["momentum"] >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def rng(self, step: int) -> np.random.Generator:
        """Minibatch order for the ``step``-th training run: a fresh generator from
        ``(seed, step)`` keeps the state plain integers."""
        return np.random.default_rng([self.seed, step])


def sgd_softmax(
    w: FloatArray,
    b: FloatArray | None,
    x: FloatArray,
    y: IntArray,
    sgd: SGD,
    rng: np.random.Generator,
    *,
    lr: float | None = None,
    epochs: int | None = None,
) -> None:
    """Minibatch SGD on softmax cross-entropy, updating ``w`` (K, D) and ``b`` in place.

    ``y`` indexes rows of ``w``; ``b`` may be ``None`` for a head without bias. ``lr``
    and ``epochs`` override ``sgd``'s (a schedule's step).

    >>> w = np.zeros((2, 2), np.float32)
    >>> x = np.array([[1, 0], [0, 1]], np.float32)
    >>> sgd_softmax(w, None, x, np.array([0, 1]), SGD(lr=1.0, epochs=5, batch_size=2),
    ...             np.random.default_rng(0))
    >>> (x @ w.T).argmax(axis=1).tolist()
    [0, 1]
    """
    lr = sgd.lr if lr is None else lr
    epochs = sgd.epochs if epochs is None else epochs
    batch_size, weight_decay = sgd.batch_size, sgd.weight_decay
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb = x[idx]
            logits = xb @ w.T
            if b is not None:
                logits += b
            logits -= np.max(logits, axis=1, keepdims=True)
            p = np.exp(logits)
            p /= np.sum(p, axis=1, keepdims=True)
            p[np.arange(len(idx)), y[idx]] -= 1.0
            g = p / len(idx)
            grad_w = g.T @ xb
            if weight_decay:
                grad_w += weight_decay * w
            w -= (lr * grad_w).astype(w.dtype)
            if b is not None:
                b -= (lr * g.sum(axis=0)).astype(b.dtype)
