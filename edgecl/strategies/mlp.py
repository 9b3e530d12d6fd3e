"""A softmax head with one ReLU hidden layer (or none), trained by Adam, in NumPy."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import BoolArray, grow_rows, masked_softmax
from edgecl.types import FloatArray, IntArray, State

#: Parameter names, input side first; ``w1``/``b1`` are absent without a hidden layer.
HIDDEN = ("w1", "b1")
OUTPUT = ("w2", "b2")


def glorot(rng: np.random.Generator, rows: int, cols: int, fan: int) -> FloatArray:
    """Glorot-normal rows (std ``sqrt(2 / (fan_in + fan_out))``), as the reference inits."""
    out: FloatArray = rng.normal(scale=np.sqrt(2.0 / fan), size=(rows, cols)).astype(np.float32)
    return out


class AdamMLP:
    """``softmax(W2 relu(W1 x + b1) + b2)`` over trained classes, or ``softmax(W2 x + b2)``
    with ``hidden == 0``; Adam (Kingma & Ba 2015, PyTorch's defaults) on cross-entropy.

    Weights are Glorot-normal and biases 1, as in the ExStream reference code; an output
    row for a class added later is drawn when the class arrives.

    >>> net = AdamMLP(hidden=4, lr=0.05, seed=0)
    >>> net.grow(2, 2)
    >>> x, y = np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1])
    >>> for _ in range(50):
    ...     net.step(x, y, np.array([True, True]))
    >>> net.scores(x).argmax(axis=1).tolist()
    [0, 1]
    """

    def __init__(self, hidden: int, lr: float, weight_decay: float = 0.0, seed: int = 0):
        self.hidden, self.lr, self.weight_decay, self.seed = hidden, lr, weight_decay, seed
        self.params: dict[str, FloatArray] = {}
        self.moments: dict[str, FloatArray] = {}
        self.t = 0

    def grow(self, n_classes: int, dim: int) -> None:
        """Output rows up to ``n_classes`` (new ones drawn); the first call fixes ``dim``."""
        if not self.params:
            width = self.hidden or dim
            if self.hidden:
                rng = np.random.default_rng([self.seed, 0])
                self.params["w1"] = glorot(rng, self.hidden, dim, dim + self.hidden)
                self.params["b1"] = np.ones(self.hidden, dtype=np.float32)
            self.params["w2"] = np.zeros((0, width), dtype=np.float32)
            self.params["b2"] = np.zeros(0, dtype=np.float32)
            for name, p in self.params.items():
                self.moments["m_" + name] = np.zeros_like(p)
                self.moments["v_" + name] = np.zeros_like(p)
        have, width = self.params["w2"].shape
        if n_classes <= have:
            return
        # Each class's row from its own seed: the state holds no generator.
        new = [
            glorot(np.random.default_rng([self.seed, 1, c]), 1, width, width + n_classes)
            for c in range(have, n_classes)
        ]
        self.params["w2"] = np.vstack([self.params["w2"], *new])
        self.params["b2"] = np.concatenate(
            [self.params["b2"], np.ones(n_classes - have, np.float32)]
        )
        for key in ("m_w2", "v_w2", "m_b2", "v_b2"):
            self.moments[key] = grow_rows(self.moments[key], n_classes)

    def _features(self, x: FloatArray) -> FloatArray:
        if not self.hidden:
            return x
        out: FloatArray = np.maximum(x @ self.params["w1"].T + self.params["b1"], 0.0)
        return out

    def scores(self, x: FloatArray) -> FloatArray:
        out: FloatArray = self._features(x) @ self.params["w2"].T + self.params["b2"]
        return out

    def proba(self, x: FloatArray, trained: BoolArray) -> FloatArray:
        return masked_softmax(self.scores(x), trained)

    def step(self, x: FloatArray, y: IntArray, trained: BoolArray) -> None:
        """One Adam step on the mean cross-entropy of ``(x, y)`` over ``trained`` classes."""
        h = self._features(x)
        g = masked_softmax(h @ self.params["w2"].T + self.params["b2"], trained)
        g[np.arange(len(y)), y] -= 1.0
        g /= len(y)
        grads = {"w2": g.T @ h, "b2": g.sum(axis=0)}
        if self.hidden:
            dh = (g @ self.params["w2"]) * (h > 0)
            grads["w1"], grads["b1"] = dh.T @ x, dh.sum(axis=0)
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        for name, grad in grads.items():
            p = self.params[name]
            if self.weight_decay:
                grad = grad + self.weight_decay * p
            m, v = self.moments["m_" + name], self.moments["v_" + name]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            m_hat = m / (1 - b1**self.t)
            v_hat = v / (1 - b2**self.t)
            p -= (self.lr * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)

    def state(self) -> State:
        return {
            **{k: v.copy() for k, v in self.params.items()},
            **{k: v.copy() for k, v in self.moments.items()},
            "t": self.t,
        }

    def load(self, state: State) -> None:
        names = [*(HIDDEN if self.hidden else ()), *OUTPUT]
        self.params = {k: np.array(state[k], dtype=np.float32) for k in names if k in state}
        self.moments = {
            f"{s}_{k}": np.array(state[f"{s}_{k}"], dtype=np.float32)
            for k in self.params
            for s in ("m", "v")
        }
        self.t = int(state["t"])
