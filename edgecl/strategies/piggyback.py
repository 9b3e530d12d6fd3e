"""Piggyback (Mallya, Davis & Lazebnik 2018): per-task binary masks over fixed weights."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import grow_rows, positive_float, positive_int
from edgecl.strategies.mlp import glorot
from edgecl.strategies.net import softmax_grad
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import Params, TaskLogits
from edgecl.types import FloatArray, IntArray, State


class Piggyback(TaskLogits, TaskHead):
    """Piggyback (Mallya, Davis & Lazebnik, "Piggyback: Adapting a Single Network to
    Multiple Tasks by Learning to Mask Weights", ECCV 2018): the weights of a network are
    fixed, and each new task learns a binary mask over them plus its own output layer.

    The paper masks a network pretrained on ImageNet, never a random one; so here the
    shared layer is *pretrained on the first task*: a head ``latent -> hidden (ReLU) ->
    classes`` trained densely on the first task (its mask is all ones, stored as nothing),
    then frozen for good when the next task starts (see :mod:`edgecl.strategies.task_head`).
    Each later task ``t`` learns real-valued scores ``m_t`` over the hidden layer's
    weights, initialised to ``mask_scale`` (1e-2, the paper's), thresholded to a binary
    mask ``m_t >= threshold`` (5e-3, the paper's) in the forward pass, ``h = relu((W *
    mask_t) x + b)``, with the straight-through estimator of the paper (the gradient of
    the mask is that of the masked weights times ``W``). The bias is not masked (as the
    paper leaves biases), and each task has its own output layer ``(classes, hidden)``
    (the paper's new classifier per task). When a task is finalised only its binary mask
    is kept, packed at 1 bit per weight.

    Hyper-parameters (defaults): ``hidden`` width of the shared layer (128); ``lr`` of
    Adam for the first task's dense training and every task's output layer (0.01);
    ``mask_lr`` of Adam for the mask scores (1e-4); ``mask_scale`` (1e-2) and
    ``threshold`` (5e-3); ``epochs`` passes over each batch (3); ``batch_size`` (32);
    ``seed`` (0); ``max_bytes`` (64 MiB). Bytes per task: the first task holds the shared
    layer and its output layer; every later task its packed mask (``hidden * dim / 8``)
    and output layer, plus, while it trains, its float32 scores.

    >>> s = Piggyback(hidden=8, lr=0.05, mask_lr=0.01)
    >>> s.add_classes(4); s.add_tasks(2)
    >>> x = np.array([[1, 0], [0, 1]], np.float32)
    >>> for _ in range(20):
    ...     s.learn_tasks(x, np.array([0, 1]), np.array([0, 0]))
    >>> for _ in range(30):
    ...     s.learn_tasks(x, np.array([3, 2]), np.array([1, 1]))
    >>> s.predict_proba_tasks(x, np.array([0, 1])).argmax(axis=1).tolist()
    [0, 2]
    """

    name = "piggyback"
    finalises = True
    state_key = "model"

    def __init__(
        self,
        hidden: int = 128,
        lr: float = 0.01,
        mask_lr: float = 1e-4,
        mask_scale: float = 1e-2,
        threshold: float = 5e-3,
        epochs: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        self.hidden = positive_int("hidden", hidden)
        self.mask_lr = positive_float("mask_lr", mask_lr)
        self.mask_scale = positive_float("mask_scale", mask_scale)
        self.threshold = positive_float("threshold", threshold)
        self.shared: Params = {}
        self.heads: list[Params] = []  # per rank: output layer "o", "c"
        self.masks: list[np.ndarray] = []  # per finalised rank >= 1: packed binary mask
        self.scores = np.zeros((0, 0), np.float32)  # the training task's real-valued mask

    def grow(self) -> None:
        if self.dim and not self.shared:
            self._build()
        for head in self.heads:
            head["o"], head["c"] = (
                grow_rows(head["o"], self.n_classes),
                grow_rows(head["c"], self.n_classes),
            )

    def _build(self) -> None:
        rng = np.random.default_rng([self.sgd.seed, 0])
        h, d = self.hidden, self.dim
        self.shared = {"w": glorot(rng, h, d, d + h), "b": np.zeros(h, np.float32)}

    def start(self, task: int) -> None:
        rank, h, k = len(self.heads), self.hidden, self.n_classes
        rng = np.random.default_rng([self.sgd.seed, 1, rank])
        self.heads.append({"o": glorot(rng, k, h, h + k), "c": np.zeros(k, np.float32)})
        if rank:
            self.scores = np.full((h, self.dim), self.mask_scale, np.float32)

    def finalise(self, task: int) -> None:
        if self.order.index(task):
            self.masks.append(np.packbits(self.scores >= self.threshold))
            self.scores = np.zeros((0, 0), np.float32)

    def mask(self, rank: int) -> np.ndarray:
        """The binary mask of the ``rank``-th task over the shared weights (rank 0: ones)."""
        shape = self.shared["w"].shape
        if not rank:
            return np.ones(shape, bool)
        if rank > len(self.masks):  # the task in training: its scores, thresholded
            return self.scores >= self.threshold
        bits = np.unpackbits(self.masks[rank - 1], count=shape[0] * shape[1])
        return bits.reshape(shape).astype(bool)

    def _hidden(self, rank: int, x: FloatArray) -> FloatArray:
        w = self.shared["w"] if not rank else self.shared["w"] * self.mask(rank)
        out: FloatArray = np.maximum(x @ w.T + self.shared["b"], 0.0)
        return out

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        rank = self.order.index(task)
        head = self.heads[rank]
        out: FloatArray = self._hidden(rank, x) @ head["o"].T + head["c"]
        return out

    def step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None:
        rank = self.order.index(task)
        head = self.heads[rank]
        h = self._hidden(rank, x)
        logits = h @ head["o"].T + head["c"]
        g = np.zeros_like(logits)
        g[:, cols] = softmax_grad(logits[:, cols], y)
        dh = (g @ head["o"]) * (h > 0)
        grads: Params = {"o": g.T @ h, "c": g.sum(0)}
        params: Params = {"o": head["o"], "c": head["c"]}
        lr = {"o": self.sgd.lr, "c": self.sgd.lr}
        if not rank:  # the first task trains the shared layer densely
            grads.update(w=dh.T @ x, b=dh.sum(0))
            params.update(self.shared)
            lr.update(w=self.sgd.lr, b=self.sgd.lr)
        else:  # straight-through: d loss / d scores = d loss / d (W * mask) * W
            grads["m"] = (dh.T @ x) * self.shared["w"]
            params["m"], lr["m"] = self.scores, self.mask_lr
        self.opt.step(params, grads, lr)

    def task_cost(self, rank: int) -> int:
        h, d, k = self.hidden, self.dim, max(self.n_classes, 1)
        head = 4 * (k * h + k)
        return head + (4 * (h * d + h) if not rank else 4 * h * d + (h * d + 7) // 8)

    def task_nbytes(self) -> dict[int, int]:
        out = {}
        for rank, (task, head) in enumerate(zip(self.order, self.heads, strict=True)):
            held = head["o"].nbytes + head["c"].nbytes
            if not rank:
                held += self.shared["w"].nbytes + self.shared["b"].nbytes
            elif rank <= len(self.masks):
                held += self.masks[rank - 1].nbytes
            else:
                held += self.scores.nbytes
            out[task] = held
        return out

    def params_state(self) -> State:
        return {**self.shared, "heads": self.heads, "masks": self.masks, "scores": self.scores}

    def load_params(self, state: State) -> None:
        if not self.dim:
            return
        self.shared = {k: np.array(state[k], np.float32) for k in ("w", "b")}
        self.heads = [{k: np.array(a, np.float32) for k, a in h.items()} for h in state["heads"]]
        self.masks = [np.array(m, np.uint8) for m in state["masks"]]
        self.scores = np.array(state["scores"], np.float32)
