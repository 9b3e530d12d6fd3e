"""Latents of a split through a built backbone, embedded once and cached on disk.

Embedding the 70k Fashion-MNIST images through EfficientNet-Lite0 takes minutes (about
100 images/s per core), so latents are computed in chunks of :data:`CHUNK` images and
each chunk is saved as it is done: an interrupted run resumes where it stopped, and a
run on a subset embeds only the chunks it needs. The cache is keyed by the backbone
model's sha256, so a rebuilt backbone never reuses stale latents.

Pooled latents are kept as float32 (exactly what the backbone returned). Block-cut
latents are large (9408 values per image at ``block14``) and kept as float16: the int8
backbone's outputs lie on a grid of about 0.3, and float16 rounds them by less than a
tenth of that step.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl.types import AnyArray, FloatArray

log = logging.getLogger("edgecl.bench")

CHUNK = 1000


class LatentCache:
    """Chunked on-disk cache of one backbone's latents for named image sets.

    ``embed`` turns a uint8 image batch into latents; ``key`` names the backbone (its model
    sha256). Chunk ``k`` of set ``name`` holds the latents of images ``k*CHUNK`` onwards.

    >>> import tempfile
    >>> images = np.arange(5 * 4, dtype=np.uint8).reshape(5, 2, 2)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cache = LatentCache(tmp, "toy", lambda x: x.reshape(len(x), -1) / 255.0, chunk=2)
    ...     z = cache.latents("train", images, np.array([4, 0]))
    ...     sorted(p.name for p in cache.directory.iterdir())
    ['train-0000.npy', 'train-0002.npy']
    >>> z.shape, z.dtype
    ((2, 4), dtype('float32'))
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        key: str,
        embed: Callable[[AnyArray], AnyArray],
        *,
        dtype: str = "float32",
        chunk: int = CHUNK,
    ) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
        self.directory = Path(root) / key
        self.embed = embed
        self.dtype = np.dtype(dtype)
        self.chunk = chunk

    def _chunk_path(self, name: str, k: int) -> Path:
        return self.directory / f"{name}-{k:04d}.npy"

    def latents(self, name: str, images: npt.NDArray[np.uint8], indices: AnyArray) -> FloatArray:
        """Float32 latents of ``images[indices]``, embedding (and saving) missing chunks."""
        idx = np.asarray(indices, dtype=np.int64)
        if not len(idx):
            raise ValueError("no indices: nothing to embed")
        if idx.min() < 0 or idx.max() >= len(images):
            raise ValueError(f"indices out of range for {len(images)} images")
        self.directory.mkdir(parents=True, exist_ok=True)
        chunks = np.unique(idx // self.chunk)
        parts: dict[int, AnyArray] = {}
        started, done = time.perf_counter(), 0
        for k in chunks.tolist():
            path = self._chunk_path(name, k)
            if not path.exists():
                block = images[k * self.chunk : (k + 1) * self.chunk]
                z = np.asarray(self.embed(block)).astype(self.dtype)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, z)
                os.replace(tmp, path)  # a chunk is either whole or absent
                done += len(block)
                rate = done / max(time.perf_counter() - started, 1e-9)
                log.info("embedded %s chunk %d (%d images, %.0f images/s)", name, k, done, rate)
            parts[k] = np.load(path, mmap_mode="r")
        out = np.empty((len(idx), *parts[int(chunks[0])].shape[1:]), dtype=np.float32)
        for k, part in parts.items():
            sel = np.flatnonzero(idx // self.chunk == k)
            out[sel] = part[idx[sel] - k * self.chunk]
        return out

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Record what the cache holds (backbone manifest, cut) next to the chunks; a
        record that says the same is left as it is (a shared or read-only cache)."""
        path, text = self.directory / "meta.json", json.dumps(meta, indent=2, sort_keys=True)
        if path.exists() and path.read_text() == text:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def backbone_cache(
    root: str | os.PathLike[str], manifest_path: str | os.PathLike[str], threads: int = 1
) -> tuple[LatentCache, tuple[int, ...]]:
    """A cache for the build at ``manifest_path`` and its latent shape (ONNX loaded lazily)."""
    from edgecl.backbones.onnx import read_manifest

    manifest = read_manifest(manifest_path)
    shape = tuple(int(s) for s in manifest["latent_shape"])
    holder: dict[str, Any] = {}

    def embed(images: AnyArray) -> AnyArray:
        if "backbone" not in holder:
            from edgecl.backbones.onnx import OnnxBackbone

            holder["backbone"] = OnnxBackbone.from_manifest(manifest_path, intra_op_threads=threads)
        out: AnyArray = holder["backbone"].embed(images)
        return out

    key = f"{manifest['name']}-{manifest['model']['sha256'][:12]}"
    dtype = "float32" if manifest["cut"] == "pooled" else "float16"
    cache = LatentCache(root, key, embed, dtype=dtype)
    cache.write_meta({"manifest": str(Path(manifest_path).resolve()), "cut": manifest["cut"]})
    return cache, shape
