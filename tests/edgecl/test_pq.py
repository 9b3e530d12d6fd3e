"""Product-quantized latent store: codebooks from a warm-up, uint8 codes, budget, state."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import codec, replay
from edgecl.replay.class_balanced import ClassBalancedStore
from edgecl.replay.compress import item_nbytes
from edgecl.replay.pq import PQStore, ProductQuantizer
from edgecl.types import FloatArray, IntArray


def latents(n: int, dim: int = 32, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """ReLU'd class prototypes plus noise, like pooled CNN features."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(123).normal(size=(5, dim))
    y = rng.integers(0, 5, size=n)
    z = np.maximum(protos[y] + 0.3 * rng.normal(size=(n, dim)), 0.0).astype(np.float32)
    return z, y.astype(np.int64)


def relative_error(pq: ProductQuantizer, x: FloatArray) -> float:
    return float(np.mean((pq.decode(pq.encode(x)) - x) ** 2) / np.mean(x**2))


def test_codes_are_uint8_and_more_subvectors_reconstruct_better() -> None:
    z, _ = latents(2000)
    errors = []
    for m in (2, 8, 32):
        pq = ProductQuantizer.fit(
            z[:1000], subvectors=m, centroids=64, rng=np.random.default_rng(0)
        )
        codes = pq.encode(z[1000:])
        assert codes.dtype == np.uint8 and codes.shape == (1000, m)
        assert pq.nbytes == m * 64 * (32 // m) * 2  # float16 codebooks
        errors.append(relative_error(pq, z[1000:]))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def test_a_dimension_that_does_not_divide_is_zero_padded() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 10)).astype(np.float32)
    pq = ProductQuantizer.fit(x, subvectors=4, centroids=32, rng=rng)
    assert pq.codebooks.shape == (4, 32, 3)  # 10 values in 4 sub-vectors of 3
    assert pq.decode(pq.encode(x)).shape == (300, 10)
    assert pq.decode(pq.encode(x), (2, 5)).shape == (300, 2, 5)


def test_few_distinct_items_are_reconstructed_exactly() -> None:
    rng = np.random.default_rng(2)
    distinct = rng.normal(size=(6, 12)).astype(np.float16).astype(np.float32)
    x = distinct[rng.integers(0, 6, size=200)]
    pq = ProductQuantizer.fit(x, subvectors=3, centroids=16, rng=rng)
    np.testing.assert_array_equal(pq.decode(pq.encode(x)), x)


def test_store_warms_up_in_int8_then_holds_codes() -> None:
    z, y = latents(3000, dim=64)
    budget = 300 * item_nbytes("int8", (64,))
    store = PQStore(max_bytes=budget, subvectors=8, centroids=64, warmup=500, seed=0)
    store.add_many(z[:400], y[:400])
    assert store.quantizer is None and store.nbytes <= budget
    store.add_many(z[400:600], y[400:600])  # the warm-up is over: codebooks, then codes
    assert store.quantizer is not None
    store.add_many(z[600:], y[600:])
    assert store.nbytes <= budget
    # The same bytes (codebooks included) hold 3x the items as 8 codes + an 8-byte label.
    int8 = ClassBalancedStore(max_bytes=budget)
    int8.add_many(z, y)
    assert len(store) > 3 * len(int8)
    held, labels = store.items()
    assert held.shape == (len(store), 64) and held.dtype == np.float32
    counts = np.bincount(labels, minlength=5)
    assert counts.max() - counts.min() <= 1  # the class-balanced policy still decides
    assert relative_error(store.quantizer, z[:500]) < 0.1


def test_codebooks_never_take_more_than_half_the_budget() -> None:
    store = PQStore(max_bytes=4000, subvectors=16, centroids=256, warmup=10)
    z, y = latents(200, dim=16)
    store.add_many(z, y)
    assert store.quantizer is not None and store.quantizer.nbytes <= 2000
    assert store.nbytes <= 4000


@pytest.mark.parametrize("split", [100, 700])  # during the warm-up, and after it
def test_state_round_trips_and_the_copy_behaves_the_same(split: int) -> None:
    z, y = latents(1200, seed=3)
    store = PQStore(max_bytes=20_000, subvectors=8, warmup=500, policy="reservoir", seed=4)
    store.add_many(z[:split], y[:split])
    copy = replay.create("pq", **store.options())
    copy.load_state_dict(codec.unpackb(codec.packb(store.state_dict())))
    np.testing.assert_array_equal(copy.items()[0], store.items()[0])
    for s in (store, copy):
        s.add_many(z[split:], y[split:])
    assert codec.packb(store.state_dict()) == codec.packb(copy.state_dict())


def test_bad_options_are_refused() -> None:
    for bad in ({"policy": "pq"}, {"policy": "nope"}, {"centroids": 300}, {"subvectors": 0}):
        with pytest.raises(ValueError):
            PQStore(max_bytes=1000, **bad)
