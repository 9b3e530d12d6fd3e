"""Class-incremental streams of latents: Split-Fashion-MNIST and the like."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.types import FloatArray, IntArray, State

#: Split-Fashion-MNIST, class-incremental: 5 experiences of 2 classes, class order 0..9.
SPLIT_FASHION = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


@dataclass(frozen=True)
class Latents:
    """Latents ``(N, *shape)`` float32 and integer labels ``(N,)``."""

    z: FloatArray
    y: IntArray

    def __len__(self) -> int:
        return len(self.y)

    def of_classes(self, classes: Sequence[int]) -> Latents:
        mask = np.isin(self.y, classes)
        return Latents(self.z[mask], self.y[mask])


@dataclass(frozen=True)
class ClassIncrementalStream:
    """Experiences of new classes, each learned once, in order; tests over seen classes.

    Within an experience the samples come in a seeded random order (its classes mixed).

    >>> rng = np.random.default_rng(0)
    >>> train = Latents(rng.normal(size=(40, 3)).astype(np.float32), np.arange(40) % 4)
    >>> stream = ClassIncrementalStream(train, train, ((0, 1), (2, 3)))
    >>> [sorted(set(e.y.tolist())) for e in stream.experiences()]
    [[0, 1], [2, 3]]
    >>> len(stream.test_seen(0)), len(stream.test_seen(1))
    (20, 40)
    """

    train: Latents
    test: Latents
    classes: tuple[tuple[int, ...], ...]
    seed: int = 0

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.train.z.shape[1:])

    def experiences(self) -> list[Latents]:
        out = []
        for i, classes in enumerate(self.classes):
            part = self.train.of_classes(classes)
            order = np.random.default_rng([self.seed, i]).permutation(len(part))
            out.append(Latents(part.z[order], part.y[order]))
        return out

    def test_seen(self, experience: int) -> Latents:
        """Test samples of every class of experiences ``0..experience``."""
        seen = [c for classes in self.classes[: experience + 1] for c in classes]
        return self.test.of_classes(seen)


class PrecomputedBackbone:
    """A stand-in backbone for streams embedded beforehand: inputs already are latents.

    >>> PrecomputedBackbone((2, 3)).embed(np.zeros((4, 2, 3))).shape
    (4, 2, 3)
    """

    def __init__(self, latent_shape: tuple[int, ...]) -> None:
        self.latent_shape = tuple(latent_shape)

    def embed(self, x: np.ndarray[Any, Any]) -> FloatArray:
        arr = np.asarray(x, dtype=np.float32)
        if tuple(arr.shape[1:]) != self.latent_shape:
            raise ValueError(f"expected latents of shape {self.latent_shape}, got {arr.shape[1:]}")
        return arr

    def spec(self) -> State:
        # Not rebuildable by edgecl.backbones.from_spec: benchmarks never save learners.
        return {"kind": "precomputed", "shape": list(self.latent_shape)}


def subset(n_total: int, limit: int | None) -> IntArray:
    """Indices of the first ``limit`` samples (all when ``limit`` is None).

    >>> subset(10, 3).tolist(), len(subset(10, None))
    ([0, 1, 2], 10)
    """
    n = n_total if limit is None else min(limit, n_total)
    return np.arange(n, dtype=np.int64)


#: Image streams ``edgecl bench cl --stream`` knows: name -> what it is.
STREAMS = {
    "fashion": "Fashion-MNIST (Debian's dataset-fashion-mnist)",
    "digits": "scikit-learn's handwritten digits (8x8, shipped in its package)",
}


def fashion_latents(
    cache_dir: str | os.PathLike[str],
    backbone_dir: str | os.PathLike[str],
    cut: str,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    threads: int = 1,
    stream: str = "fashion",
) -> tuple[Latents, Latents, Path]:
    """Latents of a stream's images at ``cut`` (built and cached as needed) and the manifest:
    the full Fashion-MNIST by default, or another of ``STREAMS``.

    The first ``limit_train`` / ``limit_test`` images of each split are used when given
    (the sets are in random class order, so a prefix stays about class-balanced).
    """
    from edgecl.backbones.build import ensure_backbone
    from edgecl.bench.latents import backbone_cache
    from edgecl.datasets import load_digits, load_full

    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose one of {sorted(STREAMS)}")
    manifest = ensure_backbone(backbone_dir, cut)
    train, test = load_full() if stream == "fashion" else load_digits()
    cache, _ = backbone_cache(cache_dir, manifest, threads)
    prefix = "" if stream == "fashion" else f"{stream}-"
    out = []
    for name, split, limit in (("train", train, limit_train), ("test", test, limit_test)):
        idx = subset(len(split.labels), limit)
        z = cache.latents(prefix + name, split.images, idx)
        out.append(Latents(z, split.labels[idx]))
    return out[0], out[1], manifest


def split_classes(n_classes: int, per_experience: int) -> tuple[tuple[int, ...], ...]:
    """Class order ``0..n_classes-1`` cut into experiences of ``per_experience`` classes.

    >>> split_classes(5, 2), split_classes(3, 1)
    (((0, 1), (2, 3), (4,)), ((0,), (1,), (2,)))
    """
    if per_experience < 1:
        raise ValueError(f"classes per experience must be at least 1, got {per_experience}")
    return tuple(
        tuple(range(start, min(start + per_experience, n_classes)))
        for start in range(0, n_classes, per_experience)
    )


def holdout(train: Latents, fraction: float, seed: int) -> tuple[Latents, Latents]:
    """``train`` split into (fit, validation), ``fraction`` of each class held out (seeded):
    options are chosen on the validation part, never on the test set.

    >>> data = Latents(np.zeros((20, 1), np.float32), np.arange(20) % 2)
    >>> fit, val = holdout(data, 0.2, 0)
    >>> len(fit), len(val), sorted(np.bincount(val.y).tolist())
    (16, 4, [2, 2])
    """
    rng = np.random.default_rng([seed, 7])
    held = np.zeros(len(train), dtype=bool)
    for c in np.unique(train.y):
        idx = np.flatnonzero(train.y == c)
        held[rng.choice(idx, size=int(round(fraction * len(idx))), replace=False)] = True
    return Latents(train.z[~held], train.y[~held]), Latents(train.z[held], train.y[held])
