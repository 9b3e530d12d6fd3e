"""Replay stores and their compression: budgets, GDumb balance, uniformity, state, inputs."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecl import codec, replay
from edgecl.protocols import ReplayStore
from edgecl.registry import Registry
from edgecl.replay.class_balanced import ClassBalancedStore
from edgecl.replay.compress import (
    ENCODINGS,
    FRAME_OVERHEAD,
    compress_uint8,
    decompress_uint8,
    dequantize_int8,
    item_nbytes,
    quantize_int8,
    to_float16,
)
from edgecl.replay.reservoir import ReservoirStore
from edgecl.types import AnyArray

STORES = {"reservoir": ReservoirStore, "class_balanced": ClassBalancedStore}
TINY = float(np.finfo(np.float32).tiny)
F32_BIG = float(np.float32(1e30))


def make_items(rng: np.random.Generator, n: int, encoding: str, shape: tuple[int, ...]) -> AnyArray:
    """Latents for array encodings; raw uint8 images of varying compressibility for lz4."""
    if encoding != "lz4":
        return rng.normal(scale=rng.uniform(0.1, 10.0), size=(n, *shape)).astype(np.float32)
    noisy = rng.random((n, 1) + (1,) * (len(shape) - 1)) < rng.random((n, *shape))
    return (rng.integers(0, 256, size=(n, *shape)) * noisy).astype(np.uint8)


def mixed_labels(rng: np.random.Generator, n: int, n_classes: int, phase: int = 4000) -> AnyArray:
    """Phases of iid labels over a random subset of the classes seen so far; a new class
    arrives at the start of about half the phases, so the set of classes keeps growing."""
    out: list[AnyArray] = []
    pool = [0]
    while sum(len(part) for part in out) < n:
        if len(pool) < n_classes and rng.random() < 0.5:
            pool.append(len(pool))
        active = rng.choice(pool, size=rng.integers(1, len(pool) + 1), replace=False)
        out.append(rng.choice(active, size=int(rng.integers(1, phase))))
    return np.concatenate(out)[:n].astype(np.int64)


def snapshot(store: ReplayStore) -> bytes:
    return codec.packb(store.state_dict())


def reload(store: ReplayStore) -> ReplayStore:
    copy = replay.create(store.name, **store.options())
    copy.load_state_dict(codec.unpackb(codec.packb(store.state_dict())))
    return copy


# -- compression ---------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=4, max_side=9),
        elements=st.floats(-F32_BIG, F32_BIG, width=32),
    )
)
def test_int8_round_trip_error_is_at_most_half_a_step(x: AnyArray) -> None:
    q, scale = quantize_int8(x)
    assert q.dtype == np.int8 and q.shape == x.shape and int(np.abs(q).max()) <= 127
    err = np.abs(dequantize_int8(q, scale) - x).reshape(len(x), -1).max(axis=1)
    maxabs = np.abs(x).reshape(len(x), -1).max(axis=1)
    assert np.all(err <= maxabs / 254 * (1 + 1e-5) + TINY)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(-6e4, 6e4, width=32)),
)
def test_float16_relative_error_is_bounded(x: AnyArray) -> None:
    back = to_float16(x).astype(np.float32)
    assert np.all(np.abs(back - x) <= np.abs(x) * 2.0**-11 + 2.0**-24)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=4, max_side=12)))
def test_lz4_round_trip_is_exact(x: AnyArray) -> None:
    frames = compress_uint8(x)
    assert np.array_equal(decompress_uint8(frames, x.shape[1:]), x)


def test_item_nbytes_counts_payload_and_overhead() -> None:
    assert item_nbytes("int8", (3, 8, 8)) == 192 + 4 + 8
    assert item_nbytes("float32", (1280,)) == 4 * 1280 + 8
    assert item_nbytes("lz4", (28, 28), frame_nbytes=10) == 10 + FRAME_OVERHEAD + 8


def test_a_store_round_trips_intermediate_latents_within_the_int8_bound() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 3, 4, 4)).astype(np.float32)
    store = ReservoirStore(max_bytes=10_000)
    store.add_many(z, np.arange(20) % 3)
    got, labels = store.items()  # all fit, so they are held in arrival order
    assert got.shape == (20, 3, 4, 4) and got.dtype == np.float32
    assert labels.tolist() == (np.arange(20) % 3).tolist()
    bound = np.abs(z).reshape(20, -1).max(axis=1) / 254 * (1 + 1e-5)
    assert np.all(np.abs(got - z).reshape(20, -1).max(axis=1) <= bound)


def test_lz4_store_gives_raw_samples_back_exactly_as_float32() -> None:
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, size=(10, 28, 28)).astype(np.uint8)
    store = ClassBalancedStore(max_bytes=100_000, encoding="lz4")
    store.add_many(images.astype(np.float32), np.arange(10))  # float but integer-valued
    got, labels = store.items()
    assert got.dtype == np.float32 and np.array_equal(got, images[labels].astype(np.float32))


# -- budgets and GDumb balance over long mixed streams --------------------------------------
def check_gdumb(
    store: ClassBalancedStore, offered: Counter[int], capacity: int, before: dict[int, int]
) -> None:
    """GDumb's invariants after a batch; ``before``: the counts when the batch came."""
    counts = store.class_counts
    assert set(counts) == set(offered)
    assert sum(counts.values()) == len(store) == min(capacity, sum(offered.values()))
    share = capacity // len(counts)
    for c, held in counts.items():
        # Evictions only hit the largest class, which never drops below the fair share.
        assert min(offered[c], share) <= held <= offered[c]
        if sum(before.values()) == capacity and held > before.get(c, 0):
            # Once full, a class is admitted only while below its share K / |Y|.
            assert held <= -(-capacity // max(len(before), 1))


# The same invariants over 10k adds by default (the store fills and evicts many times over)
# and over 100k in the slow run.
@pytest.mark.parametrize("n_total", [10_000, pytest.param(100_000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("name", sorted(STORES))
@pytest.mark.parametrize("encoding", ENCODINGS)
@settings(max_examples=2, deadline=None)
@given(
    capacity=st.integers(1, 150),
    n_classes=st.integers(1, 12),
    max_batch=st.integers(16, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_stores_never_exceed_budget_through_long_mixed_streams(
    n_total: int, name: str, encoding: str, capacity: int, n_classes: int, max_batch: int,
    seed: int,
) -> None:  # fmt: skip
    rng = np.random.default_rng(seed)
    shape = (4, 4) if encoding == "lz4" else (8,)
    items, labels = make_items(rng, n_total, encoding, shape), mixed_labels(rng, n_total, n_classes)
    per_item = item_nbytes(encoding, shape, 16 * 16) + 8  # room for a poorly compressed frame
    store = STORES[name](
        max_bytes=capacity * per_item + int(rng.integers(per_item)), encoding=encoding, seed=seed
    )
    offered: Counter[int] = Counter()
    start = 0
    while start < n_total:
        stop = start + int(rng.integers(1, max_batch + 1))
        before = store.class_counts if isinstance(store, ClassBalancedStore) else {}
        store.add_many(items[start:stop], labels[start:stop])
        offered.update(labels[start:stop].tolist())
        start = stop
        assert 0 < store.nbytes <= store.max_bytes
        if isinstance(store, ClassBalancedStore) and encoding != "lz4":
            check_gdumb(store, offered, store.max_bytes // int(store.bytes_per_item), before)
    held = store.items()[1]
    assert set(held.tolist()) <= set(offered)
    if isinstance(store, ClassBalancedStore) and encoding != "lz4":
        # Once every class keeps arriving, the counts settle within one of each other.
        seen = np.array(sorted(offered))
        for _ in range(capacity + 5):
            store.add_many(make_items(rng, len(seen), encoding, shape), seen)
        counts = list(store.class_counts.values())
        assert max(counts) - min(counts) <= 1


def test_a_new_class_is_always_admitted_by_class_balanced() -> None:
    rng = np.random.default_rng(0)
    for encoding in ENCODINGS:
        store = ClassBalancedStore(max_bytes=4_000, encoding=encoding)
        for c in range(30):
            store.add_many(make_items(rng, 50, encoding, (6, 6)), np.full(50, c))
            assert store.class_counts[c] > 0
            assert store.nbytes <= store.max_bytes


def test_gdumb_refuses_an_overfull_class_and_evicts_from_the_largest() -> None:
    store = ClassBalancedStore(max_bytes=10 * item_nbytes("float32", (2,)), encoding="float32")
    store.add_many(np.zeros((10, 2)), np.zeros(10, dtype=np.int64))
    store.add_many(np.ones((3, 2)), np.ones(3, dtype=np.int64))
    assert store.class_counts == {0: 7, 1: 3} and store.evictions == 3
    before = snapshot(store)
    store.add(np.zeros(2), 0)  # class 0 holds more than its share of 5: turned away
    assert snapshot(store) == before
    store.add_many(np.ones((5, 2)), np.ones(5, dtype=np.int64))
    assert store.class_counts == {0: 5, 1: 5}
    before = snapshot(store)
    store.add(np.ones(2), 1)  # exactly at its share: turned away too
    assert snapshot(store) == before


def test_gdumb_turns_away_a_class_at_its_share_even_when_another_is_larger() -> None:
    store = ClassBalancedStore(max_bytes=12 * item_nbytes("float32", (2,)), encoding="float32")
    for label, n in ((0, 12), (1, 4), (2, 2)):
        store.add_many(np.full((n, 2), float(label)), np.full(n, label))
    assert store.class_counts == {0: 6, 1: 4, 2: 2}
    before = snapshot(store)
    store.add(np.ones(2), 1)  # 4 == 12 / 3: class 1 holds its share
    assert snapshot(store) == before
    store.add(np.full(2, 2.0), 2)
    assert store.class_counts == {0: 5, 1: 4, 2: 3}


# -- reservoir uniformity --------------------------------------------------------------------
def chi_square(counts: AnyArray) -> float:
    expected = counts.sum() / len(counts)
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reservoir_holds_a_uniform_sample_of_the_stream(seed: int) -> None:
    rng = np.random.default_rng(seed + 100)
    store = ReservoirStore(
        max_bytes=1000 * item_nbytes("float32", (1,)) + 8000, encoding="float32", seed=seed
    )
    n = 50_000
    start = 0
    while start < n:
        b = int(rng.integers(1, 300))
        idx = np.arange(start, min(start + b, n))
        store.add_many(idx[:, None].astype(np.float32), np.zeros(len(idx), dtype=np.int64))
        start += len(idx)
    held = store.items()[0][:, 0].astype(np.int64)
    assert len(held) == 1000 and len(set(held.tolist())) == 1000
    buckets = np.bincount(held * 10 // n, minlength=10)
    # Chi-square with 9 degrees of freedom: 40 is beyond the 99.999th percentile.
    assert chi_square(buckets) < 40, buckets


def test_reservoir_with_variable_size_frames_is_uniform_over_positions() -> None:
    rng = np.random.default_rng(7)
    store = ReservoirStore(max_bytes=60_000, encoding="lz4", seed=3)
    n = 30_000
    for start in range(0, n, 100):
        idx = np.arange(start, start + 100)
        images = make_items(rng, 100, "lz4", (12, 12))
        images[:, 0, :3] = np.stack([idx // 65536, idx // 256 % 256, idx % 256], axis=1)
        store.add_many(images, np.zeros(100, dtype=np.int64))
        assert store.nbytes <= store.max_bytes
    z = store.items()[0].astype(np.int64)
    held = z[:, 0, 0] * 65536 + z[:, 0, 1] * 256 + z[:, 0, 2]
    assert len(held) > 200
    buckets = np.bincount(held * 10 // n, minlength=10)
    assert chi_square(buckets) < 40, buckets


def test_reservoir_counts_evictions_of_held_items() -> None:
    store = ReservoirStore(max_bytes=20 * item_nbytes("float32", (1,)) + 160, encoding="float32")
    for i in range(500):
        full, before = len(store) == 20, store.evictions
        store.add(np.array([float(i)]), 0)
        got_in = float(i) in store.items()[0][:, 0].tolist()
        assert store.evictions - before == int(full and got_in)
    assert len(store) == 20 and store.seen == 500 and store.evictions > 20


# -- add vs add_many, state round trips ------------------------------------------------------
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_add_one_by_one_keeps_what_add_many_keeps(encoding: str) -> None:
    rng = np.random.default_rng(1)
    z, y = make_items(rng, 400, encoding, (5,)), rng.integers(0, 4, size=400)
    for cls in STORES.values():
        one, many = cls(1500, encoding, seed=9), cls(1500, encoding, seed=9)
        for i in range(400):
            one.add(z[i], int(y[i]))
        for i in range(0, 400, 37):
            many.add_many(z[i : i + 37], y[i : i + 37])
        (za, ya), (zb, yb) = one.items(), many.items()
        ka, kb = np.lexsort(za.T), np.lexsort(zb.T)
        assert np.array_equal(za[ka], zb[kb]) and np.array_equal(ya[ka], yb[kb])


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from(sorted(STORES)),
    encoding=st.sampled_from(ENCODINGS),
    n_before=st.integers(0, 600),
    seed=st.integers(0, 1000),
)
def test_state_round_trips_exactly_and_behaves_the_same_after(
    name: str, encoding: str, n_before: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    store = STORES[name](max_bytes=3_000, encoding=encoding, seed=seed)
    if n_before:
        store.add_many(
            make_items(rng, n_before, encoding, (2, 3)), mixed_labels(rng, n_before, 6, phase=100)
        )
    copy = reload(store)
    za, ya = store.items()
    zb, yb = copy.items()
    assert np.array_equal(za, zb) and np.array_equal(ya, yb)
    assert (len(copy), copy.nbytes) == (len(store), store.nbytes)
    z, y = make_items(rng, 300, encoding, (2, 3)), rng.integers(0, 8, size=300)
    for s in (store, copy):
        s.add_many(z[:150], y[:150])
        for i in range(150, 300):
            s.add(z[i], int(y[i]))
    assert snapshot(store) == snapshot(copy)
    sa = store.sample(40, np.random.default_rng(5))
    sb = copy.sample(40, np.random.default_rng(5))
    assert np.array_equal(sa[0], sb[0]) and np.array_equal(sa[1], sb[1])


def test_load_rejects_a_state_of_another_encoding_or_over_budget() -> None:
    store = ReservoirStore(max_bytes=2_000, encoding="float32")
    store.add_many(np.ones((30, 4)), np.zeros(30, dtype=np.int64))
    with pytest.raises(ValueError, match="float32 items, not int8"):
        ReservoirStore(max_bytes=2_000).load_state_dict(store.state_dict())
    with pytest.raises(ValueError, match="over max_bytes"):
        ReservoirStore(max_bytes=100, encoding="float32").load_state_dict(store.state_dict())


# -- inputs ----------------------------------------------------------------------------------
BAD_ADD: list[tuple[str, Any, Any, str]] = [
    ("NaN", np.array([[0.0, np.nan, 0.0]]), [0], "NaN"),
    ("inf", np.array([[0.0, np.inf, 0.0]]), [0], "NaN or infinite"),
    ("overflows float32", np.array([[1e39, 0.0, 0.0]]), [0], "NaN or infinite"),
    ("wrong item shape", np.zeros((2, 4)), [0, 1], r"shape \(3,\)"),
    ("no batch axis", np.zeros(3), [0], "batch"),
    ("empty items", np.zeros((2, 0)), [0, 1], "non-empty"),
    ("float label", np.zeros((2, 3)), [0, 1.5], "ints"),
    ("bool label", np.zeros((2, 3)), [True, False], "ints"),
    ("string label", np.zeros((2, 3)), ["a", "b"], "ints"),
    ("negative label", np.zeros((2, 3)), [0, -1], ">= 0"),
    ("too few labels", np.zeros((2, 3)), [0], "2 ints"),
    ("string items", np.array([["a", "b", "c"]]), [0], "numeric"),
    ("object items", np.array([[object()] * 3]), [0], "numeric"),
]


@pytest.mark.parametrize("name", sorted(STORES))
@pytest.mark.parametrize(
    ("z", "y", "message"), [c[1:] for c in BAD_ADD], ids=[c[0] for c in BAD_ADD]
)
def test_bad_input_raises_and_changes_nothing(name: str, z: Any, y: Any, message: str) -> None:
    store = STORES[name](max_bytes=300)
    store.add_many(np.ones((20, 3)), np.arange(20) % 2)
    before = snapshot(store)
    with pytest.raises(ValueError, match=message):
        store.add_many(z, y)
    assert snapshot(store) == before


@pytest.mark.parametrize("name", sorted(STORES))
def test_bad_single_adds_and_encoding_limits_raise(name: str) -> None:
    cls = STORES[name]
    store = cls(max_bytes=300)
    store.add(np.ones(3), 1)
    before = snapshot(store)
    for label in (1.0, True, "a", -2, None):
        with pytest.raises(ValueError, match="label"):
            store.add(np.ones(3), label)  # type: ignore[arg-type]
    assert snapshot(store) == before
    with pytest.raises(ValueError, match="more than max_bytes"):
        cls(max_bytes=10).add(np.ones(3), 0)
    with pytest.raises(ValueError, match="within"):
        cls(max_bytes=300, encoding="float16").add(np.array([7e4, 0.0]), 0)
    with pytest.raises(ValueError, match="integers in 0..255"):
        cls(max_bytes=3000, encoding="lz4").add(np.array([0.5, 3.0]), 0)
    with pytest.raises(ValueError, match="integers in 0..255"):
        cls(max_bytes=3000, encoding="lz4").add(np.array([256, 3]), 0)
    lz4_store = cls(max_bytes=60, encoding="lz4")
    with pytest.raises(ValueError, match="more than max_bytes"):
        lz4_store.add_many(np.random.default_rng(0).integers(0, 256, (2, 64)), np.arange(2))
    assert len(lz4_store) == 0 and lz4_store.shape is None


@pytest.mark.parametrize("name", sorted(STORES))
def test_bad_options_raise(name: str) -> None:
    for options in ({"max_bytes": 0}, {"max_bytes": 1.5}, {"max_bytes": True}):
        with pytest.raises(ValueError, match="max_bytes"):
            replay.create(name, **options)
    with pytest.raises(ValueError, match="unknown encoding"):
        replay.create(name, max_bytes=100, encoding="int4")
    with pytest.raises(ValueError, match="seed"):
        replay.create(name, max_bytes=100, seed=-1)
    with pytest.raises(ValueError, match="bad options"):
        replay.create(name, max_bytes=100, colour="red")


def test_sample_is_without_replacement_and_caps_at_len() -> None:
    store = ReservoirStore(max_bytes=10_000, encoding="float32")
    store.add_many(np.arange(30, dtype=np.float32)[:, None], np.zeros(30, dtype=np.int64))
    z, y = store.sample(100, np.random.default_rng(0))
    assert z.shape == (30, 1) and sorted(z[:, 0].tolist()) == list(range(30))
    z, y = store.sample(10, np.random.default_rng(0))
    assert len(set(z[:, 0].tolist())) == 10
    z, y = store.sample(0, np.random.default_rng(0))
    assert z.shape == (0, 1) and y.shape == (0,) and y.dtype == np.int64


def test_registering_a_store_first_does_not_hide_the_builtin_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replay, "REGISTRY", Registry("replay store", replay._builtin))
    replay.register(ReservoirStore, "mine")
    assert {"class_balanced", "mine", "reservoir"} <= set(replay.names())
