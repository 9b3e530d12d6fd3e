"""Batch normalisation frozen above AR1's cut, trained through without keeping its input.

Imported only with :mod:`edgecl.strategies.ar1_top`, when an AR1 is built.

The layers above the cut train with their batch normalisation frozen: running statistics,
weights that do not train. Torch's own batch normalisation still keeps its input for the
backward pass (its kernel also sums that input's products with the gradient, for a weight
gradient nobody asked for): an activation per normalisation, 5.8 of a chunk's 20 MiB for
block15 and the head on 8 block14 latents. The gradient with respect to the input needs
only the per-channel scale, so :class:`FrozenBatchNorm2d` keeps nothing else; it computes
the output with torch's function and the gradient as torch's CPU kernel does in
evaluation mode (``dy * invstd * w``, ``invstd`` rounded once from double), bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class _Frozen(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        mean: torch.Tensor,
        var: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
    ) -> torch.Tensor:
        ctx.save_for_backward(var, weight)
        ctx.eps = eps
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        var, weight = ctx.saved_tensors
        shape = (1, -1) + (1,) * (grad.dim() - 2)
        invstd = (1 / torch.sqrt(var.double() + ctx.eps)).float().view(shape)
        dx = grad * invstd
        if weight is not None:
            dx = dx * weight.view(shape)
        return dx, None, None, None, None, None


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """A :class:`torch.nn.BatchNorm2d` that always normalises with its running statistics
    and trains nothing of its own (same parameters, buffers and state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.running_mean is not None and self.running_var is not None
        out: torch.Tensor = _Frozen.apply(  # type: ignore[no-untyped-call]
            x, self.running_mean, self.running_var, self.weight, self.bias, self.eps
        )
        return out


def freeze_batchnorm(module: nn.Module) -> None:
    """Every batch normalisation of ``module`` with running statistics becomes frozen: its
    weights do not train, and a 2-d one keeps no activation for the backward pass."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for p in m.parameters():
                p.requires_grad_(False)
            if type(m) is nn.BatchNorm2d and m.track_running_stats:
                m.__class__ = FrozenBatchNorm2d  # in place: its tensors and names stay
    module.eval()  # running statistics are used, never updated
