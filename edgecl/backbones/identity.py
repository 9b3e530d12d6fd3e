"""A backbone whose inputs already are latents: for tests and for feature streams."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgecl.types import FloatArray, State


class IdentityBackbone:
    """Passes ``(N, dim)`` inputs through as float32 latents.

    >>> IdentityBackbone(3).embed(np.ones((2, 3))).shape
    (2, 3)
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = dim
        self.latent_shape: tuple[int, ...] = (dim,)

    def embed(self, x: np.ndarray[Any, Any]) -> FloatArray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected inputs of shape (N, {self.dim}), got {tuple(x.shape)}")
        return x.astype(np.float32, copy=True)

    def spec(self) -> State:
        return {"kind": "identity", "dim": self.dim}
