"""SupSup, supermasks in superposition (Wortsman, Ramanujan, Liu, Kembhavi, Rastegari,
Yosinski & Farhadi, NeurIPS 2020).

A head of fixed random weights (ReLU hidden layers over the frozen latents, then one
output row per class, no biases) is never trained: each task learns a *supermask*, the
top ``density`` share of each layer's weights ranked by a learned score (edge-popup,
Ramanujan et al. 2020), the scores trained by SGD through the mask as if it were the
identity (straight-through). Tasks cannot interfere: each has its own scores.

Given no task (task_mode "inferred"), the task is found by the paper's one-shot
criterion ("G" scenario): all taught tasks' masks are superimposed with equal weights
``alpha_i = 1 / k``, the entropy ``H`` of the superimposed head's output is computed for
the sample, and the task is the one whose coefficient lowers it most,
``argmin_i dH / d alpha_i`` (one forward and one backward pass, per sample here).

Hyper-parameters (defaults): ``hidden`` ((128,)): hidden widths; ``density`` (0.5): the
share of each layer's weights a supermask keeps (top-k%); ``lr`` (0.1), ``epochs`` (3),
``batch_size`` (32): SGD on the scores on each learned batch; ``seed`` (0): the random
weights (signed Kaiming constant, ``±sqrt(2 / (density * fan_in))``), the initial scores
(uniform within ``±1 / sqrt(fan_in)``) and minibatch order; ``max_bytes`` (64 MiB): the
budget of weights and scores.

Deviations: the paper stores a finished task's mask as bits; a stream never says a task
is finished and a task may come back, so each task keeps its float32 scores (bytes per
task = 4 per weight of the head; the mask alone would be 1/32 of that). The paper infers
the task of a batch; here of each sample (a batch may mix tasks), which is less sure
(a sample carries less evidence than a batch). The paper's tasks share output units; here
each class has its own row, so for inference a task's k-th class (in index order) is
superimposed on the other tasks' k-th, as the paper's shared units are. Plain SGD, without the
paper's momentum and cosine schedule. Classes are global: the output layer has a row per
class, and a task's mask and softmax cover the rows of the classes it was taught.
"""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import positive_float
from edgecl.strategies.net import hidden_widths, softmax_grad
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import as_f32
from edgecl.types import FloatArray, IntArray, State


