"""Task-conditioned hypernetworks (von Oswald et al. 2020) generating a linear head."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.linear import positive_float, positive_int
from edgecl.strategies.mlp import glorot
from edgecl.strategies.net import softmax_grad
from edgecl.strategies.task_head import MAX_BYTES, TaskHead
from edgecl.strategies.task_parts import Params, TaskLogits
from edgecl.types import FloatArray, IntArray, State

THETA = ("a", "a0", "bw", "b0")


class Hypernetwork(TaskLogits, TaskHead):
    """Task-conditioned hypernetworks (von Oswald, Henning, Grewe & Sacramento, "Continual
    learning with hypernetworks", ICLR 2020): a hypernetwork ``h(e, theta)`` maps a learned
    embedding ``e_t`` of each task to the weights of the target network, and learning task
    ``T`` adds the paper's output regulariser ``beta / (T-1) * sum_{t<T} ||h(e_t, theta) -
    h*_t||^2``, where ``h*_t = h(e_t, theta*)`` with ``theta*`` the hypernetwork as it was
    when ``T`` started. What is kept per task is its embedding, never its weights; earlier
    embeddings are fixed, the current one and ``theta`` train (Adam).

    On latents, to stay CPU-cheap, the target network is a linear head over a fixed random
    projection of the latent (``proj_dim`` Gaussian directions scaled by
    ``1/sqrt(dim)``, drawn from ``seed`` and never stored): ``W_t (P x) + c_t`` with
    ``slots`` outputs, generated whole (no chunking: ``slots * (proj_dim + 1)`` numbers).
    A task's classes take its output slots in the order they are first taught (a task
    may be taught at most ``slots`` classes; more are refused). The hypernetwork has one
    ReLU hidden layer of ``hyper_hidden`` units. No look-ahead (the paper's optional
    ``Delta theta`` in the regulariser is left out). A task is finalised (its embedding
    frozen, ``theta*`` taken) when a batch of another task arrives (see
    :mod:`edgecl.strategies.task_head`).

    Hyper-parameters (defaults): ``embedding_dim`` (32); ``hyper_hidden`` (64);
    ``proj_dim`` (128); ``slots`` outputs per task (10); ``beta`` of the output
    regulariser (0.01, the paper's); ``lr`` of Adam (0.001, the paper's); ``epochs``
    passes over each batch (3); ``batch_size`` (32); ``seed`` (0) of the projection, the
    hypernetwork's Glorot-normal init and the embeddings' N(0, 1) init; ``max_bytes``
    (64 MiB). Bytes per task: one float32 embedding; the hypernetwork and ``theta*`` are
    shared.

    >>> s = Hypernetwork(lr=0.01, proj_dim=8)
    >>> s.add_classes(4); s.add_tasks(2)
    >>> x = np.array([[1, 0], [0, 1]], np.float32)
    >>> for _ in range(30):
    ...     s.learn_tasks(x, np.array([0, 1]), np.array([0, 0]))
    >>> for _ in range(30):
    ...     s.learn_tasks(x, np.array([3, 2]), np.array([1, 1]))
    >>> s.predict_proba_tasks(x, np.array([0, 1])).argmax(axis=1).tolist()
    [0, 2]
    """

    name = "hypernetwork"
    finalises = True
    state_key = "model"

    def __init__(
        self,
        embedding_dim: int = 32,
        hyper_hidden: int = 64,
        proj_dim: int = 128,
        slots: int = 10,
        beta: float = 0.01,
        lr: float = 0.001,
        epochs: int = 3,
        batch_size: int = 32,
        seed: int = 0,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        super().__init__(lr, epochs, batch_size, seed, max_bytes)
        self.embedding_dim = positive_int("embedding_dim", embedding_dim)
        self.hyper_hidden = positive_int("hyper_hidden", hyper_hidden)
        self.proj_dim = positive_int("proj_dim", proj_dim)
        self.slots = positive_int("slots", slots)
        self.beta = positive_float("beta", beta, allow_zero=True)
        self.theta: Params = {}
        self.theta_star: Params = {}  # theta when the training task started
        self.emb: list[FloatArray] = []  # per rank
        self.slot_class: list[IntArray] = []  # per rank: the class of each slot, -1 unused
        self.proj = np.zeros((0, 0), np.float32)

    def grow(self) -> None:
        if self.dim and not self.theta:  # classes map to slots, whose number is fixed
            self._build()

    def _build(self) -> None:
        self.proj = self._projection()
        e, hh, out = self.embedding_dim, self.hyper_hidden, self.slots * (self.proj_dim + 1)
        rng = np.random.default_rng([self.sgd.seed, 1])
        self.theta = {
            "a": glorot(rng, hh, e, hh + e),
            "a0": np.zeros(hh, np.float32),
            "bw": glorot(rng, out, hh, out + hh),
            "b0": np.zeros(out, np.float32),
        }

    def _projection(self) -> FloatArray:
        rng = np.random.default_rng([self.sgd.seed, 0])
        p: FloatArray = (rng.normal(size=(self.proj_dim, self.dim)) / np.sqrt(self.dim)).astype(
            np.float32
        )
        return p

    def start(self, task: int) -> None:
        rng = np.random.default_rng([self.sgd.seed, 2, len(self.emb)])
        self.emb.append(rng.normal(size=self.embedding_dim).astype(np.float32))
        self.slot_class.append(np.full(self.slots, -1, np.int64))
        self.theta_star = {k: v.copy() for k, v in self.theta.items()}

    def label_problem(self, task: int, labels: IntArray) -> str | None:
        wanted = np.union1d(self.taught(task), labels)
        if len(wanted) > self.slots:
            return (
                f"task {task} would have {len(wanted)} classes, more than the {self.slots} "
                "output slots of the hypernetwork's head (option slots)"
            )
        return None

    def generate(self, theta: Params, e: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Generated head weights ``(M, slots * (proj_dim + 1))`` for embeddings
        ``e (M, embedding_dim)``, and the hidden layer."""
        a: FloatArray = np.maximum(e @ theta["a"].T + theta["a0"], 0.0)
        out: FloatArray = a @ theta["bw"].T + theta["b0"]
        return out, a

    def _slot_scores(self, rank: int, x: FloatArray) -> tuple[FloatArray, FloatArray]:
        out, _ = self.generate(self.theta, self.emb[rank][None, :])
        p, k = self.proj_dim, self.slots
        f: FloatArray = x @ self.proj.T
        s: FloatArray = f @ out[0, : k * p].reshape(k, p).T + out[0, k * p :]
        return s, f

    def task_logits(self, task: int, x: FloatArray) -> FloatArray:
        rank = self.order.index(task)
        s, _ = self._slot_scores(rank, x)
        used = self.slot_class[rank] >= 0
        out = np.zeros((len(x), self.n_classes), np.float32)
        out[:, self.slot_class[rank][used]] = s[:, used]
        return out

    def fit_task(self, task: int, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        slots = self.slot_class[self.order.index(task)]
        for c in np.unique(cols[local]):
            if c not in slots:
                slots[np.argmax(slots < 0)] = c
        super().fit_task(task, x, local, cols)

    def step(self, task: int, x: FloatArray, y: IntArray, cols: IntArray) -> None:
        rank = self.order.index(task)
        s, f = self._slot_scores(rank, x)
        where = [int(np.flatnonzero(self.slot_class[rank] == c)[0]) for c in cols]
        ds = np.zeros_like(s)
        ds[:, where] = softmax_grad(s[:, where], y)
        dout = np.concatenate([(ds.T @ f).reshape(-1), ds.sum(0)])[None, :]
        e = self.emb[rank][None, :]
        done = [self.emb[r] for r in range(rank) if self.done[self.order[r]]]
        if done and self.beta:
            earlier = np.stack(done)
            target, _ = self.generate(self.theta_star, earlier)
            now, _ = self.generate(self.theta, earlier)
            e = np.concatenate([e, earlier])
            reg = (2 * self.beta / len(done)) * (now - target)
            dout = np.concatenate([dout, reg.astype(np.float32)])
        _, a = self.generate(self.theta, e)
        da = (dout @ self.theta["bw"]) * (a > 0)
        grads: Params = {
            "bw": dout.T @ a,
            "b0": dout.sum(0),
            "a": da.T @ e,
            "a0": da.sum(0),
            "e": da[0] @ self.theta["a"],  # only the training task's embedding learns
        }
        params: Params = {**self.theta, "e": self.emb[rank]}
        self.opt.step(params, grads, dict.fromkeys(grads, self.sgd.lr))

    def task_cost(self, rank: int) -> int:
        return 4 * self.embedding_dim

    def shared_nbytes(self) -> int:
        return 2 * sum(int(v.nbytes) for v in self.theta.values())

    def task_nbytes(self) -> dict[int, int]:
        return {task: int(e.nbytes) for task, e in zip(self.order, self.emb, strict=True)}

    def params_state(self) -> State:
        return {"theta": self.theta, "theta_star": self.theta_star, "emb": self.emb,
                "slot_class": self.slot_class}  # fmt: skip

    def load_params(self, state: State) -> None:
        if not self.dim:
            return
        self.proj = self._projection()
        self.theta = {k: np.array(state["theta"][k], np.float32) for k in THETA}
        self.theta_star = {str(k): np.array(v, np.float32) for k, v in state["theta_star"].items()}
        self.emb = [np.array(e, np.float32) for e in state["emb"]]
        self.slot_class = [np.array(s, np.int64) for s in state["slot_class"]]
