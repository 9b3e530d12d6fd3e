"""Sample inputs as transports decode them, and their embedding into latents."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgecl.backbones.preprocess import check_image, decode_image
from edgecl.learner import Learner
from edgecl.types import FloatArray

InputKind = Literal["image", "array", "features"]


class SampleError(ValueError):
    """A sample of a request is unusable; ``index`` says which one.

    >>> str(SampleError(3, "image bytes are empty"))
    'samples[3]: image bytes are empty'
    """

    def __init__(self, index: int, message: str) -> None:
        super().__init__(f"samples[{index}]: {message}")
        self.index = index
        self.message = message


@dataclass(frozen=True)
class SampleInput:
    """One sample: encoded ``image`` bytes, a raw ``array``, or a latent ``features`` vector.

    >>> SampleInput("features", np.zeros(4, np.float32)).kind
    'features'
    """

    kind: InputKind
    value: bytes | np.ndarray[Any, Any]


class Embedder:
    """Turns sample inputs into latents with the learner's backbone.

    ``pixels`` says what the backbone eats: ``"image"`` for image backbones (images are
    decoded to RGB arrays, arrays must be images), ``"vector"`` for the identity backbone
    (images are decoded to grayscale and flattened, arrays are flattened).

    >>> from edgecl import strategies
    >>> from edgecl.backbones import IdentityBackbone
    >>> embedder = Embedder(Learner(IdentityBackbone(2), strategies.create("ncm")), "vector")
    >>> embedder.embed([SampleInput("array", np.array([1, 2])),
    ...                 SampleInput("features", np.array([3.0, 4.0]))]).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """

    def __init__(self, learner: Learner, pixels: Literal["image", "vector"]) -> None:
        self.learner = learner
        self.pixels = pixels

    def _prepare(self, sample: SampleInput) -> np.ndarray[Any, Any]:
        if isinstance(sample.value, bytes):
            pixels = decode_image(sample.value)
            if self.pixels == "vector":
                gray: np.ndarray[Any, Any] = pixels.mean(axis=2, dtype=np.float32) / 255.0
                return gray.reshape(-1)
            return pixels
        arr = np.asarray(sample.value)
        if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
            raise ValueError(f"array must hold numbers, got dtype {arr.dtype}")
        if self.pixels == "vector":
            return arr.reshape(-1)
        if arr.dtype.kind in "iu":
            # JSON has no uint8: integer pixels arrive as int64.
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError("integer pixel values must lie in 0..255")
            arr = arr.astype(np.uint8)
        return check_image(arr)

    def embed_kept(self, samples: Sequence[SampleInput]) -> tuple[FloatArray, np.ndarray[Any, Any]]:
        """Latents and the prepared uint8 inputs a raw-input store keeps (no ``features``)."""
        if not samples:
            raise ValueError("give at least one sample")
        kept = []
        for i, sample in enumerate(samples):
            if sample.kind == "features":
                raise SampleError(
                    i,
                    "the replay store keeps raw images, so learn images or pixel arrays, "
                    "not features",
                )
            try:
                kept.append(self.learner.prepare_inputs(self._prepare(sample)[None, ...])[0])
            except ValueError as exc:
                raise SampleError(i, str(exc)) from None
        raw = np.stack(kept)
        return self.learner.embed(raw), raw

    def embed(self, samples: Sequence[SampleInput]) -> FloatArray:
        """Latents ``(N, *latent_shape)``; ``SampleError`` names the first bad sample."""
        if not samples:
            raise ValueError("give at least one sample")
        out = np.empty((len(samples), *self.learner.latent_shape), dtype=np.float32)
        groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
        prepared: dict[int, np.ndarray[Any, Any]] = {}
        for i, sample in enumerate(samples):
            try:
                if sample.kind == "features":
                    out[i] = self.learner.check_latents(np.asarray(sample.value)[None, ...])[0]
                    continue
                arr = self._prepare(sample)
            except ValueError as exc:
                raise SampleError(i, str(exc)) from None
            prepared[i] = arr
            groups.setdefault((arr.shape, arr.dtype.str), []).append(i)
        # Same-shaped inputs are embedded as one batch.
        for indices in groups.values():
            try:
                out[indices] = self.learner.embed(np.stack([prepared[i] for i in indices]))
            except ValueError as exc:
                raise SampleError(indices[0], str(exc)) from None
        return out