def top_mask(scores: FloatArray, density: float) -> FloatArray:
    """1.0 for the ``density`` share of entries with the largest ``|score|``, else 0.0.

    >>> top_mask(np.array([[0.1, -3.0], [2.0, 0.5]], np.float32), 0.5).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    flat = np.abs(scores).ravel()
    keep = max(1, int(round(density * flat.size)))
    if keep >= flat.size:
        return np.ones_like(scores)
    cut = np.partition(flat, flat.size - keep)[flat.size - keep]
    out: FloatArray = (np.abs(scores) >= cut).astype(np.float32)
    return out


class SupSup(TaskHead):
    """Per-task supermasks over a fixed random MLP head.

    >>> head = SupSup(hidden=[16], lr=0.5, epochs=20)
    >>> head.add_classes(4)
    >>> head.add_tasks(2)
    >>> z = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]], np.float32)
    >>> head.learn_tasks(z, np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]))
    >>> head.predict_proba_tasks(z, np.array([0, 0, 1, 1])).argmax(axis=1).tolist()
    [0, 1, 2, 3]
    """

    name = "supsup"
    task_mode = "inferred"

    def __init__(
        self,
        hidden: tuple[int, ...] | list[int] = (128,),
        density: float = 0.5,
        lr: float = 0.1,
        epochs: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        self.hidden = hidden_widths(hidden)
        self.density = positive_float("density", density)
        if self.density > 1:
            raise ValueError(f"density must be in (0, 1], got {density!r}")
        self.weights: list[FloatArray] = []  # per layer (out, in); the last grows by class
        self.scores: list[list[FloatArray]] = []  # per task, per layer

    # -- growth -----------------------------------------------------------------------
    def _draw(self, key: list[int], shape: tuple[int, int], scale: float) -> FloatArray:
        rng = np.random.default_rng([self.sgd.seed, *key])
        return (rng.uniform(-1.0, 1.0, size=shape) * scale).astype(np.float32)

    def _rows(self, layer: int, fan_in: int, start: int, stop: int, task: int) -> FloatArray:
        """Weights (task -1) or a task's scores for output rows ``start..stop-1``."""
        rows = [self._row(layer, fan_in, c, task) for c in range(start, stop)]
        return np.asarray(rows, np.float32).reshape(stop - start, fan_in)

    def _row(self, layer: int, fan_in: int, c: int, task: int) -> FloatArray:
        if task < 0:
            w = np.sign(self._draw([3, layer, c], (1, fan_in), 1.0))
            row: FloatArray = (w * np.sqrt(2.0 / (self.density * fan_in)))[0].astype(np.float32)
            return row
        scores: FloatArray = self._draw([4, task, layer, c], (1, fan_in), 1.0 / np.sqrt(fan_in))
        return np.asarray(scores[0], dtype=np.float32)

    def grow(self) -> None:
        if not self.dim:
            return
        widths = (self.dim, *self.hidden)
        if not self.weights:
            self.weights = [
                self._rows(i, widths[i], 0, widths[i + 1], -1) for i in range(len(self.hidden))
            ]
            self.weights.append(np.zeros((0, widths[-1]), np.float32))
        top = len(self.hidden)
        have = len(self.weights[top])
        if have < self.n_classes:
            extra = self._rows(top, widths[-1], have, self.n_classes, -1)
            self.weights[top] = np.vstack([self.weights[top], extra])
        for task in range(self.n_tasks):
            if task == len(self.scores):
                self.scores.append(
                    [self._rows(i, widths[i], 0, widths[i + 1], task) for i in range(top)]
                    + [np.zeros((0, widths[-1]), np.float32)]
                )
            s = self.scores[task]
            if len(s[top]) < self.n_classes:
                extra = self._rows(top, widths[-1], len(s[top]), self.n_classes, task)
                s[top] = np.vstack([s[top], extra])

    def _sizes(self) -> int:
        widths = (self.dim, *self.hidden, self.n_classes)
        return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))

    def shared_nbytes(self) -> int:
        return 4 * self._sizes() if self.dim else 0

    def task_cost(self, rank: int) -> int:
        return 4 * self._sizes() if self.dim else 0

    # -- the masked network -----------------------------------------------------------
    def effective(self, task: int) -> list[FloatArray]:
        """The task's masked weights; in the output layer only the rows of the classes it
        was taught, ranked among themselves (classes added later leave its mask alone)."""
        top = len(self.hidden)
        ws = [self.weights[i] * top_mask(self.scores[task][i], self.density) for i in range(top)]
        rows = self.counts[task] > 0
        out = np.zeros_like(self.weights[top])
        if rows.any():
            out[rows] = self.weights[top][rows] * top_mask(
                self.scores[task][top][rows], self.density
            )
        return [*ws, out]

    @staticmethod
    def forward(ws: list[FloatArray], x: FloatArray) -> tuple[FloatArray, list[FloatArray]]:
        """Logits and each layer's input."""
        h, inputs = x, []
        for w in ws[:-1]:
            inputs.append(h)
            h = np.maximum(h @ w.T, 0.0)
        inputs.append(h)
        logits: FloatArray = h @ ws[-1].T
        return logits, inputs

    @staticmethod
    def backward(ws: list[FloatArray], inputs: list[FloatArray], g: FloatArray) -> list[FloatArray]:
        """Per layer, d loss / d pre-activation (given ``g`` on the logits)."""
        out = [g]
        for i in reversed(range(len(ws) - 1)):
            g = (g @ ws[i + 1]) * (inputs[i + 1] > 0)
            out.append(g)
        return out[::-1]

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        return self.forward(self.effective(task), x)[0]

    def step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None:
        top, scores = len(self.hidden), self.scores[task]
        ws = self.effective(task)
        ws[top] = ws[top][cols]
        logits, inputs = self.forward(ws, x)
        pre = self.backward(ws, inputs, softmax_grad(logits, y))
        for i, (g, h) in enumerate(zip(pre, inputs, strict=True)):
            w = self.weights[i] if i < top else self.weights[i][cols]
            # Straight through the mask, which ranks |score|: d|s|/ds = sign(s).
            grad = (g.T @ h) * w
            if i < top:
                scores[i] -= (self.sgd.lr * grad * np.sign(scores[i])).astype(np.float32)
            else:
                sign = np.sign(scores[i][cols])
                scores[i][cols] -= (self.sgd.lr * grad * sign).astype(np.float32)

    def infer_tasks(self, z: FloatArray) -> IntArray:
        """The one-shot entropy-gradient criterion over the taught tasks (see above)."""
        x = np.ascontiguousarray(z.reshape(len(z), -1), dtype=np.float32)
        taught = [t for t in range(self.n_tasks) if self.counts[t].any()]
        if len(taught) <= 1 or not self.dim:
            return np.full(len(x), taught[0] if taught else 0, dtype=np.int64)
        masked = {t: self.effective(t) for t in taught}
        # As in the paper, the tasks share their output units: a task's k-th class (in
        # index order) is output k, so its rows are superimposed on the others' k-th.
        k = max(int((self.counts[t] > 0).sum()) for t in taught)
        for t in taught:
            rows = masked[t][-1][self.counts[t] > 0]
            masked[t][-1] = np.vstack([rows, np.zeros((k - len(rows), rows.shape[1]), np.float32)])
        ws: list[FloatArray] = [
            np.asarray(np.mean([masked[t][i] for t in taught], axis=0), dtype=np.float32)
            for i in range(len(self.weights))
        ]
        logits, inputs = self.forward(ws, x)
        s = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        entropy = -(p * logp).sum(axis=1, keepdims=True)
        g = (-p * (logp + entropy)).astype(np.float32)  # d H / d logits
        pre = self.backward(ws, inputs, g)
        grad = np.zeros((len(x), len(taught)))
        for j, t in enumerate(taught):
            for i, (gl, h) in enumerate(zip(pre, inputs, strict=True)):
                grad[:, j] += (gl * (h @ masked[t][i].T)).sum(axis=1)
        return np.asarray([taught[j] for j in np.argmin(grad, axis=1)], dtype=np.int64)

    # -- state ------------------------------------------------------------------------
    def params_state(self) -> State:
        return {"scores": [[s.copy() for s in layers] for layers in self.scores]}

    def load_params(self, state: State) -> None:
        self.weights, self.scores = [], []
        self.grow()  # the fixed weights come from the seed
        widths = (self.dim, *self.hidden, self.n_classes)
        self.scores = [
            [as_f32(s).reshape(widths[i + 1], widths[i]) for i, s in enumerate(layers)]
            for layers in state["scores"]
        ]
