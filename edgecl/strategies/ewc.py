"""EWC (Kirkpatrick et al., PNAS 2017), and online EWC (Schwarz et al., ICML 2018)."""

from __future__ import annotations

import numpy as np

from edgecl.strategies.experience import (
    ExperienceHead,
    add_rows,
    copy_params,
    grow_like,
    load_params,
    pull,
    rows,
)
from edgecl.strategies.linear import positive_float
from edgecl.strategies.net import Params, Penalty, forward, sgd_net, softmax_grad
from edgecl.types import FloatArray, IntArray, State

MODES = ("separate", "online")


def squared_grads(params: Params, x: FloatArray, y: IntArray) -> Params:
    """Per parameter, the sum over samples of the squared per-sample gradient of
    ``-log p(y | x)``: the empirical Fisher's numerator (each per-sample gradient of a
    layer is an outer product, so its square is the outer product of the squares)."""
    logits, cache = forward(params, x)
    g = softmax_grad(logits, y) * len(y)
    out: Params = {}
    for i in reversed(range(len(params) // 2)):
        h, w = cache.inputs[i], params[f"w{i}"]
        out[f"w{i}"] = (g * g).T @ (h * h)
        out[f"b{i}"] = (g * g).sum(axis=0)
        if i:
            g = (g @ w) * (h > 0)
    return out


class EWC(ExperienceHead):
    """Elastic weight consolidation on the head's weights (hidden layers included).

    At each experience boundary (:mod:`edgecl.strategies.experience`: a batch bringing a
    class never trained, or ``consolidate_every`` samples) it keeps the diagonal Fisher
    ``F`` of the experience and the parameters ``θ*`` it ended with; learning then adds
    the penalty ``λ/2 Σ F (θ - θ*)²`` to the cross-entropy, whose gradient ``λ F (θ - θ*)``
    is added to every SGD step, with ``λ F`` capped at ``1 / lr`` per parameter (plain SGD
    on the quadratic diverges once ``lr · λ F > 2``; at the cap a step lands on ``θ*``).

    ``F`` is the **empirical** Fisher (squared gradients of the log-likelihood of the
    observed labels), as most implementations, not the true Fisher under the model's own
    predictions the paper describes. The experience's samples are not kept, so the Fisher
    is accumulated over its batches as they are learned, each at the parameters just
    after learning it, and averaged per sample at the boundary (the paper evaluates it at
    ``θ*`` on the task's data).

    Modes: ``separate`` (the paper's: one penalty per past experience, kept as the sums
    ``Σ F_t`` and ``Σ F_t θ*_t``, so the memory does not grow) and ``online`` (Schwarz et
    al. 2018: one penalty, ``F ← γ F + F_t`` and ``θ* ←`` the latest parameters).

    Hyper-parameters (defaults): ``ewc_lambda`` (100.0, chosen on a validation split:
    Split-Fashion-MNIST, 10,000 training images, 2 classes per experience, lr 0.1 chosen
    first; final validation accuracy 22.5, 27.2, 29.2, 28.5, 28.4% for λ = 1, 10, 100,
    1000, 10000: class-incrementally barely above ``naive``'s 20%), ``mode``
    (``"separate"``), ``gamma`` (1.0, online only: Schwarz et al.'s ``γ``; below 1 old
    Fishers fade), ``consolidate_every`` (0), ``hidden`` (none: the linear head), and the
    SGD of :class:`~edgecl.strategies.naive.Naive` (``lr`` 0.01, ``epochs`` 3,
    ``batch_size`` 32, ``weight_decay`` 0, ``seed`` 0). No replay.

    >>> s = EWC(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0]], np.float32), np.array([0]))
    >>> s.learn_many(np.array([[0, 1]], np.float32), np.array([1]))  # a boundary
    >>> s.experiences, sorted(s.fisher)
    (1, ['b0', 'w0'])
    """

    name = "ewc"

    def __init__(
        self,
        ewc_lambda: float = 100.0,
        mode: str = "separate",
        gamma: float = 1.0,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        super().__init__(lr, epochs, batch_size, weight_decay, seed, 0, hidden, consolidate_every)
        self.ewc_lambda = positive_float("ewc_lambda", ewc_lambda, allow_zero=True)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.gamma = positive_float("gamma", gamma, allow_zero=True)
        if self.gamma > 1:
            raise ValueError(f"gamma must be in [0, 1], got {gamma!r}")
        self.acc: Params = {}  # squared gradients summed over the current experience
        self.acc_n = 0
        self.fisher: Params = {}  # Σ F_t (online: the decayed sum)
        self.anchor: Params = {}  # Σ F_t θ*_t (online: F θ*)

    def fit(self, x: FloatArray, labels: IntArray) -> None:
        super().fit(x, labels)
        cols = np.flatnonzero(self.counts > 0)
        work = self.net.view(cols)
        self.acc = grow_like(self.acc, self.net.params)
        add_rows(self.acc, squared_grads(work, x, np.searchsorted(cols, labels)), cols)
        self.acc_n += len(x)

    def consolidate(self) -> None:
        if not self.acc_n:
            return
        theta = self.net.params
        f_t = {k: v / self.acc_n for k, v in grow_like(self.acc, theta).items()}
        fisher, anchor = grow_like(self.fisher, theta), grow_like(self.anchor, theta)
        if self.mode == "online":
            fisher = {k: self.gamma * fisher[k] + f_t[k] for k in theta}
            anchor = {k: fisher[k] * theta[k] for k in theta}
        else:
            fisher = {k: fisher[k] + f_t[k] for k in theta}
            anchor = {k: anchor[k] + f_t[k] * theta[k] for k in theta}
        self.fisher, self.anchor = fisher, anchor
        self.acc, self.acc_n = {}, 0

    def penalty_grads(self, work: Params, cols: IntArray) -> Params:
        """``λ F (θ - θ*)`` shaped as ``work`` (``λ F`` capped at ``1 / lr``, see
        :func:`~edgecl.strategies.experience.pull`)."""
        return self.penalty(work, cols)(work) if self.fisher else {}

    def penalty(self, work: Params, cols: IntArray) -> Penalty:
        theta = self.net.params
        f = rows(grow_like(self.fisher, theta), work, cols)
        a = rows(grow_like(self.anchor, theta), work, cols)
        # Σ F_t (θ - θ*_t) = F (θ - θ*) with F = Σ F_t and θ* = Σ F_t θ*_t / F.
        star = {k: np.divide(a[k], f[k], out=np.zeros_like(a[k]), where=f[k] > 0) for k in f}
        return pull({k: self.ewc_lambda * f[k] for k in f}, star, self.sgd.lr)

    def train(self, work: Params, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        penalty = self.penalty(work, cols) if self.fisher and self.ewc_lambda else None
        sgd_net(work, x, local, self.sgd, self.sgd.rng(self.calls), penalty=penalty)

    def more_state(self) -> State:
        return {
            "acc": copy_params(self.acc),
            "acc_n": self.acc_n,
            "fisher": copy_params(self.fisher),
            "anchor": copy_params(self.anchor),
        }

    def load_more(self, state: State) -> None:
        self.acc = load_params(state.get("acc", {}))
        self.acc_n = int(state.get("acc_n", 0))
        self.fisher = load_params(state.get("fisher", {}))
        self.anchor = load_params(state.get("anchor", {}))
