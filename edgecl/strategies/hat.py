"""HAT, hard attention to the task (Serrà, Surís, Miron & Karatzoglou, ICML 2018).

An MLP head (ReLU hidden layers over the frozen latents, then one output row per class)
whose hidden units each task gates with its own attention mask ``a_t = sigmoid(s e_t)``,
``e_t`` a learned embedding per task and layer. While a task trains, ``s`` is annealed over
the minibatches of a learning call from ``1 / s_max`` to ``s_max`` (near-binary masks);
the gradient of every weight between units earlier tasks use is cut by the cumulative mask
``a_<t = max over the other tasks of sigmoid(s_max e)``: ``g_ij *= 1 - min(a_<t_i,
a_<t_j)`` (the input side of the first layer is not masked, so only ``1 - a_<t_i``), and
a sparsity regulariser ``c * sum a_t (1 - a_<t) / sum (1 - a_<t)`` keeps each task to
few of the free units. The embeddings' gradient is compensated for the annealing and the
embeddings kept in ``[-6, 6]``, as in the authors' code. Predicting with task ``t`` gates
with ``sigmoid(s_max e_t)``.

Hyper-parameters (defaults, the paper's where it has one): ``hidden`` ((64,)): the hidden
widths (at least one layer); ``lr`` (0.05, the paper's SGD rate); ``epochs`` (3) and
``batch_size`` (32): minibatch SGD on each learned batch; ``s_max`` (400); ``c`` (0.75);
``seed`` (0): the initial weights, embeddings (N(0, 1)) and minibatch order;
``max_bytes`` (64 MiB): the budget of weights and embeddings. Fixed as in the authors'
code: gradient-norm clipping at 10000, cosh clamp at 50, embedding clamp at 6.

Deviations: the paper trains one task after another with a separate output head each;
here samples stream in, a task may come back, so "earlier tasks" are all other tasks
taught so far, and classes are global: the output rows of a class another task was
taught are shared, their weights restricted like hidden ones and their bias frozen.
Bytes per task count its embeddings (the masks are derived from them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecl.strategies.linear import grow_rows, positive_float
from edgecl.strategies.net import Net, Params, hidden_widths, softmax_grad
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import EnergyNovelty, as_f32
from edgecl.types import FloatArray, IntArray, State

CLIP_NORM = 10000.0
COSH_CLAMP = 50.0
EMB_CLAMP = 6.0


def sigmoid(x: Any) -> FloatArray:
    out: FloatArray = (1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))).astype(np.float32)
    return out


class HAT(EnergyNovelty, TaskHead):
    """An MLP head with per-task hard attention on its hidden units.

    >>> head = HAT(hidden=[8], lr=0.5, epochs=20, c=0.1)
    >>> head.add_classes(4)
    >>> head.add_tasks(2)
    >>> z = np.array([[1, 0], [0, 1]], np.float32)
    >>> head.learn_tasks(z, np.array([0, 1]), np.array([0, 0]))
    >>> head.predict_proba_tasks(z, np.array([0, 0])).argmax(axis=1).tolist()
    [0, 1]
    """

    name = "hat"

    def __init__(
        self,
        hidden: tuple[int, ...] | list[int] = (64,),
        lr: float = 0.05,
        epochs: int = 3,
        batch_size: int = 32,
        s_max: float = 400.0,
        c: float = 0.75,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        self.hidden = hidden_widths(hidden)
        if not self.hidden:
            raise ValueError("hidden must name at least one layer: HAT gates hidden units")
        self.s_max = positive_float("s_max", s_max)
        if self.s_max < 1:
            raise ValueError(f"s_max must be >= 1, got {s_max!r}")
        self.c = positive_float("c", c, allow_zero=True)
        self.params: Params = {}
        self.emb = [np.zeros((0, w), np.float32) for w in self.hidden]  # per layer (T, W)

    # -- growth -----------------------------------------------------------------------
    def grow(self) -> None:
        if self.dim and not self.params:
            self.params = Net(self.hidden, self.sgd.seed).fresh(self.n_classes, self.dim)
        if self.params:
            last = len(self.hidden)
            for k in (f"w{last}", f"b{last}"):
                self.params[k] = grow_rows(self.params[k], self.n_classes)
        for layer, width in enumerate(self.hidden):
            have = len(self.emb[layer])
            new = [
                np.random.default_rng([self.sgd.seed, 2, t, layer]).normal(size=width)
                for t in range(have, self.n_tasks)
            ]
            if new:
                self.emb[layer] = np.vstack([self.emb[layer], np.asarray(new, np.float32)])

    def shared_nbytes(self) -> int:
        if not self.dim:
            return 0
        widths = (self.dim, *self.hidden, self.n_classes)
        return 4 * sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:], strict=True))

    def task_cost(self, rank: int) -> int:
        return 4 * sum(self.hidden)

    # -- masks ------------------------------------------------------------------------
    def masks(self, task: int, s: float) -> list[FloatArray]:
        return [sigmoid(s * e[task]) for e in self.emb]

    def others(self, task: int) -> list[FloatArray]:
        """The cumulative mask of every other task taught so far (zeros if none)."""
        taught = [t for t in range(self.n_tasks) if t != task and self.counts[t].any()]
        out = [np.zeros(w, np.float32) for w in self.hidden]
        for t in taught:
            out = [np.maximum(o, a) for o, a in zip(out, self.masks(t, self.s_max), strict=True)]
        return out

    def forward(self, x: FloatArray, masks: list[FloatArray]) -> tuple[FloatArray, list[Any]]:
        h, cache = x, []
        for i, a in enumerate(masks):
            r = np.maximum(h @ self.params[f"w{i}"].T + self.params[f"b{i}"], 0.0)
            cache.append((h, r))
            h = r * a
        last = len(masks)
        logits: FloatArray = h @ self.params[f"w{last}"].T + self.params[f"b{last}"]
        return logits, [*cache, h]

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        return self.forward(x, self.masks(task, self.s_max))[0]

    # -- training ---------------------------------------------------------------------
    def fit_task(self, task: int, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        prev = self.others(task)
        shared = np.flatnonzero(np.delete(self.counts, task, axis=0)[:, cols].any(axis=0))
        rng = self.sgd.rng(self.calls)
        n, bs = len(x), self.sgd.batch_size
        total = self.sgd.epochs * -(-n // bs)
        step = 0
        for _ in range(self.sgd.epochs):
            order = rng.permutation(n)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                frac = step / (total - 1) if total > 1 else 1.0
                s = 1.0 / self.s_max + (self.s_max - 1.0 / self.s_max) * frac
                self.step_at(task, s, x[idx], local[idx], cols, prev, shared)
                step += 1

    def step_at(
        self,
        task: int,
        s: float,
        x: FloatArray,
        y: IntArray,
        cols: IntArray,
        prev: list[FloatArray],
        shared: IntArray,
    ) -> None:
        """One SGD step of task ``task`` at annealing ``s`` on a minibatch."""
        p, last = self.params, len(self.hidden)
        masks = self.masks(task, s)
        work = {**p, f"w{last}": p[f"w{last}"][cols], f"b{last}": p[f"b{last}"][cols]}
        saved, self.params = self.params, work
        logits, cache = self.forward(x, masks)
        self.params = saved
        g = softmax_grad(logits, y)
        h_top = cache[-1]
        grads: Params = {f"w{last}": g.T @ h_top, f"b{last}": g.sum(axis=0)}
        gh = g @ work[f"w{last}"]
        free = [1.0 - q for q in prev]
        denom = max(float(sum(f.sum() for f in free)), 1e-12)
        g_emb = []
        for i in reversed(range(last)):
            h_in, r = cache[i]
            a = masks[i]
            g_a = (gh * r).sum(axis=0) + self.c * free[i] / denom  # CE + sparsity
            g_emb.append(g_a * s * a * (1.0 - a))
            g_pre = (gh * a) * (r > 0)
            grads[f"w{i}"], grads[f"b{i}"] = g_pre.T @ h_in, g_pre.sum(axis=0)
            gh = g_pre @ p[f"w{i}"]
        g_emb.reverse()
        # Units earlier tasks use keep their weights (the cumulative mask cuts gradients).
        for i in range(last):
            upstream = 1.0 if i == 0 else prev[i - 1][None, :]
            grads[f"w{i}"] *= 1.0 - np.minimum(prev[i][:, None], upstream)
            grads[f"b{i}"] *= free[i]
        rows = np.isin(cols, shared)
        grads[f"w{last}"][rows] *= free[last - 1][None, :]
        grads[f"b{last}"][rows] = 0.0
        norm = np.sqrt(sum(float((v**2).sum()) for v in grads.values()))
        scale = min(1.0, CLIP_NORM / max(norm, 1e-12))
        lr = self.sgd.lr * scale
        for k in (f"w{i}" for i in range(last)):
            p[k] -= (lr * grads[k]).astype(np.float32)
        for k in (f"b{i}" for i in range(last)):
            p[k] -= (lr * grads[k]).astype(np.float32)
        p[f"w{last}"][cols] -= (lr * grads[f"w{last}"]).astype(np.float32)
        p[f"b{last}"][cols] -= (lr * grads[f"b{last}"]).astype(np.float32)
        for i, ge in enumerate(g_emb):
            e = self.emb[i][task]
            num = np.cosh(np.clip(s * e, -COSH_CLAMP, COSH_CLAMP)) + 1.0
            ge = ge * (self.s_max / s) * num / (np.cosh(e) + 1.0)
            self.emb[i][task] = np.clip(e - lr * ge, -EMB_CLAMP, EMB_CLAMP)

    # -- state ------------------------------------------------------------------------
    def params_state(self) -> State:
        return {
            "net": {k: v.copy() for k, v in self.params.items()},
            "emb": [e.copy() for e in self.emb],
        }

    def load_params(self, state: State) -> None:
        self.params = {str(k): as_f32(v) for k, v in state["net"].items()}
        self.emb = [
            as_f32(e).reshape(self.n_tasks, w)
            for e, w in zip(state["emb"], self.hidden, strict=True)
        ]
