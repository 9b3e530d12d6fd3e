"""Class-incremental Fashion-MNIST: naive fine-tuning forgets, the others remember.

Five experiences of two classes each (0-1, 2-3, ..., 8-9) from the committed fixture
(200 training images per class), pixels scaled to [0, 1] as 784-d latents, learned
through the :class:`~edgecl.Learner` in shuffled minibatches of 20. After the last
experience each learner is scored on the 100 test images of experience 1 (classes 0
and 1) over all ten classes, where chance is 0.1.

Measured when written (accuracy on experience 1 / on all 500 test images):
naive 0.00 / 0.20, ncm 0.82 / 0.68, slda 0.81 / 0.76, cwr_star 0.42 / 0.52,
latent_replay (class-balanced store of 500 int8 latents) 0.87 / 0.62. Each test also
records its numbers as junit properties (``--junitxml``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgecl import Learner, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.datasets import Split, load_fixture
from edgecl.protocols import ReplayStore

EXPERIENCES = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
BATCH = 20
#: int8 latents of 784 values take 796 bytes each in the store (values, scale, label).
STORE_ITEMS = 500


def pixels(split: Split) -> np.ndarray:
    return split.images.reshape(len(split.labels), -1).astype(np.float32) / 255.0


def store_for(name: str) -> ReplayStore | None:
    if strategies.create(name).replay_size == 0:
        return None
    return replay.create("class_balanced", max_bytes=796 * STORE_ITEMS, seed=0)


@pytest.fixture(scope="module")
def accuracies() -> dict[str, tuple[float, float]]:
    """Per strategy: (accuracy on experience-1 test images, on all test images)."""
    train, test = load_fixture()
    first = test.classes(EXPERIENCES[0])
    out = {}
    for name in ("naive", "ncm", "slda", "cwr_star", "latent_replay"):
        learner = Learner(IdentityBackbone(784), strategies.create(name), store_for(name))
        rng = np.random.default_rng(0)
        for classes in EXPERIENCES:
            exp = train.classes(classes)
            x, y = pixels(exp), exp.labels
            order = rng.permutation(len(y))
            for start in range(0, len(y), BATCH):
                idx = order[start : start + BATCH]
                learner.learn_many(x[idx], y[idx].tolist())
        on_first = np.array(learner.predict_many(pixels(first))) == first.labels
        on_all = np.array(learner.predict_many(pixels(test))) == test.labels
        out[name] = (float(on_first.mean()), float(on_all.mean()))
    return out


def test_the_store_holds_its_budget_of_latents() -> None:
    store = store_for("latent_replay")
    assert store is not None
    train, _ = load_fixture()
    store.add_many(pixels(train)[:600], train.labels[:600])
    assert len(store) == STORE_ITEMS and store.nbytes <= store.max_bytes


def test_naive_forgets_the_first_classes(
    accuracies: dict[str, tuple[float, float]], record_property: Callable[[str, object], None]
) -> None:
    first, overall = accuracies["naive"]
    record_property("experience_1_accuracy", first)
    record_property("overall_accuracy", overall)
    assert first <= 0.05, f"naive kept experience 1 at {first:.2f} (all classes {overall:.2f})"


@pytest.mark.parametrize("name", ["ncm", "slda", "cwr_star", "latent_replay"])
def test_continual_strategies_keep_the_first_classes(
    name: str,
    accuracies: dict[str, tuple[float, float]],
    record_property: Callable[[str, object], None],
) -> None:
    first, overall = accuracies[name]
    record_property("experience_1_accuracy", first)
    record_property("overall_accuracy", overall)
    naive_first = accuracies["naive"][0]
    message = (
        f"{name}: experience-1 accuracy {first:.2f} (all classes {overall:.2f}); "
        f"naive {naive_first:.2f}, chance 0.10"
    )
    assert first >= 0.3, message
    assert overall >= 0.4, message
