"""Product quantization of latents (Jégou et al. 2011), as REMIND (Hayes et al. 2020) stores them.

A latent of ``D`` values is cut into ``M`` sub-vectors of ``L = ceil(D / M)`` values (zero
padded); each sub-vector is replaced by the index of its nearest centroid in a codebook of
``K <= 256`` centroids learned by k-means, so an item costs ``M`` bytes of codes. The
codebooks (float16, ``M * K * L * 2`` bytes) are learned once, on the first items.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from edgecl import replay
from edgecl.registry import Configurable
from edgecl.replay.base import check_int, rng_state, set_rng_state
from edgecl.replay.compress import CODES, check_batch, check_encoding
from edgecl.types import AnyArray, FloatArray, IntArray, State

Codes = npt.NDArray[np.uint8]


class ProductQuantizer:
    """Codebooks ``(M, K, L)`` and the encode/decode they define.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 8)).astype(np.float32)
    >>> pq = ProductQuantizer.fit(x, subvectors=4, centroids=16, rng=rng)
    >>> codes = pq.encode(x)
    >>> codes.shape, codes.dtype, pq.nbytes
    ((500, 4), dtype('uint8'), 256)
    >>> bool(np.mean((pq.decode(codes) - x) ** 2) < 0.5 * np.mean(x**2))
    True
    """

    def __init__(self, codebooks: AnyArray, dim: int) -> None:
        self.codebooks = np.asarray(codebooks, dtype=np.float16)
        self.dim = dim

    @property
    def nbytes(self) -> int:
        return int(self.codebooks.nbytes)

    @staticmethod
    def layout(dim: int, subvectors: int) -> tuple[int, int]:
        """``(M, L)``: sub-vectors and their length for ``dim`` values."""
        m = min(subvectors, dim)
        return m, math.ceil(dim / m)

    def _split(self, x: FloatArray) -> FloatArray:
        m, length = self.codebooks.shape[0], self.codebooks.shape[2]
        flat = np.zeros((len(x), m * length), dtype=np.float32)
        flat[:, : self.dim] = x.reshape(len(x), -1)
        return flat.reshape(len(x), m, length).transpose(1, 0, 2)  # (M, N, L)

    @classmethod
    def fit(
        cls,
        x: FloatArray,
        *,
        subvectors: int,
        centroids: int,
        rng: np.random.Generator,
        iterations: int = 20,
    ) -> ProductQuantizer:
        """k-means (Lloyd, started from distinct random items) in every sub-space."""
        dim = int(np.prod(x.shape[1:]))
        m, length = cls.layout(dim, subvectors)
        k = max(1, min(centroids, 256, len(x)))
        parts = cls(np.zeros((m, k, length)), dim)._split(x)  # (M, N, L)
        centres = parts[:, rng.choice(len(x), size=k, replace=False), :].copy()
        for _ in range(iterations):
            assign = _nearest(parts, centres)  # (M, N)
            for j in range(m):
                sums = np.zeros((k, length))
                np.add.at(sums, assign[j], parts[j])
                counts = np.bincount(assign[j], minlength=k)
                used = counts > 0  # an empty cluster keeps its centre
                centres[j, used] = (sums[used] / counts[used, None]).astype(np.float32)
        return cls(centres, dim)

    def encode(self, x: FloatArray) -> Codes:
        """Codes ``(N, M)`` for items ``(N, ...)`` of ``dim`` values."""
        codes: Codes = _nearest(self._split(x), self.codebooks.astype(np.float32)).T.astype(
            np.uint8
        )
        return np.ascontiguousarray(codes)

    def decode(self, codes: AnyArray, shape: tuple[int, ...] | None = None) -> FloatArray:
        """Items back from codes ``(N, M)``, reshaped to ``shape`` per item if given."""
        idx = np.asarray(codes).astype(np.int64)
        m = self.codebooks.shape[0]
        parts = self.codebooks.astype(np.float32)[np.arange(m)[None, :], idx]  # (N, M, L)
        out = parts.reshape(len(idx), -1)[:, : self.dim]
        return np.ascontiguousarray(out.reshape(len(idx), *(shape or (self.dim,))))


def _nearest(parts: FloatArray, centres: FloatArray) -> IntArray:
    """Index of the nearest centre for every sub-vector: ``(M, N, L), (M, K, L) -> (M, N)``."""
    d = np.sum(centres**2, axis=2)[:, None, :] - 2.0 * parts @ centres.transpose(0, 2, 1)
    out: IntArray = np.argmin(d, axis=2)
    return out


class PQStore(Configurable):
    """A replay policy (``policy``) holding product-quantized latents: ``M`` bytes per item.

    Until ``warmup`` items have been offered the policy store holds them as ``encoding``
    (int8) within the budget left after reserving the codebooks; then the codebooks are
    learned by k-means on what it holds, those items are re-encoded as codes, and every
    later item is stored as codes only (REMIND learns its codebooks once, on its base
    initialisation data, too). ``nbytes`` counts the codebooks once learned, and the
    policy's per-item bytes: ``M`` code bytes and the 8-byte label. ``centroids`` is
    lowered (never below 1) so the codebooks take at most half the budget. ``sample`` and
    ``items`` decode to float32 latents.

    Options (defaults): ``policy`` (``class_balanced``): the store whose policy decides;
    ``subvectors`` (64): ``M``, codes per item (20 values each for 1280-d latents);
    ``centroids`` (256): ``K`` per codebook; ``warmup`` (1000): items offered before the
    codebooks are learned; ``encoding`` (int8): how warm-up items are held; ``seed`` (0).

    >>> rng = np.random.default_rng(0)
    >>> store = PQStore(max_bytes=60_000, subvectors=8, centroids=64, warmup=200)
    >>> store.add_many(rng.normal(size=(300, 32)), rng.integers(0, 3, 300))
    >>> len(store), store.quantizer is not None, store.nbytes <= store.max_bytes
    (300, True, True)
    >>> store.sample(2, rng)[0].shape
    (2, 32)
    """

    name = "pq"

    def __init__(
        self,
        max_bytes: int,
        policy: str = "class_balanced",
        subvectors: int = 64,
        centroids: int = 256,
        warmup: int = 1000,
        encoding: str = "int8",
        seed: int = 0,
    ) -> None:
        self.max_bytes = check_int(max_bytes, "max_bytes", 1)
        if policy == self.name or policy not in replay.names():
            raise ValueError(f"policy must be another store's name, got {policy!r}")
        self.policy = policy
        self.subvectors = check_int(subvectors, "subvectors", 1)
        self.centroids = check_int(centroids, "centroids", 1)
        if self.centroids > 256:
            raise ValueError(f"centroids must be at most 256 (uint8 codes), got {centroids!r}")
        self.warmup = check_int(warmup, "warmup", 1)
        self.encoding = check_encoding(encoding)
        if self.encoding == "lz4":
            raise ValueError("encoding lz4 holds raw images; pq codes latents")
        self.seed = check_int(seed, "seed", 0)
        self.seen = 0
        self.shape: tuple[int, ...] | None = None
        self.quantizer: ProductQuantizer | None = None
        self._rng = np.random.default_rng([self.seed, 1])
        self._inner: Any = None

    def _codebook_nbytes(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """``(centroids, codebook bytes)`` for items of ``shape``."""
        m, length = ProductQuantizer.layout(math.prod(shape), self.subvectors)
        per_centroid = m * length * 2
        k = max(1, min(self.centroids, self.max_bytes // 2 // per_centroid))
        return k, k * per_centroid

    def _policy_store(self, encoding: str, shape: tuple[int, ...]) -> Any:
        budget = self.max_bytes - self._codebook_nbytes(shape)[1]
        return replay.create(self.policy, max_bytes=budget, encoding=encoding, seed=self.seed)

    def __len__(self) -> int:
        return 0 if self._inner is None else len(self._inner)

    @property
    def nbytes(self) -> int:
        if self._inner is None:
            return 0
        codebooks = 0 if self.quantizer is None else self.quantizer.nbytes
        return int(self._inner.nbytes) + codebooks

    def add(self, z: AnyArray, y: int) -> None:
        check_int(y, "label", 0)
        self.add_many(np.asarray(z)[None, ...], np.array([y], dtype=np.int64))

    def add_many(self, z: AnyArray, y: AnyArray) -> None:
        values, labels = check_batch(z, y, "float32", self.shape)
        shape = tuple(values.shape[1:])
        if self._inner is None:
            self.shape, self._inner = shape, self._policy_store(self.encoding, shape)
        # Validation is done (the inner store refuses nothing this accepted).
        if self.quantizer is None:
            self._inner.add_many(values, labels)
            self.seen += len(values)
            if self.seen >= self.warmup and len(self._inner):
                self._learn_codebooks(shape)
            return
        self.seen += len(values)
        self._inner.add_many(self.quantizer.encode(values), labels)

    def _learn_codebooks(self, shape: tuple[int, ...]) -> None:
        z, y = self._inner.items()
        k, _ = self._codebook_nbytes(shape)
        self.quantizer = ProductQuantizer.fit(
            z, subvectors=self.subvectors, centroids=k, rng=self._rng
        )
        self._inner = self._policy_store(CODES, shape)
        self._inner.add_many(self.quantizer.encode(z), y)

    def _decoded(self, z: FloatArray) -> FloatArray:
        if self.quantizer is None:
            return z
        return self.quantizer.decode(z, self.shape)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[FloatArray, IntArray]:
        if self._inner is None:
            return np.zeros((0, *(self.shape or (0,))), np.float32), np.zeros(0, np.int64)
        z, y = self._inner.sample(n, rng)
        return self._decoded(z), y

    def items(self) -> tuple[FloatArray, IntArray]:
        if self._inner is None:
            return np.zeros((0, *(self.shape or (0,))), np.float32), np.zeros(0, np.int64)
        z, y = self._inner.items()
        return self._decoded(z), y

    def state_dict(self) -> State:
        return {
            "seen": self.seen,
            "shape": None if self.shape is None else list(self.shape),
            "codebooks": None if self.quantizer is None else self.quantizer.codebooks.copy(),
            "rng": rng_state(self._rng),
            "inner": None if self._inner is None else self._inner.state_dict(),
        }

    def load_state_dict(self, state: State) -> None:
        shape = None if state["shape"] is None else tuple(int(s) for s in state["shape"])
        self.shape, self.seen, self.quantizer, self._inner = shape, int(state["seen"]), None, None
        if state["codebooks"] is not None and shape is not None:
            self.quantizer = ProductQuantizer(np.asarray(state["codebooks"]), math.prod(shape))
        if shape is not None:
            encoding = self.encoding if self.quantizer is None else CODES
            self._inner = self._policy_store(encoding, shape)
            self._inner.load_state_dict(state["inner"])
        set_rng_state(self._rng, state["rng"])
