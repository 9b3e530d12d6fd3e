"""What every replay store promises, checked through the protocol alone."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecl import codec
from edgecl.checks.strategy import expect
from edgecl.protocols import ReplayStore
from edgecl.types import AnyArray

Factory = Callable[..., ReplayStore]
SHAPES = [(16,), (3, 4, 4)]
BUDGET = 4_000


def batch(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> AnyArray:
    return rng.normal(size=(n, *shape)).astype(np.float32)


def reloaded(make: Factory, store: ReplayStore) -> ReplayStore:
    copy = make(**codec.roundtrip(store.options()))
    copy.load_state_dict(codec.roundtrip(store.state_dict()))
    return copy


def check_follows_the_protocol_and_rebuilds_from_its_options(make: Factory) -> None:
    store = make(max_bytes=BUDGET)
    expect(isinstance(store, ReplayStore), "does not follow the ReplayStore protocol")
    expect(store.max_bytes == BUDGET, f"max_bytes {store.max_bytes}, built with {BUDGET}")
    expect((len(store), store.nbytes) == (0, 0), "a new store is not empty")
    again = make(**store.options())
    expect(again.options() == store.options(), "options do not rebuild the same store")


def check_inputs_are_not_mutated_and_outputs_do_not_alias(make: Factory) -> None:
    for shape in SHAPES:
        rng = np.random.default_rng(0)
        store = make(max_bytes=BUDGET)
        z, y = batch(rng, 50, shape), rng.integers(0, 3, size=50)
        z0, y0 = z.copy(), y.copy()
        store.add_many(z, y)
        store.add(z[0], int(y[0]))
        expect(np.array_equal(z, z0) and np.array_equal(y, y0), "inputs were changed")
        held = store.items()
        zs, ys = store.sample(10, np.random.default_rng(1))
        zs[:] = 123.0
        ys[:] = 99
        held[0][:] = -5.0
        after = store.items()
        expect(not np.any(after[0] == 123.0), "sample() returned a view of held items")
        expect(not np.any(after[0] == -5.0), "items() returned a view of held items")
        expect(not np.any(after[1] == 99), "sample() returned a view of held labels")


def check_never_exceeds_its_budget_and_takes_new_classes_any_time(make: Factory) -> None:
    for shape in SHAPES:
        rng = np.random.default_rng(2)
        store = make(max_bytes=BUDGET)
        offered: set[int] = set()
        for step in range(300):
            n = int(rng.integers(1, 40))
            # Now and then a class never seen before, even long after the store filled up.
            new = len(offered) if step % 25 == 0 else None
            y = rng.choice(sorted(offered | {0}), size=n) if new is None else np.full(n, new)
            store.add_many(batch(rng, n, shape), y)
            offered.update(y.tolist())
            expect(0 < store.nbytes <= store.max_bytes, f"{store.nbytes} bytes held")
            expect(len(store) > 0, "the store emptied")
        z, labels = store.items()
        expect(z.shape == (len(store), *shape), f"items of shape {z.shape}")
        expect(labels.shape == (len(store),), f"labels of shape {labels.shape}")
        expect(set(labels.tolist()) <= offered, "a label never offered")


def check_sample_shapes_and_dtypes(make: Factory) -> None:
    for shape in SHAPES:
        rng = np.random.default_rng(3)
        store = make(max_bytes=BUDGET)
        store.add_many(batch(rng, 5, shape), np.arange(5))
        for n in (0, 3, 5, 50):
            z, y = store.sample(n, rng)
            m = min(n, len(store))
            expect(z.shape == (m, *shape) and z.dtype == np.float32, f"sample z {z.shape}")
            expect(y.shape == (m,) and y.dtype == np.int64, f"sample y {y.shape} {y.dtype}")
            expect(set(y.tolist()) <= set(range(5)), "a sampled label never offered")
        z, y = store.items()
        expect(z.dtype == np.float32 and y.dtype == np.int64, "items() dtypes")


def check_state_round_trips_through_msgpack(make: Factory) -> None:
    for shape in SHAPES:
        rng = np.random.default_rng(4)
        store = make(max_bytes=BUDGET)
        store.add_many(batch(rng, 200, shape), rng.integers(0, 5, size=200))
        copy = reloaded(make, store)
        (za, ya), (zb, yb) = store.items(), copy.items()
        expect(np.array_equal(za, zb) and np.array_equal(ya, yb), "items differ after reload")
        expect((len(copy), copy.nbytes) == (len(store), store.nbytes), "sizes differ")
        z, y = batch(rng, 100, shape), rng.integers(0, 7, size=100)
        store.add_many(z, y)
        copy.add_many(z, y)
        same = codec.packb(store.state_dict()) == codec.packb(copy.state_dict())
        expect(same, "a reloaded store goes on differently")
        a = store.sample(7, np.random.default_rng(5))
        b = copy.sample(7, np.random.default_rng(5))
        expect(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), "samples differ")
        empty = reloaded(make, make(max_bytes=BUDGET))
        expect((len(empty), empty.nbytes) == (0, 0), "an empty store reloads non-empty")


def check_rejects_another_item_shape_and_changes_nothing(make: Factory) -> None:
    rng = np.random.default_rng(6)
    store = make(max_bytes=BUDGET)
    store.add_many(batch(rng, 10, (16,)), np.arange(10) % 2)
    before = codec.packb(store.state_dict())
    bad = [
        (batch(rng, 2, (15,)), np.zeros(2, dtype=np.int64)),
        (batch(rng, 2, (4, 4)), np.zeros(2, dtype=np.int64)),
        (np.full((2, 16), np.nan), np.zeros(2, dtype=np.int64)),
        (batch(rng, 2, (16,)), np.array([0.5, 1.0])),
    ]
    for z, y in bad:
        try:
            store.add_many(z, y)
        except ValueError:
            continue
        raise AssertionError(f"accepted items of shape {z.shape} with labels {y.tolist()}")
    expect(codec.packb(store.state_dict()) == before, "a refused batch changed the state")


def store_checks() -> list[Callable[[Factory], None]]:
    """Every check, in a stable order."""
    return [
        check_follows_the_protocol_and_rebuilds_from_its_options,
        check_inputs_are_not_mutated_and_outputs_do_not_alias,
        check_never_exceeds_its_budget_and_takes_new_classes_any_time,
        check_sample_shapes_and_dtypes,
        check_state_round_trips_through_msgpack,
        check_rejects_another_item_shape_and_changes_nothing,
    ]
