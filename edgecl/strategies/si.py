"""Synaptic Intelligence (Zenke, Poole & Ganguli, ICML 2017) on the head's weights."""

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
from edgecl.strategies.net import Params, sgd_net
from edgecl.types import FloatArray, IntArray, State


class SI(ExperienceHead):
    """Synaptic Intelligence: each parameter's importance is the path integral of the task
    loss's decrease it caused.

    Every SGD step adds ``-g · Δθ`` to the running ``ω`` of each parameter (``g``: the
    gradient of the cross-entropy alone, without the penalty, as in the paper; ``Δθ``: the
    step taken). At each experience boundary (:mod:`edgecl.strategies.experience`)
    ``Ω += ω / ((θ - θ_start)² + ξ)``, where ``θ_start`` are the parameters the experience
    began with, then ``ω = 0`` and ``θ* = θ``. Learning adds the surrogate loss
    ``c Σ Ω (θ - θ*)²`` (gradient ``2 c Ω (θ - θ*)``, the coefficient ``2 c Ω`` capped at
    ``1 / lr`` per parameter so that SGD on it cannot diverge; at the cap a step lands on
    ``θ*``).

    Hyper-parameters (defaults): ``si_c`` (1.0, the strength ``c``; on the validation
    split ``ewc``'s λ was chosen on, lr 0.1: 27.6, 28.3, 27.9, 27.3% for c = 0.1, 1, 10,
    100), ``xi`` (0.1, the
    damping ``ξ``: it keeps ``Ω`` finite for a parameter that barely moved; 0.1 is the
    value used in the common split-task reimplementations, the paper reports 1e-3 on its
    permuted tasks), ``consolidate_every`` (0), ``hidden`` (none: the linear head), and the
    SGD of :class:`~edgecl.strategies.naive.Naive` (``lr`` 0.01, ``epochs`` 3,
    ``batch_size`` 32, ``weight_decay`` 0, ``seed`` 0). No replay. Deviation: an output
    row is only stepped once its class has been trained, so a class's ``ω`` starts then.

    >>> s = SI(lr=0.5)
    >>> s.add_classes(2)
    >>> s.learn_many(np.array([[1, 0], [0, 1]], np.float32), np.array([0, 1]))
    >>> bool(s.omega["w0"].sum() > 0)  # every step lowered the loss
    True
    """

    name = "si"

    def __init__(
        self,
        si_c: float = 1.0,
        xi: float = 0.1,
        lr: float = 0.01,
        epochs: int = 3,
        batch_size: int = 32,
        weight_decay: float = 0.0,
        seed: int = 0,
        hidden: tuple[int, ...] | list[int] = (),
        consolidate_every: int = 0,
    ) -> None:
        super().__init__(lr, epochs, batch_size, weight_decay, seed, 0, hidden, consolidate_every)
        self.si_c = positive_float("si_c", si_c, allow_zero=True)
        self.xi = positive_float("xi", xi)
        self.omega: Params = {}  # the running path integral of this experience
        self.start: Params = {}  # θ when this experience began
        self.importance: Params = {}  # Ω
        self.anchor: Params = {}  # θ*

    def train(self, work: Params, x: FloatArray, local: IntArray, cols: IntArray) -> None:
        theta = self.net.params
        self.omega = grow_like(self.omega, theta)
        if not self.start:
            self.start = copy_params(theta)  # the first experience starts here
        omega = self.omega

        def on_step(grads: Params, delta: Params) -> None:
            add_rows(omega, {k: -grads[k] * delta[k] for k in grads}, cols)

        penalty = None
        if self.importance and self.si_c:
            c = self.si_c
            big = rows(grow_like(self.importance, theta), work, cols)
            star = rows(grow_like(self.anchor, theta), work, cols)
            penalty = pull({k: 2 * c * v for k, v in big.items()}, star, self.sgd.lr)
        rng = self.sgd.rng(self.calls)
        sgd_net(work, x, local, self.sgd, rng, penalty=penalty, on_step=on_step)

    def consolidate(self) -> None:
        theta = self.net.params
        if not theta:
            return
        omega, start = grow_like(self.omega, theta), grow_like(self.start, theta)
        big = grow_like(self.importance, theta)
        self.importance = {
            k: big[k] + omega[k] / ((theta[k] - start[k]) ** 2 + self.xi) for k in theta
        }
        self.anchor = copy_params(theta)
        self.start = copy_params(theta)
        self.omega = {k: np.zeros_like(v) for k, v in theta.items()}

    def more_state(self) -> State:
        return {
            name: copy_params(getattr(self, name))
            for name in ("omega", "start", "importance", "anchor")
        }

    def load_more(self, state: State) -> None:
        for name in ("omega", "start", "importance", "anchor"):
            setattr(self, name, load_params(state.get(name, {})))
