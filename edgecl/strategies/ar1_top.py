"""The trainable layers above AR1's latent cut, with their Synaptic Intelligence state.

Imported only when an :class:`~edgecl.strategies.ar1.AR1` is built, so that listing the
strategies does not import torch.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgecl.protocols import Rows
from edgecl.state_views import owned
from edgecl.strategies.ar1_norm import freeze_batchnorm
from edgecl.strategies.ar1_si import SynapticIntelligence as SynapticIntelligence
from edgecl.strategies.cwr_star import tied_row
from edgecl.strategies.linear import SGD
from edgecl.types import FloatArray, IntArray, State


def _relu6_in_place(module: nn.Module) -> None:
    """Every ReLU6 clamps its input in place: in EfficientNet-Lite each follows a batch
    normalisation whose output nothing else reads, and the clamped values decide the
    gradient as the input would (inside (0, 6) exactly when the input is). One activation
    buffer fewer per ReLU6 in a forward pass, and the training is the same bit for bit."""
    for m in module.modules():
        if isinstance(m, nn.ReLU6):
            m.inplace = True


class _Minibatch:
    """Rows ``idx`` of ``rows``, read (decoded) a chunk at a time: a whole minibatch of
    block14 latents is 4.8 MB as float32, a chunk a few rows of it; each row's
    values are the same either way."""

    def __init__(self, rows: Rows, idx: IntArray) -> None:
        self.rows, self.idx = rows, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, part: slice) -> torch.Tensor:
        idx = self.idx[part]
        return torch.from_numpy(self.rows.take(idx).reshape(len(idx), -1))


class TrainableTop:
    """A torch module from latents ``(N, *in_shape)`` to features ``(N, features)``.

    ``top``: a block-cut build's manifest (the pretrained layers above the cut); else
    ``hidden`` > 0 builds one seeded ``Linear + ReLU6`` layer once the latent size is known;
    else there is no module and the features are the latents. ``si`` keeps the importance
    of its trainable parameters; ``chunk`` latents go through each training pass.

    >>> net = TrainableTop(None, hidden=3, threads=1, seed=0, chunk=4)
    >>> net.ensure_built(4)
    >>> net.features_of(np.ones((2, 4), np.float32)).shape
    (2, 3)
    """

    def __init__(
        self,
        top: str | None,
        hidden: int,
        threads: int,
        seed: int,
        chunk: int,
        si: SynapticIntelligence | None = None,
    ) -> None:
        torch.set_num_threads(threads)
        self.hidden, self.chunk = hidden, chunk
        self.seed = seed
        self.module: nn.Module | None = None
        self.in_shape: tuple[int, ...] = ()
        self.dim = 0
        self.features = 0
        self.si = si if si is not None else SynapticIntelligence(0.0, 1e-7, 0.001)
        if top is not None:
            from edgecl.backbones.build import load_top
            from edgecl.backbones.onnx import read_manifest

            self.in_shape = tuple(int(s) for s in read_manifest(top)["latent_shape"])
            self._install(load_top(top), math.prod(self.in_shape))

    def _install(self, module: nn.Module, dim: int) -> None:
        freeze_batchnorm(module)
        _relu6_in_place(module)
        self.module, self.dim = module, dim
        with torch.no_grad():
            self.features = int(module(torch.zeros(1, *self.in_shape)).shape[1])
        for name, p in self._trainable():
            self.si.track(name, p.detach().numpy())

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
        rows: Rows,
        y: IntArray,
        tw: FloatArray,
        sgd: SGD,
        *,
        lr: float,
        top_lr: float,
        rng: np.random.Generator,
        tied: float = 0.0,
    ) -> FloatArray:
        """One batch: ``sgd``'s epochs of minibatch SGD with momentum and weight decay on
        the output weights ``tw`` (rows: classes of ``y``, then, if ``tied``, one row for
        ``tied`` identical outputs, :func:`~edgecl.strategies.cwr_star.tied_row`) at
        ``lr`` and the module at ``top_lr`` (the velocity starts at zero), the module's
        gradient with the SI penalty; then the SI update. ``rows`` are read one minibatch
        at a time. Returns the trained ``tw``."""
        momentum, weight_decay = sgd.momentum, sgd.weight_decay
        named = self._trainable()
        params = [p for _, p in named]
        velocity = [torch.zeros_like(p) for p in params]
        shift, scale = (torch.from_numpy(a) for a in tied_row(len(tw), tied))
        w = torch.from_numpy(tw.copy()).requires_grad_(True)
        w_velocity = torch.zeros_like(w)
        yt = torch.from_numpy(y)
        # Every minibatch sums its gradient into these: made anew by each first chunk's
        # backward pass, they left holes in the heap among the chunks' activations.
        sums = [torch.empty_like(p) for p in [*params, w]]
        self.si.begin(named)
        for _ in range(sgd.epochs):
            order = rng.permutation(len(rows))
            for s in range(0, len(rows), sgd.batch_size):
                idx = order[s : s + sgd.batch_size]
                xb = _Minibatch(rows, idx)
                yb = yt[torch.from_numpy(idx)]
                grads = self._minibatch_grads(xb, yb, [*params, w], shift, sums)
                with torch.no_grad():
                    for k, p in enumerate(params):
                        g = self.si.gradient(k, p, grads[k])
                        velocity[k].mul_(momentum).add_(g + weight_decay * p)
                        step = -top_lr * velocity[k]
                        p.add_(step)
                        self.si.moved(k, g, step)
                    w_velocity.mul_(momentum).add_(grads[-1] * scale + weight_decay * w)
                    w.sub_(lr * w_velocity)
                del grads  # before the next minibatch's are summed
        with torch.no_grad():
            self.si.end(named)
        out: FloatArray = w.detach().numpy()
        return out

    def _minibatch_grads(
        self,
        x: torch.Tensor | _Minibatch,
        y: torch.Tensor,
        wrt: list[torch.Tensor],
        shift: torch.Tensor | None = None,
        sums: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Gradients of the minibatch's mean cross-entropy (logits plus ``shift``, if
        given), summed over chunks of
        ``chunk`` latents: batch normalisation is frozen, so no latent's loss
        depends on another's and the sum is the minibatch's gradient, while only one
        chunk's activations are alive at a time. Each chunk's gradient is added into the
        sum (``.grad``) as the backward pass makes it, one parameter at a time, so a
        chunk's whole set of gradients is never alive beside the sum."""
        for k, p in enumerate(wrt):
            p.grad = None if sums is None else sums[k].fill_(-0.0)
        for s in range(0, len(x), self.chunk):
            logits = self._forward(x[s : s + self.chunk]) @ wrt[-1].T
            if shift is not None:
                logits = logits + shift
            loss = F.cross_entropy(logits, y[s : s + self.chunk], reduction="sum") / len(x)
            del logits
            torch.autograd.backward(loss, inputs=wrt)
            del loss
        total = [p.grad for p in wrt]
        for p in wrt:
            p.grad = None
        assert all(g is not None for g in total)
        return cast(list[torch.Tensor], total)

    def state_dict(self) -> State:
        tensors: dict[str, Any] = {}
        if self.module is not None:
            tensors = {k: owned(v.detach().numpy()) for k, v in self.module.state_dict().items()}
        return {
            "dim": self.dim,
            "tensors": tensors,
            "omega": {k: owned(v) for k, v in self.si.total.items()},  # unclipped
            "theta_star": {k: owned(v) for k, v in self.si.star.items()},
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
        self.si.total = {k: np.array(v, dtype=np.float32) for k, v in state["omega"].items()}
        self.si.star = {k: np.array(v, dtype=np.float32) for k, v in state["theta_star"].items()}
