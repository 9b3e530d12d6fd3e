"""What every registered replay store promises, checked through the protocol alone."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import codec, replay
from edgecl.protocols import ReplayStore
from edgecl.types import AnyArray

NAMES = replay.names()
SHAPES = [(16,), (3, 4, 4)]
BUDGET = 4_000


def make(name: str, max_bytes: int = BUDGET) -> ReplayStore:
    return replay.create(name, max_bytes=max_bytes)


def batch(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> AnyArray:
    return rng.normal(size=(n, *shape)).astype(np.float32)


def reloaded(store: ReplayStore) -> ReplayStore:
    copy = replay.create(store.name, **store.options())
    copy.load_state_dict(codec.unpackb(codec.packb(store.state_dict())))
    return copy


def test_the_builtin_stores_are_registered() -> None:
    assert {"reservoir", "class_balanced"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_follows_the_protocol_and_rebuilds_from_its_options(name: str) -> None:
    store = make(name)
    assert isinstance(store, ReplayStore)
    assert store.name == name and store.max_bytes == BUDGET
    assert (len(store), store.nbytes) == (0, 0)
    again = replay.create(name, **store.options())
    assert again.options() == store.options()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_mutated_and_outputs_do_not_alias(name: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    store = make(name)
    z, y = batch(rng, 50, shape), rng.integers(0, 3, size=50)
    z0, y0 = z.copy(), y.copy()
    store.add_many(z, y)
    store.add(z[0], int(y[0]))
    assert np.array_equal(z, z0) and np.array_equal(y, y0)
    held = store.items()
    zs, ys = store.sample(10, np.random.default_rng(1))
    zs[:] = 123.0
    ys[:] = 99
    held[0][:] = -5.0
    after = store.items()
    assert not np.any(after[0] == 123.0) and not np.any(after[0] == -5.0)
    assert not np.any(after[1] == 99)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_never_exceeds_budget_and_new_classes_may_come_any_time(
    name: str, shape: tuple[int, ...]
) -> None:
    rng = np.random.default_rng(2)
    store = make(name)
    offered: set[int] = set()
    for step in range(300):
        n = int(rng.integers(1, 40))
        # Now and then a class never seen before, even long after the store filled up.
        new = len(offered) if step % 25 == 0 else None
        y = rng.choice(sorted(offered | {0}), size=n) if new is None else np.full(n, new)
        store.add_many(batch(rng, n, shape), y)
        offered.update(y.tolist())
        assert 0 < store.nbytes <= store.max_bytes
        assert 0 < len(store)
    z, labels = store.items()
    assert z.shape == (len(store), *shape) and labels.shape == (len(store),)
    assert set(labels.tolist()) <= offered


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_sample_shapes_and_dtypes(name: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(3)
    store = make(name)
    store.add_many(batch(rng, 5, shape), np.arange(5))
    for n in (0, 3, 5, 50):
        z, y = store.sample(n, rng)
        m = min(n, len(store))
        assert z.shape == (m, *shape) and z.dtype == np.float32
        assert y.shape == (m,) and y.dtype == np.int64
        assert set(y.tolist()) <= set(range(5))
    z, y = store.items()
    assert z.dtype == np.float32 and y.dtype == np.int64


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_msgpack(name: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(4)
    store = make(name)
    store.add_many(batch(rng, 200, shape), rng.integers(0, 5, size=200))
    copy = reloaded(store)
    (za, ya), (zb, yb) = store.items(), copy.items()
    assert np.array_equal(za, zb) and np.array_equal(ya, yb)
    assert (len(copy), copy.nbytes) == (len(store), store.nbytes)
    z, y = batch(rng, 100, shape), rng.integers(0, 7, size=100)
    store.add_many(z, y)
    copy.add_many(z, y)
    assert codec.packb(store.state_dict()) == codec.packb(copy.state_dict())
    sa, sb = store.sample(7, np.random.default_rng(5)), copy.sample(7, np.random.default_rng(5))
    assert np.array_equal(sa[0], sb[0]) and np.array_equal(sa[1], sb[1])
    empty = reloaded(make(name))
    assert (len(empty), empty.nbytes) == (0, 0)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_another_item_shape_and_changes_nothing(name: str) -> None:
    rng = np.random.default_rng(6)
    store = make(name)
    store.add_many(batch(rng, 10, (16,)), np.arange(10) % 2)
    before = codec.packb(store.state_dict())
    for z in (batch(rng, 2, (15,)), batch(rng, 2, (4, 4)), np.full((2, 16), np.nan)):
        with pytest.raises(ValueError):
            store.add_many(z, np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError):
        store.add_many(batch(rng, 2, (16,)), np.array([0.5, 1.0]))
    assert codec.packb(store.state_dict()) == before
