"""Learner behaviour through its public API: open label set, validation, all-or-nothing."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecl import Learner, NotFittedError, codec, strategies
from edgecl.backbones import IdentityBackbone


def make_learner() -> Learner:
    learner = Learner(IdentityBackbone(4), strategies.create("ncm"))
    rng = np.random.default_rng(0)
    learner.learn_many(rng.normal(size=(6, 4)), ["a", "b", 3, "a", "b", 3])
    return learner


def snapshot(learner: Learner) -> bytes:
    return codec.packb(learner.state_dict())


GOOD = np.zeros((2, 4))

BAD_LEARN: list[tuple[str, Any, Any, str]] = [
    ("wrong latent dimension", np.zeros((2, 5)), ["a", "b"], r"shape \(N, 4\)"),
    ("NaN", np.array([[0.0, np.nan, 0, 0], [0, 0, 0, 0]]), ["a", "b"], "NaN or infinite"),
    ("inf", np.array([[0.0, np.inf, 0, 0], [0, 0, 0, 0]]), ["a", "b"], "NaN or infinite"),
    ("empty batch", np.zeros((0, 4)), [], "empty"),
    ("mismatched lengths", GOOD, ["a"], "2 samples but 1 labels"),
    ("float label", GOOD, ["a", 1.5], "labels must be str or int"),
    ("None label", GOOD, ["a", None], "labels must be str or int"),
    ("bool label", GOOD, ["a", True], "labels must be str or int"),
    ("list label", GOOD, ["a", ["x"]], "labels must be str or int"),
    ("empty string label", GOOD, ["a", ""], "empty string"),
    ("labels as one string", GOOD, "ab", "sequence"),
    ("object inputs", np.array([[object()] * 4] * 2), ["a", "b"], "numeric"),
    ("string inputs", np.array([["x"] * 4] * 2), ["a", "b"], "numeric"),
]


@pytest.mark.parametrize(
    ("x", "labels", "message"),
    [case[1:] for case in BAD_LEARN],
    ids=[case[0] for case in BAD_LEARN],
)
def test_bad_learn_input_raises_and_changes_nothing(x: Any, labels: Any, message: str) -> None:
    learner = make_learner()
    before = snapshot(learner)
    with pytest.raises(ValueError, match=message):
        learner.learn_many(x, labels)
    assert snapshot(learner) == before


def test_bad_latents_rejected_without_change() -> None:
    learner = make_learner()
    before = snapshot(learner)
    with pytest.raises(ValueError, match="latent dimension mismatch"):
        learner.learn_latents(np.zeros((1, 3)), ["a"])
    with pytest.raises(ValueError, match="values overflow float32"):
        learner.learn_latents(np.full((1, 4), 1e308), ["a"])
    assert snapshot(learner) == before


def test_bad_predict_input_raises() -> None:
    learner = make_learner()
    with pytest.raises(ValueError, match="NaN"):
        learner.predict_many(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="empty"):
        learner.predict_many(np.zeros((0, 4)))


def test_predict_before_learning_is_a_clear_error() -> None:
    learner = Learner(IdentityBackbone(4), strategies.create("ncm"))
    with pytest.raises(NotFittedError, match="nothing has been learned"):
        learner.predict_one(np.zeros(4))


def test_open_label_set_grows_at_any_time() -> None:
    learner = make_learner()
    learner.learn_one(np.full(4, 9.0), "new")
    assert learner.labels.labels == ["a", "b", 3, "new"]
    assert learner.predict_one(np.full(4, 9.0)) == "new"
    proba = learner.predict_proba_one(np.full(4, 9.0))
    assert set(proba) == {"a", "b", 3, "new"}
    assert abs(sum(proba.values()) - 1.0) < 1e-5


def test_int_and_str_labels_are_distinct() -> None:
    learner = Learner(IdentityBackbone(1), strategies.create("ncm"))
    learner.learn_many(np.array([[0.0], [10.0]]), [1, "1"])
    assert learner.predict_many(np.array([[0.5], [9.5]])) == [1, "1"]


def test_counts_version_and_prequential() -> None:
    learner = make_learner()
    assert learner.class_counts == [2, 2, 2]
    assert learner.samples_learned == 6
    assert learner.model_version == 1
    # The first batch could not be predicted (no classes yet): all six count as errors.
    assert learner.prequential.seen == 6 and learner.prequential.correct == 0


def test_save_load_roundtrip(tmp_path: Any) -> None:
    learner = make_learner()
    path = tmp_path / "learner.ckpt"
    learner.save(path)
    loaded = Learner.load(path)
    x = np.random.default_rng(1).normal(size=(5, 4))
    np.testing.assert_array_equal(learner.predict_proba_many(x), loaded.predict_proba_many(x))
    assert loaded.labels.labels == learner.labels.labels
    assert loaded.model_version == learner.model_version
