"""CWR*: training with the reference's fixed-size output layer, emulated by one row."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl.strategies.cwr_star import CWRStar, consolidate
from edgecl.strategies.linear import SGD, sgd_softmax
from edgecl.types import FloatArray, IntArray


def blobs(classes: list[int], n: int, dim: int = 6, seed: int = 0) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=2.0, size=(10, dim))
    y = np.array(classes)[rng.integers(0, len(classes), size=n)]
    z = (centres[y] + rng.normal(scale=0.7, size=(n, dim))).astype(np.float32)
    return z, y.astype(np.int64)


@pytest.mark.parametrize("outputs", [5, 8])
def test_cwr_star_trains_as_the_reference_layer_of_every_output(outputs: int) -> None:
    # The reference: a layer of `outputs` rows, the batch's classes from their consolidated
    # weights, every other row zero, plain SGD over all of them, then consolidation.
    sgd = SGD(lr=0.2, epochs=3, batch_size=4)
    s = CWRStar(lr=0.2, epochs=3, batch_size=4, outputs=outputs)
    s.add_classes(4)
    cw, past = np.zeros((outputs, 6), np.float32), np.zeros(outputs, np.int64)
    for call, classes in enumerate(([2], [0, 1], [2], [3], [1, 2, 3])):
        z, y = blobs(classes, 10, seed=call)
        s.learn_many(z, y)
        present, cur = np.unique(y, return_counts=True)
        layer = np.zeros_like(cw)
        layer[present] = cw[present]
        sgd_softmax(layer, None, z, y, sgd, np.random.default_rng([0, call]))
        consolidate(cw, past, present, cur, layer[present])
        np.testing.assert_allclose(s.cw, cw[:4], rtol=1e-4, atol=1e-6)
    assert s.past.tolist() == past[:4].tolist()


def test_cwr_star_learns_every_class_of_a_single_class_batch_stream() -> None:
    s = CWRStar(lr=0.05)
    s.add_classes(3)
    for call in range(30):
        z, y = blobs([call % 3], 10, seed=call)
        s.learn_many(z, y)
    z, y = blobs([0, 1, 2], 300, seed=100)
    predicted = s.predict_proba_many(z).argmax(axis=1)
    for c in range(3):
        assert np.mean(predicted[y == c] == c) > 0.9, f"class {c}"


def test_cwr_star_learns_from_the_first_single_class_batch() -> None:
    # One class known, one in the batch: the layer's other outputs still give a gradient.
    s = CWRStar(lr=0.1)
    s.add_classes(1)
    s.learn_many(*blobs([0], 8))
    assert np.abs(s.cw).sum() > 0
    assert s.background(1) == 9.0
    assert CWRStar(outputs=0).background(3) == 1.0


def test_cwr_star_loads_a_state_from_before_the_option() -> None:
    old = CWRStar(outputs=0)
    old.add_classes(2)
    old.learn_many(*blobs([0, 1], 12))
    new = CWRStar()
    new.load_state_dict(old.state_dict())
    z, _ = blobs([0, 1], 5, seed=3)
    np.testing.assert_array_equal(new.predict_proba_many(z), old.predict_proba_many(z))
