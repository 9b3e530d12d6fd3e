"""The network of the SGD-trained softmax heads: ReLU hidden layers (none by default) and
an output row per class, with a forward pass that keeps what the backward pass needs.

Parameters live in one dict by name, input side first: ``w0, b0, ..., wL, bL``; the last
pair is the output layer (one row per class, zero when the class arrives). Regularisers
(EWC, SI, LwF, P&C) read and write them by name and add penalty gradients by name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl.strategies.linear import SGD, grow_rows, positive_int
from edgecl.types import FloatArray, IntArray, State

Array = npt.NDArray[Any]
Params = dict[str, Array]
#: ``(grads of the task loss, parameter changes)`` after every SGD step (SI's path integral).
OnStep = Callable[[Params, Params], None]
#: Extra gradient on the logits of a minibatch ``(rows of x, logits)``: LwF's distillation.
LogitGrad = Callable[[IntArray, FloatArray], FloatArray]
#: Penalty gradients by name for the working parameters (EWC, SI).
Penalty = Callable[[Params], Params]


def hidden_widths(hidden: object) -> tuple[int, ...]:
    """``hidden`` as a tuple of layer widths (a list or tuple of integers ``>= 1``).

    >>> hidden_widths([64, 32])
    (64, 32)
    >>> hidden_widths(-1)
    Traceback (most recent call last):
    ...
    ValueError: hidden must be a list of layer widths (integers >= 1), got -1
    """
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ValueError(f"hidden must be a list of layer widths (integers >= 1), got {hidden!r}")
    try:
        return tuple(positive_int("hidden", h) for h in hidden)
    except ValueError:
        raise ValueError(
            f"hidden must be a list of layer widths (integers >= 1), got {hidden!r}"
        ) from None


def out_name(params: Params) -> tuple[str, str]:
    """The names of the output layer's weights and bias."""
    last = len(params) // 2 - 1
    return f"w{last}", f"b{last}"


@dataclass
class Cache:
    """What :func:`forward` keeps for :func:`backward`: each layer's input."""

    inputs: list[Array]


def forward(params: Params, x: Array) -> tuple[Array, Cache]:
    """Logits ``(N, K)`` (float32) of ``x`` and the cache for :func:`backward`."""
    n_layers = len(params) // 2
    inputs = [x]
    h = x
    for i in range(n_layers - 1):
        h = np.maximum(h @ params[f"w{i}"].T + params[f"b{i}"], 0.0)
        inputs.append(h)
    last = n_layers - 1
    logits: FloatArray = h @ params[f"w{last}"].T
    logits += params[f"b{last}"]
    return logits, Cache(inputs)


