"""Synaptic Intelligence for the layers above AR1's latent cut (torch tensors, NumPy state).

Imported only with :mod:`edgecl.strategies.ar1_top`, when an AR1 is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from edgecl.types import AnyArray


class SynapticIntelligence:
    """The reference AR1* code's Synaptic Intelligence (``utils.py`` of
    vlomonaco/ar1-pytorch; Avalanche's ``SynapticIntelligencePlugin`` is the same), per
    named parameter.

    Within a batch, after every optimiser step the path ``t += g Δθ`` grows, ``g`` the
    gradient of the whole loss (task plus this penalty, not the weight decay) and ``Δθ``
    the step taken. At the end of the batch ``total -= t / ((θ_end - θ_start)² + xi)``,
    unclipped and never clamped at zero, and ``θ* = θ_end``. The importance is
    ``Ω = min(total, clip)``; the penalty ``(lam / 2) Σ Ω (θ - θ*)²`` adds ``lam Ω (θ - θ*)``
    to the gradient.

    >>> si = SynapticIntelligence(lam=1.0, xi=0.0, clip=10.0)
    >>> si.track("w", np.array([0.0], np.float32))
    >>> w = torch.tensor([0.0])
    >>> si.begin([("w", w)])
    >>> g = si.gradient(0, w, torch.tensor([-2.0]))  # a loss slope of -2; Ω = 0 so far
    >>> step = -0.5 * g
    >>> w += step
    >>> si.moved(0, g, step)
    >>> si.end([("w", w)])
    >>> si.omega("w").tolist(), si.star["w"].tolist()  # -(-2 * 1) / 1², θ* = 1
    ([2.0], [1.0])
    """

    def __init__(self, lam: float, xi: float, clip: float) -> None:
        self.lam, self.xi, self.clip = lam, xi, clip
        self.total: dict[str, AnyArray] = {}  # Σ over batches of -t / (Δ² + xi), unclipped
        self.star: dict[str, AnyArray] = {}  # θ* : the parameters at the end of the last batch
        self._start: list[torch.Tensor] = []
        self._path: list[torch.Tensor] = []
        self._omega: list[torch.Tensor] = []
        self._star: list[torch.Tensor] = []

    def track(self, name: str, value: AnyArray) -> None:
        """A parameter of no importance yet, anchored at ``value``."""
        self.total[name] = np.zeros(value.shape, dtype=np.float32)
        self.star[name] = np.array(value, dtype=np.float32)

    def omega(self, name: str) -> AnyArray:
        """The importance ``Ω`` of parameter ``name``."""
        return np.minimum(self.total[name], np.float32(self.clip))

    def begin(self, named: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Start a batch from the current values of ``named``."""
        self._star = [torch.from_numpy(self.star[n]) for n, _ in named]
        # θ* is where the last batch ended, so normally the start itself: no copy then.
        self._start = [
            star if torch.equal(star, p) else p.detach().clone()
            for star, (_, p) in zip(self._star, named, strict=True)
        ]
        self._path = [torch.zeros_like(p) for _, p in named]
        # Ω only enters the gradient when the penalty is on (the importance is tracked anyway).
        self._omega = [torch.from_numpy(self.omega(n)) for n, _ in named] if self.lam else []

    def gradient(self, k: int, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The whole loss's gradient for the ``k``-th parameter ``p``, from its task's ``g``."""
        if not self.lam:
            return g
        return g + self.lam * self._omega[k] * (p - self._star[k])

    def moved(self, k: int, g: torch.Tensor, step: torch.Tensor) -> None:
        """The ``k``-th parameter took ``step`` where the loss's gradient was ``g``."""
        self._path[k].add_(g * step)

    def end(self, named: Sequence[tuple[str, torch.Tensor]]) -> None:
        """Fold this batch's path into the importance; the anchors move to ``named``'s values."""
        for k, (name, p) in enumerate(named):
            end = p.detach()
            gained = self._path[k] / ((end - self._start[k]) ** 2 + self.xi)
            # In place: arrays made anew each batch were scattered among its freed buffers.
            np.subtract(self.total[name], gained.numpy(), out=self.total[name])
            np.copyto(self.star[name], end.numpy())
        self._start, self._path, self._omega, self._star = [], [], [], []
