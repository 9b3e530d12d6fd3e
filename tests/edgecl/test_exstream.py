"""ExStream: the merging per-class buffers and the rehearsing head, alone and in a learner."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import Learner, codec, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.replay.compress import item_nbytes
from edgecl.replay.exstream import BOOKKEEPING_NBYTES, ExStreamStore, _Neighbours
from edgecl.types import AnyArray, FloatArray


def per_item(dim: int, encoding: str = "float32") -> int:
    return item_nbytes(encoding, (dim,)) + BOOKKEEPING_NBYTES


def closest_pair(x: AnyArray) -> tuple[int, int]:
    """Brute force: the pair (i < j) at the smallest squared distance, lowest first."""
    d = np.sum((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2, axis=2)
    d[np.tril_indices(len(x))] = np.inf
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    return int(i), int(j)


def test_a_full_buffer_merges_its_two_nearest_prototypes_by_count() -> None:
    rng = np.random.default_rng(0)
    store = ExStreamStore(max_bytes=6 * per_item(5), encoding="float32", seed=0)
    shadow: list[tuple[AnyArray, int]] = []  # the algorithm, written out naively
    for _ in range(200):
        z = rng.normal(size=5).astype(np.float32)
        if len(shadow) < 6:
            shadow.append((z, 1))
        else:
            x = np.array([v for v, _ in shadow])
            i, j = closest_pair(x)
            (a, na), (b, nb) = shadow[i], shadow[j]
            shadow[i] = (
                ((na * a.astype(np.float64) + nb * b) / (na + nb)).astype(np.float32),
                na + nb,
            )
            shadow[j] = (z, 1)
        store.add(z, 0)
        held, counts = store.items()[0], store.counts
        np.testing.assert_allclose(held, np.array([v for v, _ in shadow]), rtol=1e-6, atol=1e-6)
        assert counts.tolist() == [n for _, n in shadow]


@pytest.mark.parametrize("encoding", ["float32", "float16", "int8"])
def test_prototypes_keep_the_mass_of_every_sample_of_their_class(encoding: str) -> None:
    rng = np.random.default_rng(1)
    store = ExStreamStore(max_bytes=40 * per_item(8, encoding), encoding=encoding)
    offered: dict[int, list[FloatArray]] = {}
    for step in range(30):
        n_classes = 1 + step // 6  # a new class now and then: the shares shrink
        y = rng.integers(0, n_classes, size=20)
        z = (rng.normal(size=(20, 8)) + y[:, None]).astype(np.float32)
        store.add_many(z, y)
        for c in np.unique(y).tolist():
            offered.setdefault(c, []).extend(z[y == c])
        assert store.nbytes <= store.max_bytes
        shares = store.class_counts
        cap = store.capacity(len(shares), per_item(8, encoding))
        assert max(shares.values()) <= cap
    held, labels = store.items()
    counts = store.counts
    tolerance = {"float32": 1e-4, "float16": 2e-2, "int8": 5e-2}[encoding]
    for c, samples in offered.items():
        mine = labels == c
        assert counts[mine].sum() == len(samples)  # every sample is in exactly one prototype
        weighted = (held[mine] * counts[mine, None]).sum(axis=0) / len(samples)
        np.testing.assert_allclose(weighted, np.mean(samples, axis=0), atol=tolerance)


def test_class_capacity_caps_each_buffer_and_budget_shares_shrink() -> None:
    store = ExStreamStore(max_bytes=12 * per_item(3), encoding="float32", class_capacity=4)
    rng = np.random.default_rng(2)
    store.add_many(rng.normal(size=(30, 3)), np.zeros(30, dtype=np.int64))
    assert store.class_counts == {0: 4}
    for c in (1, 2, 3, 4):
        store.add_many(rng.normal(size=(30, 3)), np.full(30, c))
    # Five classes share 12 items: 2 each; counts still add up to everything offered.
    assert store.class_counts == {0: 2, 1: 2, 2: 2, 3: 2, 4: 2}
    assert int(store.counts.sum()) == 150 and store.evictions == 150 - 10


def test_more_classes_than_items_leaves_later_classes_without_a_buffer() -> None:
    store = ExStreamStore(max_bytes=3 * per_item(2), encoding="float32")
    for c in range(5):
        store.add_many(np.full((2, 2), float(c)), np.full(2, c))
    assert store.class_counts == {0: 1, 1: 1, 2: 1, 3: 0, 4: 0}
    assert store.nbytes <= store.max_bytes


def test_cached_neighbours_match_a_fresh_computation() -> None:
    rng = np.random.default_rng(3)
    store = ExStreamStore(max_bytes=50 * per_item(4), encoding="int8")
    for step in range(40):
        y = rng.integers(0, 1 + step // 10, size=15)
        store.add_many(rng.normal(size=(15, 4)), y)
        for c, nb in store._neighbours.items():
            _, x = store._members(c)
            fresh = _Neighbours(x)
            # The same nearest distances (rounding aside: ties may pick either).
            np.testing.assert_allclose(nb.dist, fresh.dist, rtol=1e-4, atol=1e-5)
            exact = np.sum((x[nb.nn] - x) ** 2, axis=1)
            np.testing.assert_allclose(exact, fresh.dist, rtol=1e-4, atol=1e-5)


def test_reloaded_store_makes_the_same_merges() -> None:
    rng = np.random.default_rng(4)
    z, y = rng.normal(size=(400, 6)), rng.integers(0, 4, size=400)
    store = ExStreamStore(max_bytes=30 * per_item(6, "int8"), seed=5)
    store.add_many(z[:200], y[:200])
    copy = ExStreamStore(**store.options())
    copy.load_state_dict(codec.unpackb(codec.packb(store.state_dict())))
    for s in (store, copy):
        for i in range(200, 400, 7):
            s.add_many(z[i : i + 7], y[i : i + 7])
    assert codec.packb(store.state_dict()) == codec.packb(copy.state_dict())


def test_raw_images_are_refused() -> None:
    with pytest.raises(ValueError, match="lz4"):
        ExStreamStore(max_bytes=1000, encoding="lz4")


def test_exstream_learns_a_class_incremental_stream_one_sample_at_a_time() -> None:
    rng = np.random.default_rng(5)
    centres = rng.normal(scale=3.0, size=(4, 8))
    y = np.repeat(np.arange(4), 60)  # class-incremental: one class after another
    z = (centres[y] + rng.normal(size=(len(y), 8))).astype(np.float32)
    store = ExStreamStore(max_bytes=40 * per_item(8, "int8"))
    learner = Learner(IdentityBackbone(8), strategies.create("exstream", lr=0.05), store)
    for i in range(len(y)):
        learner.learn_one(z[i], int(y[i]))
    test_y = np.repeat(np.arange(4), 25)
    test_z = (centres[test_y] + rng.normal(size=(len(test_y), 8))).astype(np.float32)
    accuracy = np.mean(np.array(learner.predict_many(test_z)) == test_y)
    assert accuracy >= 0.9  # the first class is still known after three others
    assert store.class_counts == {0: 10, 1: 10, 2: 10, 3: 10}