def backward(params: Params, cache: Cache, g: FloatArray, weight_decay: float = 0.0) -> Params:
    """Gradients by name, given ``g`` = d loss / d logits (already averaged over the batch);
    ``weight_decay`` adds ``weight_decay * w`` to every weight's (never a bias's)."""
    grads: Params = {}
    for i in reversed(range(len(params) // 2)):
        h = cache.inputs[i]
        w = params[f"w{i}"]
        grads[f"w{i}"] = g.T @ h
        if weight_decay:
            grads[f"w{i}"] += weight_decay * w
        grads[f"b{i}"] = g.sum(axis=0)
        if i:
            g = (g @ w) * (h > 0)
    return grads


def softmax_grad(logits: FloatArray, y: IntArray) -> FloatArray:
    """d mean cross-entropy / d logits of a minibatch (``logits`` is changed in place)."""
    logits -= np.max(logits, axis=1, keepdims=True)
    p = np.exp(logits)
    p /= np.sum(p, axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    out: Array = p / len(y)
    return out


def soft_max(logits: FloatArray) -> FloatArray:
    """Row softmax (a new array)."""
    e = np.exp(logits - np.max(logits, axis=1, keepdims=True))
    out: FloatArray = e / np.sum(e, axis=1, keepdims=True)
    return out


def sgd_net(
    params: Params,
    x: FloatArray,
    y: IntArray,
    sgd: SGD,
    rng: np.random.Generator,
    *,
    lr: float | None = None,
    epochs: int | None = None,
    logit_grad: LogitGrad | None = None,
    penalty: Penalty | None = None,
    on_step: OnStep | None = None,
    targets: FloatArray | None = None,
) -> None:
    """Minibatch SGD on softmax cross-entropy over the columns of ``params``' output layer,
    updating ``params`` in place; with no hidden layer and no hooks, the very operations of
    :func:`~edgecl.strategies.linear.sgd_softmax`. ``logit_grad``, ``penalty`` and
    ``on_step`` are the regularisers' hooks (see their types above); with ``targets``
    (``(N, K)`` probabilities) the cross-entropy is against them instead of ``y``
    (distillation)."""
    lr = sgd.lr if lr is None else lr
    epochs = sgd.epochs if epochs is None else epochs
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, sgd.batch_size):
            idx = order[start : start + sgd.batch_size]
            logits, cache = forward(params, x[idx])
            if targets is None:
                g = softmax_grad(logits.copy() if logit_grad else logits, y[idx])
            else:
                g = (soft_max(logits) - targets[idx]) / len(idx)  # type: ignore[assignment]
            if logit_grad is not None:
                g = g + logit_grad(idx, logits)
            grads = backward(params, cache, g, sgd.weight_decay)
            total = grads
            if penalty is not None:
                extra = penalty(params)
                total = {k: v + extra[k] if k in extra else v for k, v in grads.items()}
            before = {k: p.copy() for k, p in params.items()} if on_step else {}
            for name, grad in total.items():
                params[name] -= (lr * grad).astype(params[name].dtype)
            if on_step is not None:
                on_step(grads, {k: params[k] - before[k] for k in params})


class Net:
    """The parameters of a head: ``hidden`` ReLU layers, then one output row per class.

    Hidden layers are drawn (He-normal, zero biases) from the seed alone when the latent
    dimension is first known, so the state holds no generator; output rows start at zero.

    >>> net = Net((3,), seed=0)
    >>> net.grow(2, 4)
    >>> sorted((k, v.shape) for k, v in net.params.items())
    [('b0', (3,)), ('b1', (2,)), ('w0', (3, 4)), ('w1', (2, 3))]
    """

    def __init__(self, hidden: tuple[int, ...] = (), seed: int = 0) -> None:
        self.hidden, self.seed = hidden, seed
        self.params: Params = {}
        self.n_classes = 0

    @property
    def dim(self) -> int:
        return int(self.params["w0"].shape[1]) if self.params else 0

    def grow(self, n_classes: int, dim: int = 0) -> None:
        """Output rows up to ``n_classes``; ``dim`` (once known) draws the hidden layers."""
        self.n_classes = max(self.n_classes, n_classes)
        if not self.params and dim:
            self.params = self.fresh(self.n_classes, dim)
        elif self.params:
            w, b = out_name(self.params)
            self.params[w] = grow_rows(self.params[w], self.n_classes)
            self.params[b] = grow_rows(self.params[b], self.n_classes)

    def fresh(self, n_classes: int, dim: int) -> Params:
        """Newly initialised parameters (the same for the same seed and shapes)."""
        params: Params = {}
        fan_in = dim
        for i, width in enumerate(self.hidden):
            rng = np.random.default_rng([self.seed, 1, i])
            scale = np.sqrt(2.0 / fan_in)
            params[f"w{i}"] = rng.normal(scale=scale, size=(width, fan_in)).astype(np.float32)
            params[f"b{i}"] = np.zeros(width, dtype=np.float32)
            fan_in = width
        last = len(self.hidden)
        params[f"w{last}"] = np.zeros((n_classes, fan_in), dtype=np.float32)
        params[f"b{last}"] = np.zeros(n_classes, dtype=np.float32)
        return params

    def scores(self, x: FloatArray) -> FloatArray:
        """Logits of every class (no masking), float32."""
        if not self.params:
            return np.zeros((len(x), self.n_classes), dtype=np.float32)
        return forward(self.params, x)[0]

    def view(self, cols: IntArray) -> Params:
        """Working parameters over the output rows ``cols``: hidden layers are the live
        arrays (trained in place), the output layer a copy of those rows (see :meth:`put`)."""
        w, b = out_name(self.params)
        out = dict(self.params)
        out[w], out[b] = self.params[w][cols], self.params[b][cols]
        return out

    def put(self, cols: IntArray, work: Params) -> None:
        """Write the output rows of working parameters back (:meth:`view`)."""
        w, b = out_name(self.params)
        self.params[w][cols], self.params[b][cols] = work[w], work[b]
        for k, v in work.items():
            if k not in (w, b):
                self.params[k] = v

    def copy(self) -> Net:
        clone = Net(self.hidden, self.seed)
        clone.params = {k: v.copy() for k, v in self.params.items()}
        clone.n_classes = self.n_classes
        return clone

    def state(self) -> State:
        return {"params": {k: v.copy() for k, v in self.params.items()}, "n": self.n_classes}

    def load(self, state: State) -> None:
        self.params = {str(k): np.array(v, dtype=np.float32) for k, v in state["params"].items()}
        self.n_classes = int(state["n"])


def order(params: Params) -> list[str]:
    """Parameter names input side first, ``w0, b0, w1, b1, ...`` (a gradient vector's)."""
    return [f"{p}{i}" for i in range(len(params) // 2) for p in "wb"]


def split_state(net: Net, n_classes: int) -> tuple[Array, Array, Params]:
    """``(w, b, layers)``: the output layer (``(n_classes, 0)`` and zeros before the
    latent dimension is known, as the linear head's) and copies of the hidden layers."""
    if not net.params:
        return np.zeros((n_classes, 0), np.float32), np.zeros(n_classes, np.float32), {}
    w, b = out_name(net.params)
    layers = {k: v.copy() for k, v in net.params.items() if k not in (w, b)}
    return net.params[w].copy(), net.params[b].copy(), layers


def joined(net: Net, n_classes: int, w: object, b: object, layers: State) -> Net:
    """``net`` (its hidden widths and seed, no parameters) loaded from :func:`split_state`."""
    out = Net(net.hidden, net.seed)
    out.n_classes = n_classes
    ws, bs = np.array(w, dtype=np.float32), np.array(b, dtype=np.float32)
    if ws.ndim == 2 and ws.shape[1]:
        out.params = {str(k): np.array(v, dtype=np.float32) for k, v in layers.items()}
        last = len(out.params) // 2
        out.params[f"w{last}"], out.params[f"b{last}"] = ws, grow_rows(bs, len(ws))
    return out
