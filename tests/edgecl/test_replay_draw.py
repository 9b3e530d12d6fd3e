"""A store's draw kept encoded, read a few rows at a time, is the decoded draw."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import replay
from edgecl.replay.base import EncodedStore
from edgecl.replay.drawn import EncodedDraw, LatentRows


def create(name: str, **options: object) -> EncodedStore:
    store = replay.create(name, **options)
    assert isinstance(store, EncodedStore)
    return store


@pytest.mark.parametrize("name", ["latent_replay", "reservoir", "class_balanced"])
@pytest.mark.parametrize("encoding", ["int8", "float16", "float32"])
def test_a_draw_is_the_sample_still_encoded(name: str, encoding: str) -> None:
    store = create(name, max_bytes=20_000, encoding=encoding)
    rng = np.random.default_rng(0)
    for _ in range(4):
        store.add_many(rng.normal(size=(40, 3, 5)).astype(np.float32) * 10, rng.integers(0, 4, 40))
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    z, y = store.sample(25, a)
    drawn, y2 = store.draw(25, b)
    assert a.random() == b.random()  # the same numbers were taken from the generator
    np.testing.assert_array_equal(y, y2)
    assert isinstance(drawn, EncodedDraw) and drawn.item_shape == (3, 5)
    whole = drawn.decode()
    np.testing.assert_array_equal(whole, z)  # bit-equal, not close
    assert drawn.nbytes < z.nbytes or encoding == "float32"
    for rows in (np.array([24, 0, 7]), np.array([3]), np.arange(0)):
        np.testing.assert_array_equal(drawn.decode(rows), z[rows])


def test_rows_read_in_any_order_are_the_joined_batch() -> None:
    rng = np.random.default_rng(1)
    store = create("latent_replay", max_bytes=10_000)
    store.add_many(rng.normal(size=(50, 8)).astype(np.float32), rng.integers(0, 3, 50))
    new = rng.normal(size=(13, 8)).astype(np.float32)
    drawn, _ = store.draw(30, np.random.default_rng(2))
    rows = LatentRows(new, drawn)
    joined = np.concatenate([new, drawn.decode()])
    assert len(rows) == 43 and rows.item_shape == (8,) and rows.dim == 8
    order = rng.permutation(len(rows))
    for start in range(0, len(rows), 16):  # minibatches, as AR1 reads them
        idx = order[start : start + 16]
        np.testing.assert_array_equal(rows.take(idx), joined[idx])
    np.testing.assert_array_equal(LatentRows(new).take(np.array([12, 0])), new[[12, 0]])


def test_rows_of_other_shaped_items_are_refused() -> None:
    drawn = EncodedDraw(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"replayed items have shape \(4,\)"):
        LatentRows(np.zeros((1, 5), np.float32), drawn)


def test_a_raw_input_store_has_no_encoded_draw() -> None:
    store = create("reservoir", max_bytes=10_000, encoding="lz4")
    store.add_many(np.zeros((2, 4, 4), np.uint8), np.array([0, 1]))
    with pytest.raises(ValueError, match="lz4 items are frames of raw inputs"):
        store.draw(1, np.random.default_rng(0))
