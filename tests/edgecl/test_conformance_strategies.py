"""One conformance suite for every registered strategy (river-style)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecl import codec, strategies
from edgecl.protocols import Strategy
from edgecl.types import FloatArray, IntArray

NAMES = strategies.names()
DIM = 6


def blobs(classes: list[int], per_class: int, seed: int = 0) -> tuple[FloatArray, IntArray]:
    """Well-separated Gaussian blobs, one per class, in a shuffled order."""
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM, dtype=np.float32) * 4.0
    y = np.repeat(np.asarray(classes, dtype=np.int64), per_class)
    z = centres[y] + rng.normal(scale=0.3, size=(len(y), DIM)).astype(np.float32)
    order = rng.permutation(len(y))
    return np.ascontiguousarray(z[order]), y[order]


def trained(name: str, classes: list[int], n_classes: int | None = None) -> Strategy:
    strategy = strategies.create(name)
    strategy.add_classes(n_classes if n_classes is not None else max(classes) + 1)
    z, y = blobs(classes, per_class=20)
    for start in range(0, len(y), 8):
        strategy.learn_many(z[start : start + 8], y[start : start + 8])
    return strategy


def test_the_issue_strategies_are_registered() -> None:
    assert {"slda", "ncm", "cwr_star", "latent_replay", "naive"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_mutated(name: str) -> None:
    strategy = strategies.create(name)
    strategy.add_classes(3)
    z, y = blobs([0, 1, 2], per_class=10)
    z_copy, y_copy = z.copy(), y.copy()
    strategy.learn_many(z, y)
    strategy.predict_proba_many(z)
    np.testing.assert_array_equal(z, z_copy)
    np.testing.assert_array_equal(y, y_copy)


@pytest.mark.parametrize("name", NAMES)
def test_probabilities_are_finite_rows_that_sum_to_one(name: str) -> None:
    strategy = trained(name, [0, 1, 2])
    z, _ = blobs([0, 1, 2], per_class=5, seed=1)
    far = np.full((2, DIM), 1e4, dtype=np.float32)  # far from anything learned
    for batch in (z, far, z[:1]):
        proba = strategy.predict_proba_many(batch)
        assert proba.dtype == np.float32
        assert proba.shape == (len(batch), 3)
        assert np.all(np.isfinite(proba))
        assert np.all(proba >= 0)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_it_learns_separable_blobs(name: str) -> None:
    strategy = trained(name, [0, 1, 2])
    z, y = blobs([0, 1, 2], per_class=10, seed=2)
    accuracy = float(np.mean(strategy.predict_proba_many(z).argmax(axis=1) == y))
    assert accuracy >= 0.9, f"{name}: accuracy {accuracy:.2f} on separable blobs"


@pytest.mark.parametrize("name", NAMES)
def test_before_any_sample_probabilities_are_uniform(name: str) -> None:
    strategy = strategies.create(name)
    strategy.add_classes(4)
    proba = strategy.predict_proba_many(np.zeros((2, DIM), dtype=np.float32))
    np.testing.assert_allclose(proba, 0.25)


@pytest.mark.parametrize("name", NAMES)
def test_a_class_never_trained_gets_probability_zero(name: str) -> None:
    strategy = trained(name, [0, 1], n_classes=4)
    z, _ = blobs([0, 1, 2, 3], per_class=5, seed=3)
    proba = strategy.predict_proba_many(z)
    assert proba.shape == (len(z), 4)
    assert np.all(proba[:, 2:] == 0.0)


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_msgpack(name: str) -> None:
    strategy = trained(name, [0, 1, 2])
    z, y = blobs([0, 1, 2], per_class=5, seed=4)
    restored = strategies.create(name, **codec.unpackb(codec.packb(strategy.options())))
    restored.load_state_dict(codec.unpackb(codec.packb(strategy.state_dict())))
    np.testing.assert_array_equal(restored.predict_proba_many(z), strategy.predict_proba_many(z))
    # Learning goes on identically after the round trip (counters, seeds included).
    for s in (strategy, restored):
        s.add_classes(4)
        s.learn_many(*blobs([3, 0], per_class=4, seed=5))
    np.testing.assert_array_equal(restored.predict_proba_many(z), strategy.predict_proba_many(z))


@pytest.mark.parametrize("name", NAMES)
def test_state_is_a_snapshot_not_a_view(name: str) -> None:
    strategy = trained(name, [0, 1])
    before = codec.packb(strategy.state_dict())
    state = strategy.state_dict()
    strategy.learn_many(*blobs([0, 1], per_class=4, seed=6))
    assert codec.packb(state) == before


@pytest.mark.parametrize("name", NAMES)
def test_a_new_class_can_appear_at_any_time(name: str) -> None:
    strategy = trained(name, [0, 1])
    strategy.add_classes(3)
    z_new, y_new = blobs([2], per_class=12, seed=7)
    for i in range(len(z_new)):  # one sample at a time, as the daemon's learn_one does
        strategy.learn_many(z_new[i : i + 1], y_new[i : i + 1])
    z, _ = blobs([2], per_class=10, seed=8)
    proba = strategy.predict_proba_many(z)
    assert proba.shape == (10, 3)
    assert float(np.mean(proba.argmax(axis=1) == 2)) >= 0.9


@pytest.mark.parametrize("name", NAMES)
def test_intermediate_cut_latents_are_flattened(name: str) -> None:
    z, y = blobs([0, 1], per_class=10)
    flat_s, cube_s = strategies.create(name), strategies.create(name)
    for s, batch in ((flat_s, z), (cube_s, z.reshape(len(z), 1, 2, 3))):
        s.add_classes(2)
        s.learn_many(batch, y)
    np.testing.assert_array_equal(
        cube_s.predict_proba_many(z.reshape(len(z), 1, 2, 3)), flat_s.predict_proba_many(z)
    )


@pytest.mark.parametrize("name", NAMES)
def test_options_round_trip_through_create(name: str) -> None:
    options = strategies.create(name).options()
    rebuilt = strategies.create(name, **codec.unpackb(codec.packb(options)))
    assert rebuilt.options() == options
    assert type(rebuilt).name == name


@pytest.mark.parametrize("name", NAMES)
def test_bad_options_raise_a_value_error_naming_the_option(name: str) -> None:
    options = strategies.create(name).options()
    assert options, f"{name} has no options to check"
    for key in options:
        for bad in (-1, "x", float("nan")):
            with pytest.raises(ValueError, match=key):
                strategies.create(name, **{key: bad})
    with pytest.raises(ValueError, match="bad options"):
        strategies.create(name, no_such_option=1)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_value_errors(name: str) -> None:
    strategy = trained(name, [0, 1])
    bad: list[tuple[Any, Any, str]] = [
        (np.zeros((2, DIM + 1), np.float32), np.array([0, 1]), "dimension mismatch"),
        (np.zeros((2, DIM), np.float32), np.array([0, 2]), "out of range"),
        (np.zeros((2, DIM), np.float32), np.array([0]), "labels"),
    ]
    before = codec.packb(strategy.state_dict())
    for z, y, message in bad:
        with pytest.raises(ValueError, match=message):
            strategy.learn_many(z, y)
    with pytest.raises(ValueError, match="dimension mismatch"):
        strategy.predict_proba_many(np.zeros((1, DIM - 1), np.float32))
    assert codec.packb(strategy.state_dict()) == before


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(strategies.create(n), "predictor")])
def test_a_frozen_predictor_answers_as_the_head_did_and_ignores_later_learning(
    name: str,
) -> None:
    strategy = trained(name, [0, 1], n_classes=3)
    probe, _ = blobs([0, 1, 2], per_class=5, seed=1)
    before = strategy.predict_proba_many(probe)
    predict = strategy.predictor()  # type: ignore[attr-defined]
    assert np.array_equal(predict(probe), before)
    z, y = blobs([1, 2], per_class=20, seed=2)
    for start in range(0, len(y), 8):
        strategy.learn_many(z[start : start + 8], y[start : start + 8])
    assert not np.array_equal(strategy.predict_proba_many(probe), before)
    assert np.array_equal(predict(probe), before)
