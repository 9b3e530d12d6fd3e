"""Progressive neural networks (Rusu et al. 2016) as a head over frozen latents."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import grow_rows, positive_int
from edgecl.strategies.mlp import glorot
from edgecl.strategies.net import softmax_grad
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import Params, TaskLogits
from edgecl.types import FloatArray, IntArray, State


class PNN(TaskLogits, TaskHead):
    """Progressive neural networks (Rusu, Rabinowitz, Desjardins et al., "Progressive
    Neural Networks", 2016): a new column per task, with lateral connections from the
    frozen columns of the tasks before it. Earlier columns never change, so nothing is
    forgotten; the task picks the column at test time (``task_mode`` "required").

    On latents a column is a small MLP, ``latent -> hidden (ReLU) -> classes``; the input
    layer needs no lateral (every column reads the same latent, the paper's ``h_0``). The
    output layer of column ``k`` gets the paper's non-linear adapter from the hidden
    layers of columns ``0..k-1``: ``logits_k = W2_k h_k + b2_k + U_k relu(V_k (alpha_k
    [h_0 .. h_{k-1}]))``, with a learned scalar ``alpha_k`` (init 0.1, the paper's "small
    random value" made fixed so the state holds no generator), ``V_k`` projecting the
    concatenated hidden layers to ``hidden`` units (the paper's dimensionality reduction)
    and ``U_k`` mapping them to the classes. Columns are indexed by the order tasks
    started in; a task's column is finalised (frozen) when a batch of another task arrives
    (see :mod:`edgecl.strategies.task_head`). Output rows are global classes; a column's
    softmax covers only the classes its task was taught.

    Hyper-parameters (defaults): ``hidden`` width of each column (64); ``lr`` of Adam
    (0.01; the paper trained with RL, so no learning rate carries over); ``epochs``
    passes over each batch (3); ``batch_size`` (32); ``seed`` (0) of the columns' inits
    (Glorot-normal weights, zero biases); ``max_bytes`` (64 MiB) the columns may hold: a
    new task whose column would pass it is refused. Bytes per task: its column's float32
    parameters (they grow with the number of earlier columns through ``V_k``).

    >>> s = PNN(hidden=8, lr=0.05)
    >>> s.add_classes(4); s.add_tasks(2)
    >>> x = np.array([[1, 0], [0, 1]], np.float32)
    >>> for _ in range(20):
    ...     s.learn_tasks(x, np.array([0, 1]), np.array([0, 0]))
    >>> for _ in range(20):
    ...     s.learn_tasks(x, np.array([2, 3]), np.array([1, 1]))
    >>> s.predict_proba_tasks(x, np.array([0, 1])).argmax(axis=1).tolist()
    [0, 3]
    """

    name = "pnn"
    finalises = True
    state_key = "model"

    def __init__(
        self,
        hidden: int = 64,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        self.hidden = positive_int("hidden", hidden)
        self.columns: list[Params] = []  # by rank (the order tasks started in)

    def grow(self) -> None:
        for col in self.columns:  # columns start once the latent dimension is known
            for name in ("w2", "b2", "u"):
                if name in col:
                    col[name] = grow_rows(col[name], self.n_classes)

    def start(self, task: int) -> None:
        rank, h, k = len(self.columns), self.hidden, self.n_classes
        rng = np.random.default_rng([self.sgd.seed, rank])
        col: Params = {
            "w1": glorot(rng, h, self.dim, self.dim + h),
            "b1": np.zeros(h, np.float32),
            "w2": glorot(rng, k, h, h + k),
            "b2": np.zeros(k, np.float32),
        }
        if rank:
            col["alpha"] = np.full(1, 0.1, np.float32)
            col["v"] = glorot(rng, h, rank * h, rank * h + h)
            col["u"] = glorot(rng, k, h, h + k)
        self.columns.append(col)

    def _forward(self, rank: int, x: FloatArray) -> tuple[FloatArray, list[FloatArray]]:
        """Logits of column ``rank`` and what the backward pass needs."""
        hs = [np.maximum(x @ c["w1"].T + c["b1"], 0.0) for c in self.columns[: rank + 1]]
        col = self.columns[rank]
        logits = hs[rank] @ col["w2"].T + col["b2"]
        if not rank:
            return logits, [hs[0]]
        lateral = np.concatenate(hs[:rank], axis=1)
        proj = lateral @ col["v"].T
        adapter = np.maximum(col["alpha"] * proj, 0.0)
        logits += adapter @ col["u"].T
        return logits, [hs[rank], lateral, proj, adapter]

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        return self._forward(self.order.index(task), x)[0]

    def step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None:
        rank = self.order.index(task)
        col = self.columns[rank]
        logits, cache = self._forward(rank, x)
        g = np.zeros_like(logits)
        g[:, cols] = softmax_grad(logits[:, cols], y)
        h = cache[0]
        dh = (g @ col["w2"]) * (h > 0)
        grads = {"w2": g.T @ h, "b2": g.sum(0), "w1": dh.T @ x, "b1": dh.sum(0)}
        if rank:
            lateral, proj, adapter = cache[1:]
            da = (g @ col["u"]) * (adapter > 0)
            grads["u"] = g.T @ adapter
            grads["v"] = col["alpha"] * (da.T @ lateral)
            grads["alpha"] = np.array([np.sum(da * proj)], np.float32)
        self.opt.step(col, grads, dict.fromkeys(grads, self.sgd.lr))

    def task_cost(self, rank: int) -> int:
        h, k, d = self.hidden, max(self.n_classes, 1), self.dim
        floats = h * d + h + k * h + k + (1 + rank * h * h + k * h if rank else 0)
        return 4 * floats

    def task_nbytes(self) -> dict[int, int]:
        pairs = zip(self.order, self.columns, strict=True)
        return {t: sum(a.nbytes for a in c.values()) for t, c in pairs}

    def params_state(self) -> State:
        return {"columns": self.columns}

    def load_params(self, state: State) -> None:
        self.columns = [
            {str(k): np.array(a, np.float32) for k, a in c.items()} for c in state["columns"]
        ]
