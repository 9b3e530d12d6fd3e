"""PackNet (Mallya & Lazebnik 2018): iterative pruning frees weights for the next task."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import grow_rows, positive_float, positive_int
from edgecl.strategies.mlp import glorot
from edgecl.strategies.net import softmax_grad
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import Params, TaskLogits
from edgecl.types import FloatArray, IntArray, State

FREE = -1


class PackNet(TaskLogits, TaskHead):
    """PackNet (Mallya & Lazebnik, "PackNet: Adding Multiple Tasks to a Single Network by
    Iterative Pruning", CVPR 2018) on a shared head ``latent -> hidden (ReLU) -> classes``.

    The first task trains every weight of the hidden layer. When it is finalised (a batch
    of another task arrives, see :mod:`edgecl.strategies.task_head`), the fraction ``prune``
    of the weights it trained with the smallest magnitudes is *freed* (set to zero), the
    rest are kept and briefly retrained (``retrain_epochs`` passes) with the freed ones
    held at zero, then frozen for good. The next task trains only the freed weights, on
    top of the frozen ones, and is pruned in turn. ``owner`` records which task (by rank,
    the order tasks started in) holds each weight; the mask of task ``t`` is every weight
    held by ``t`` or a task before it, so prediction for ``t`` is exactly what it was when
    ``t`` was finalised. The hidden layer's bias is trained with the first task and then
    frozen (the paper prunes no biases); each task has its own output layer (the paper's
    classifier per task). A task still training uses every free weight (no pruning yet).

    Forced by learning from a stream: the paper retrains after pruning on the task's
    training set, which a stream no longer has when the next task arrives, so the head
    keeps the last ``retain`` latents of the training task for that retraining and drops
    them once the task is finalised.

    Hyper-parameters (defaults): ``hidden`` width (128); ``prune`` fraction of a task's
    weights freed (0.5, the paper's one-shot 50%); ``retrain_epochs`` (2); ``retain``
    latents kept for it (512); ``lr`` of Adam (0.003: at 0.01 the freed weights, which
    start at zero, trained unstably on Split-Fashion-MNIST latents); ``epochs`` passes over
    each batch (3); ``batch_size`` (32); ``seed`` (0); ``max_bytes`` (64 MiB). Bytes per task: its
    output layer, its kept float32 weights, its mask at 1 bit per weight (held together as
    one int16 owner map) and, while training, the free weights and the retained latents.

    >>> s = PackNet(hidden=8, lr=0.05)
    >>> s.add_classes(4); s.add_tasks(2)
    >>> x = np.array([[1, 0], [0, 1]], np.float32)
    >>> for _ in range(20):
    ...     s.learn_tasks(x, np.array([0, 1]), np.array([0, 0]))
    >>> for _ in range(20):
    ...     s.learn_tasks(x, np.array([3, 2]), np.array([1, 1]))
    >>> s.predict_proba_tasks(x, np.array([0, 1])).argmax(axis=1).tolist()
    [0, 2]
    """

    name = "packnet"
    finalises = True
    state_key = "model"

    def __init__(
        self,
        hidden: int = 128,
        prune: float = 0.5,
        retrain_epochs: int = 2,
        retain: int = 512,
        lr: float = 0.003,
        epochs: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        self.hidden = positive_int("hidden", hidden)
        self.prune = positive_float("prune", prune)
        if self.prune >= 1:
            raise ValueError(f"prune must be a fraction in (0, 1), got {prune!r}")
        self.retrain_epochs = positive_int("retrain_epochs", retrain_epochs, minimum=0)
        self.retain = positive_int("retain", retain, minimum=0)
        self.shared: Params = {}
        self.owner = np.zeros((0, 0), np.int16)
        self.heads: list[Params] = []
        self.kept_x = np.zeros((0, 0), np.float32)  # the training task's last latents
        self.kept_y = np.zeros(0, np.int64)

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
        self.owner = np.full((h, d), FREE, np.int16)
        self.kept_x = np.zeros((0, d), np.float32)

    def start(self, task: int) -> None:
        rank, h, k = len(self.heads), self.hidden, self.n_classes
        rng = np.random.default_rng([self.sgd.seed, 1, rank])
        self.heads.append({"o": glorot(rng, k, h, h + k), "c": np.zeros(k, np.float32)})

    def mask(self, rank: int) -> np.ndarray:
        """The weights the ``rank``-th task uses: those held by it or a task before it,
        and the free ones while it trains."""
        held = (self.owner >= 0) & (self.owner <= rank)
        training = rank == len(self.heads) - 1 and not self.done[self.order[rank]]
        return held | (self.owner == FREE) if training else held

    def _forward(self, rank: int, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        w = self.shared["w"] * self.mask(rank)
        h = np.maximum(x @ w.T + self.shared["b"], 0.0)
        head = self.heads[rank]
        return h, h @ head["o"].T + head["c"]

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        return self._forward(self.order.index(task), x)[1]

    def step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None:
        self._update(self.order.index(task), x, y, cols, FREE)

    def _update(self, rank: int, x: FloatArray, y: IntArray, cols: IntArray, mine: int) -> None:
        """One Adam step of the weights ``owner == mine`` and the task's output layer."""
        head = self.heads[rank]
        h, logits = self._forward(rank, x)
        g = np.zeros_like(logits)
        g[:, cols] = softmax_grad(logits[:, cols], y)
        dh = (g @ head["o"]) * (h > 0)
        grads: Params = {"o": g.T @ h, "c": g.sum(0), "w": (dh.T @ x) * (self.owner == mine)}
        params: Params = {"o": head["o"], "c": head["c"], "w": self.shared["w"]}
        if not rank:
            grads["b"], params["b"] = dh.sum(0), self.shared["b"]
        self.opt.step(params, grads, dict.fromkeys(grads, self.sgd.lr))

    def fit_task(self, task: int, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        super().fit_task(task, x, local, cols)
        if self.retain:
            self.kept_x = np.concatenate([self.kept_x, x])[-self.retain :]
            self.kept_y = np.concatenate([self.kept_y, cols[local]])[-self.retain :]

    def finalise(self, task: int) -> None:
        """Prune the task's weights by magnitude, retrain the kept ones, freeze them."""
        rank = self.order.index(task)
        free = np.flatnonzero(self.owner == FREE)
        w = self.shared["w"].reshape(-1)
        n_keep = len(free) - int(round(self.prune * len(free)))
        keep = free[np.argsort(-np.abs(w[free]), kind="stable")[:n_keep]]
        self.owner.reshape(-1)[keep] = rank
        w[np.setdiff1d(free, keep)] = 0.0
        self.opt.reset()
        cols = self.taught(task)
        x, local = self.kept_x, np.searchsorted(cols, self.kept_y)
        rng = np.random.default_rng([self.sgd.seed, self.calls, 1])
        for _ in range(self.retrain_epochs if len(x) else 0):
            order = rng.permutation(len(x))
            for start in range(0, len(x), self.sgd.batch_size):
                idx = order[start : start + self.sgd.batch_size]
                self._update(rank, x[idx], local[idx], cols, rank)
        self.kept_x, self.kept_y = self.kept_x[:0], self.kept_y[:0]

    def task_cost(self, rank: int) -> int:
        h, d, k = self.hidden, self.dim, max(self.n_classes, 1)
        weights = 4 * h * d if not rank else 0  # later tasks reuse freed weights
        return 4 * (k * h + k) + (h * d + 7) // 8 + weights + self.retain * (4 * d + 8)

    def shared_nbytes(self) -> int:
        return int(self.shared["b"].nbytes + self.owner.nbytes) if self.shared else 0

    def task_nbytes(self) -> dict[int, int]:
        out = {}
        bits = (self.owner.size + 7) // 8
        for rank, (task, head) in enumerate(zip(self.order, self.heads, strict=True)):
            mine = rank if self.done[task] else FREE
            held = head["o"].nbytes + head["c"].nbytes + bits + 4 * int((self.owner == mine).sum())
            if not self.done[task]:
                held += self.kept_x.nbytes + self.kept_y.nbytes
            out[task] = held
        return out

    def params_state(self) -> State:
        return {**self.shared, "owner": self.owner, "heads": self.heads, "kept_x": self.kept_x,
                "kept_y": self.kept_y}  # fmt: skip

    def load_params(self, state: State) -> None:
        if not self.dim:
            return
        self.shared = {k: np.array(state[k], np.float32) for k in ("w", "b")}
        self.owner = np.array(state["owner"], np.int16)
        self.heads = [{k: np.array(a, np.float32) for k, a in h.items()} for h in state["heads"]]
        self.kept_x = np.array(state["kept_x"], np.float32).reshape(-1, self.dim)
        self.kept_y = np.array(state["kept_y"], np.int64)
