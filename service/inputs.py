"""Sample inputs as transports decode them, and their embedding into latents."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgecl import memory
from edgecl.backbones.preprocess import check_image
from edgecl.batch import latents as checked_latents
from edgecl.batch import numeric
from edgecl.protocols import Backbone
from edgecl.types import FloatArray
from service.budget import Budget
from service.decoding import decode
from service.embed_batching import EmbedBatcher
from service.errors import SampleError
from service.settings import DEFAULT_DECODE_PIXELS, DEFAULT_REQUEST_PIXELS

InputKind = Literal["image", "array", "features"]


@dataclass(frozen=True)
class SampleInput:
    """One sample: encoded ``image`` bytes, a raw ``array``, or a latent ``features`` vector.

    >>> SampleInput("features", np.zeros(4, np.float32)).kind
    'features'
    """

    kind: InputKind
    value: bytes | np.ndarray[Any, Any]


class Embedder:
    """Turns sample inputs into latents with a backbone (the learner's, which a restore
    keeps).

    ``pixels`` says what the backbone eats: ``"image"`` for image backbones (images are
    decoded to RGB arrays, arrays must be images), ``"vector"`` for the identity backbone
    (images are decoded to grayscale and flattened, arrays are flattened).

    Memory stays bounded whatever a request holds: images are decoded one at a time
    within ``budget`` (see :mod:`service.decoding`) and resized to the backbone's input
    at once, and a request may decode at most ``max_request_pixels`` pixels in all. With a
    ``batcher`` (:mod:`service.embed_batching`), concurrent calls share backbone runs,
    predictions first; without one, at most ``max_runs`` calls run the backbone at once
    (each run holds its own activations: 32 concurrent 8-image requests took the daemon to
    799 MiB against 520 after 8).

    >>> from edgecl.backbones import IdentityBackbone
    >>> embedder = Embedder(IdentityBackbone(2), "vector")
    >>> embedder.embed([SampleInput("array", np.array([1, 2])),
    ...                 SampleInput("features", np.array([3.0, 4.0]))]).tolist()
    [[1.0, 2.0], [3.0, 4.0]]
    """

    def __init__(
        self,
        backbone: Backbone,
        pixels: Literal["image", "vector"],
        *,
        budget: Budget | None = None,
        max_request_pixels: int = DEFAULT_REQUEST_PIXELS,
        batcher: EmbedBatcher | None = None,
        max_runs: int | None = None,
    ) -> None:
        self.backbone = backbone
        self.batcher = batcher  # runs concurrent requests' inputs as one backbone batch
        if max_runs is not None and max_runs < 1:
            raise ValueError(f"max_runs must be at least 1, got {max_runs}")
        self._runs: AbstractContextManager[Any] = (
            nullcontext() if max_runs is None else threading.BoundedSemaphore(max_runs)
        )
        self.latent_shape = tuple(backbone.latent_shape)
        self.pixels = pixels
        self.budget = budget if budget is not None else Budget(DEFAULT_DECODE_PIXELS)
        self.max_request_pixels = max_request_pixels
        size = getattr(backbone, "input_size", None)
        # Images may be reduced while decoded as long as they stay at least this long.
        self.fit = max(size) if isinstance(size, tuple) and pixels == "image" else None
        self.resizes = pixels == "image" and callable(getattr(backbone, "prepare", None))

    def _prepared(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Inputs as a raw-input store keeps them (the store checks its item shape)."""
        return memory.prepare(self.backbone, None, numeric(x))

    def _embed(self, x: np.ndarray[Any, Any], urgent: bool = True) -> FloatArray:
        x = numeric(x)
        if self.batcher is not None:
            out = self.batcher.embed(x, urgent)
        else:
            with self._runs:
                out = self.backbone.embed(x)
        return checked_latents(out, self.latent_shape)

    def close(self) -> None:
        """Stop the batcher's thread (later embeds run alone)."""
        if self.batcher is not None:
            self.batcher.close()

    def _decode(self, data: bytes) -> tuple[np.ndarray[Any, Any], int]:
        if self.pixels == "vector":
            # The identity backbone takes images of exactly its latent size: no larger one
            # is worth decoding.
            size = int(np.prod(self.latent_shape))
            why = f"this backbone takes images of {size} pixels, as its features"
            pixels, n = decode(data, self.budget, max_pixels=size, why=why)
            gray: np.ndarray[Any, Any] = pixels.mean(axis=2, dtype=np.float32) / 255.0
            return gray.reshape(-1), n
        return decode(data, self.budget, fit=self.fit)

    def _prepare(self, sample: SampleInput) -> tuple[np.ndarray[Any, Any], int]:
        """One sample as the backbone takes it, and the pixels decoded for it. An image
        backbone's own resize is applied at once: a request holds small images only."""
        decoded = 0
        if isinstance(sample.value, bytes):
            arr, decoded = self._decode(sample.value)
            if self.pixels == "vector":
                return arr, decoded
            if not self.resizes and arr.shape[2] == 1:
                arr = np.repeat(arr, 3, axis=2)  # grayscale as RGB, as such backbones take it
        else:
            arr = np.asarray(sample.value)
            if arr.dtype == np.bool_ or arr.dtype.kind not in "iuf":
                raise ValueError(f"array must hold numbers, got dtype {arr.dtype}")
            if self.pixels == "vector":
                return arr.reshape(-1), 0
            if arr.dtype.kind in "iu":
                # JSON has no uint8: integer pixels arrive as int64.
                if arr.size and (arr.min() < 0 or arr.max() > 255):
                    raise ValueError("integer pixel values must lie in 0..255")
                arr = arr.astype(np.uint8)
            arr = check_image(arr)
        if self.resizes:
            arr = self._prepared(arr[None, ...])[0]
        return arr, decoded

    def _each(
        self, samples: Sequence[SampleInput], latents: FloatArray | None = None
    ) -> Iterator[tuple[int, np.ndarray[Any, Any]]]:
        """``(index, prepared)`` of the samples, one at a time, in order; ``features``
        are checked into ``latents`` instead."""
        spent = 0
        for i, sample in enumerate(samples):
            try:
                if sample.kind == "features" and latents is not None:
                    value = np.asarray(sample.value)[None]
                    latents[i] = checked_latents(value, self.latent_shape)[0]
                    continue
                arr, decoded = self._prepare(sample)
            except ValueError as exc:
                raise SampleError(i, str(exc)) from None
            spent += decoded
            if spent > self.max_request_pixels:
                raise SampleError(
                    i,
                    f"the images of this request decode to more than {self.max_request_pixels}"
                    " pixels in all; send fewer or smaller images per request",
                )
            yield i, arr

    def embed_kept(self, samples: Sequence[SampleInput]) -> tuple[FloatArray, np.ndarray[Any, Any]]:
        """Latents and the prepared uint8 inputs a raw-input store keeps (no ``features``),
        for learning."""
        if not samples:
            raise ValueError("give at least one sample")
        for i, sample in enumerate(samples):
            if sample.kind == "features":
                raise SampleError(
                    i,
                    "the replay store keeps raw images, so learn images or pixel arrays, "
                    "not features",
                )
        kept = []
        for i, arr in self._each(samples):
            try:
                kept.append(arr if self.resizes else self._prepared(arr[None])[0])
            except ValueError as exc:
                raise SampleError(i, str(exc)) from None
        raw = np.stack(kept)
        return self._embed(raw, urgent=False), raw

    def embed(self, samples: Sequence[SampleInput], urgent: bool = True) -> FloatArray:
        """Latents ``(N, *latent_shape)``; ``SampleError`` names the first bad sample.
        Not ``urgent`` (learning): with a batcher, predictions run first."""
        if not samples:
            raise ValueError("give at least one sample")
        out = np.empty((len(samples), *self.latent_shape), dtype=np.float32)
        groups: dict[tuple[tuple[int, ...], str], list[int]] = {}
        prepared: dict[int, np.ndarray[Any, Any]] = {}
        for i, arr in self._each(samples, out):
            prepared[i] = arr
            groups.setdefault((arr.shape, arr.dtype.str), []).append(i)
        # Same-shaped inputs are embedded as one batch.
        for indices in groups.values():
            try:
                out[indices] = self._embed(np.stack([prepared[i] for i in indices]), urgent)
            except ValueError as exc:
                raise SampleError(indices[0], str(exc)) from None
        return out
