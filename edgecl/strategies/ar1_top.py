"""The trainable layers above AR1's latent cut, with their Synaptic Intelligence state.

Imported only when an :class:`~edgecl.strategies.ar1.AR1` is built, so that listing the
strategies does not import torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgecl.strategies.linear import SGD
from edgecl.types import AnyArray, FloatArray, IntArray, State

# Latents per forward and backward pass in training: block15's expanded activations of a
# whole minibatch of 128 are most of AR1's peak memory, and the gradient is the same.
TRAIN_CHUNK = 8


def _freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for p in m.parameters():
                p.requires_grad_(False)
    module.eval()  # running statistics are used, never updated


class TrainableTop:
    """A torch module from latents ``(N, *in_shape)`` to features ``(N, features)``.

    ``top``: a block-cut build's manifest (the pretrained layers above the cut); else
    ``hidden`` > 0 builds one seeded ``Linear + ReLU6`` layer once the latent size is known;
    else there is no module and the features are the latents.

    >>> net = TrainableTop(None, hidden=3, threads=1, seed=0)
    >>> net.ensure_built(4)
    >>> net.features_of(np.ones((2, 4), np.float32)).shape
    (2, 3)
    """

    def __init__(self, top: str | None, hidden: int, threads: int, seed: int) -> None:
        torch.set_num_threads(threads)
        self.hidden = hidden
        self.seed = seed
        self.module: nn.Module | None = None
        self.in_shape: tuple[int, ...] = ()
        self.dim = 0
        self.features = 0
        self.omega: dict[str, AnyArray] = {}  # importance Ω per trainable parameter
        self.theta_star: dict[str, AnyArray] = {}  # parameters at the end of the last batch
        if top is not None:
            from edgecl.backbones.build import load_top
            from edgecl.backbones.onnx import read_manifest

            self.in_shape = tuple(int(s) for s in read_manifest(top)["latent_shape"])
            self._install(load_top(top), math.prod(self.in_shape))

    def _install(self, module: nn.Module, dim: int) -> None:
        _freeze_batchnorm(module)
        self.module, self.dim = module, dim
        with torch.no_grad():
            self.features = int(module(torch.zeros(1, *self.in_shape)).shape[1])
        for name, p in self._trainable():
            self.omega[name] = np.zeros(tuple(p.shape), dtype=np.float32)
            self.theta_star[name] = p.detach().numpy().copy()

    def ensure_built(self, dim: int) -> None:
        """Fix the latent size (on the first batch, when there is no ``top``)."""
        if self.dim:
            return
        if not self.hidden:
            self.dim = self.features = dim
            return
        self.in_shape = (dim,)
        gen = torch.Generator().manual_seed(self.seed)
        layer = nn.Linear(dim, self.hidden)
        with torch.no_grad():
            bound = 1.0 / math.sqrt(dim)
            layer.weight.uniform_(-bound, bound, generator=gen)
            layer.bias.uniform_(-bound, bound, generator=gen)
        self._install(nn.Sequential(layer, nn.ReLU6()), dim)

    def _trainable(self) -> list[tuple[str, nn.Parameter]]:
        if self.module is None:
            return []
        return [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.module is None:
            return x
        out: torch.Tensor = self.module(x.reshape(len(x), *self.in_shape))
        return out

    def features_of(self, x: FloatArray) -> FloatArray:
        """Features of flat latents ``(N, dim)``, without gradients."""
        if self.module is None:
            return x
        with torch.no_grad():
            out: FloatArray = self._forward(torch.from_numpy(np.ascontiguousarray(x))).numpy()
        return out

    def train_batch(
        self,
        x: FloatArray,
        y: IntArray,
        tw: FloatArray,
        sgd: SGD,
        *,
        top_lr: float,
        si_lambda: float,
        si_xi: float,
        rng: np.random.Generator,
    ) -> FloatArray:
        """SGD on the module and output weights ``tw`` (rows: classes of ``y``); SI update."""
        lr, momentum, weight_decay = sgd.lr, sgd.momentum, sgd.weight_decay
        epochs, batch_size = sgd.epochs, sgd.batch_size
        named = self._trainable()
        params = [p for _, p in named]
        big = [torch.from_numpy(self.omega[n]) for n, _ in named]
        star = [torch.from_numpy(self.theta_star[n]) for n, _ in named]
        start = [p.detach().clone() for p in params]
        path = [torch.zeros_like(p) for p in params]  # ω, this batch's path integral
        velocity = [torch.zeros_like(p) for p in params]
        w = torch.from_numpy(tw.copy()).requires_grad_(True)
        w_velocity = torch.zeros_like(w)
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)
        for _ in range(epochs):
            order = torch.from_numpy(rng.permutation(len(x)))
            for s in range(0, len(x), batch_size):
                idx = order[s : s + batch_size]
                grads = self._minibatch_grads(xt[idx], yt[idx], [*params, w])
                with torch.no_grad():
                    for k, p in enumerate(params):
                        g = grads[k] + weight_decay * p + 2.0 * si_lambda * big[k] * (p - star[k])
                        velocity[k].mul_(momentum).add_(g)
                        step = -top_lr * velocity[k]
                        p.add_(step)
                        path[k].sub_(grads[k] * step)  # ω += -g_task Δθ
                    w_velocity.mul_(momentum).add_(grads[-1] + weight_decay * w)
                    w.sub_(lr * w_velocity)
        cap = 1.0 / (2.0 * si_lambda * top_lr) if si_lambda > 0 else math.inf
        with torch.no_grad():
            for k, (name, p) in enumerate(named):
                gained = path[k].clamp(min=0.0) / ((p - start[k]) ** 2 + si_xi)
                self.omega[name] = (big[k] + gained).clamp(max=cap).numpy()
                self.theta_star[name] = p.detach().numpy().copy()
        out: FloatArray = w.detach().numpy()
        return out

    def _minibatch_grads(
        self, x: torch.Tensor, y: torch.Tensor, wrt: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Gradients of the minibatch's mean cross-entropy, summed over chunks of
        :data:`TRAIN_CHUNK` latents: batch normalisation is frozen, so no latent's loss
        depends on another's and the sum is the minibatch's gradient, while only one
        chunk's activations are alive at a time."""
        total: list[torch.Tensor] | None = None
        for s in range(0, len(x), TRAIN_CHUNK):
            logits = self._forward(x[s : s + TRAIN_CHUNK]) @ wrt[-1].T
            loss = F.cross_entropy(logits, y[s : s + TRAIN_CHUNK], reduction="sum") / len(x)
            grads = torch.autograd.grad(loss, wrt)
            if total is None:
                total = list(grads)
            else:
                for a, g in zip(total, grads, strict=True):
                    a.add_(g)  # in place: the same sum without a second set of buffers
        assert total is not None
        return total

    def state_dict(self) -> State:
        tensors: dict[str, Any] = {}
        if self.module is not None:
            tensors = {k: v.detach().numpy().copy() for k, v in self.module.state_dict().items()}
        return {
            "dim": self.dim,
            "tensors": tensors,
            "omega": {k: v.copy() for k, v in self.omega.items()},
            "theta_star": {k: v.copy() for k, v in self.theta_star.items()},
        }

    def load_state_dict(self, state: State) -> None:
        dim = int(state["dim"])
        if dim and not self.dim:
            self.ensure_built(dim)
        if dim != self.dim:
            raise ValueError(f"state is for {dim}-d latents, this top takes {self.dim}-d")
        if self.module is not None:
            self.module.load_state_dict(
                {k: torch.from_numpy(np.array(v)) for k, v in state["tensors"].items()}
            )
        self.omega = {k: np.array(v, dtype=np.float32) for k, v in state["omega"].items()}
        self.theta_star = {k: np.array(v, dtype=np.float32) for k, v in state["theta_star"].items()}
