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


def test_a_batch_quantised_a_block_at_a_time_holds_each_item_as_quantised_alone() -> None:
    from edgecl.replay.compress import QUANTIZE_BLOCK, dequantize_int8, quantize_int8

    rng = np.random.default_rng(3)
    x = (rng.normal(size=(2 * QUANTIZE_BLOCK + 5, 4, 3)) * rng.uniform(0.1, 9, (1, 1, 1))).astype(
        np.float32
    )
    x[7] = 0.0  # an all-zero item keeps scale 0 and codes 0
    codes, scales = quantize_int8(x)
    alone = [quantize_int8(x[i : i + 1]) for i in range(len(x))]
    np.testing.assert_array_equal(codes, np.concatenate([q for q, _ in alone]))
    np.testing.assert_array_equal(scales, np.concatenate([s for _, s in alone]))
    assert scales[7] == 0 and not codes[7].any()
    rows = rng.permutation(len(x))[: QUANTIZE_BLOCK + 3]
    picked, picked_scales = quantize_int8(x, rows)
    np.testing.assert_array_equal(picked, codes[rows])
    np.testing.assert_array_equal(
        dequantize_int8(picked, picked_scales), dequantize_int8(codes, scales)[rows]
    )


def test_the_latent_replay_memory_holds_what_it_held_before_blockwise_encoding() -> None:
    # The memory's update picks rows of the batch and encodes them: the items it holds are
    # those rows, each quantised as alone.
    from edgecl.replay.compress import dequantize_int8, quantize_int8

    store = create("latent_replay", max_bytes=100 * (12 + 4 + 8), seed=1)
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(70, 12)).astype(np.float32) for _ in range(3)]
    for b in batches:
        store.add_many(b, rng.integers(0, 3, len(b)))
    held, _ = store.items()
    every = np.concatenate(batches)
    expected = dequantize_int8(*quantize_int8(every))
    # Every held item is one of the offered ones, quantised exactly as on its own.
    matches = (held[:, None, :] == expected[None, :, :]).all(axis=2).any(axis=1)
    assert len(held) == 100 and matches.all()
