"""What each head strategy computes, and the learner saving and loading them mid-stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecl import Learner, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.protocols import TaskAware
from edgecl.strategies.cwr_star import CWRStar
from edgecl.strategies.latent_replay import LatentReplay
from edgecl.strategies.linear import SGD, sgd_softmax
from edgecl.strategies.ncm import NCM
from edgecl.types import FloatArray, IntArray


def stream(n: int, dim: int, n_classes: int, seed: int = 0) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    y = rng.integers(0, n_classes, size=n)
    z = (centres[y] + rng.normal(scale=0.5, size=(n, dim))).astype(np.float32)
    return z, y.astype(np.int64)


# -- NCM --------------------------------------------------------------------------------
def test_ncm_means_are_the_class_means() -> None:
    z, y = stream(40, 3, 3)
    s = NCM()
    s.add_classes(3)
    s.learn_many(z[:13], y[:13])
    s.learn_many(z[13:], y[13:])
    for c in range(3):
        np.testing.assert_allclose(s.means[c], z[y == c].mean(axis=0), rtol=1e-6)


# -- CWR* -------------------------------------------------------------------------------
def test_cwr_star_consolidates_with_the_papers_formula() -> None:
    z, y = stream(24, 4, 3)
    y[y == 2] = 1  # two classes in the batch, class 2 stays untrained
    s = CWRStar(lr=0.1, epochs=2, batch_size=8, outputs=0)  # one background row
    s.add_classes(3)
    cw = np.zeros((3, 4), np.float32)
    past = np.zeros(3)
    for call in range(2):
        s.learn_many(z, y)
        classes, cur = np.unique(y, return_counts=True)
        tw = np.vstack([cw[classes], np.zeros((1, 4), np.float32)])
        sgd_softmax(
            tw,
            None,
            z,
            y,
            SGD(lr=0.1, epochs=2, batch_size=8),
            np.random.default_rng([0, call]),
        )
        tw = tw[:-1] - tw[:-1].mean()
        wpast = np.sqrt(past[classes] / cur)[:, None]
        cw[classes] = (cw[classes] * wpast + tw) / (wpast + 1)
        past[classes] += cur
        np.testing.assert_allclose(s.cw, cw, rtol=1e-5, atol=1e-7)
    assert s.past.tolist() == [2 * int((y == 0).sum()), 2 * int((y == 1).sum()), 0]
    assert np.all(s.cw[2] == 0)


def test_cwr_star_learns_from_single_sample_batches() -> None:
    z, y = stream(200, 8, 4)
    s = CWRStar()
    s.add_classes(4)
    for i in range(150):
        s.learn_many(z[i : i + 1], y[i : i + 1])
    accuracy = float(np.mean(s.predict_proba_many(z[150:]).argmax(axis=1) == y[150:]))
    assert accuracy >= 0.8, f"learn_one stream accuracy {accuracy:.2f}"


# -- replay size ------------------------------------------------------------------------
def test_only_the_replay_strategies_ask_for_replay() -> None:
    sizes = {name: strategies.create(name).replay_size for name in strategies.names()}
    replaying = {name for name, size in sizes.items() if size > 0}
    assert replaying == {"latent_replay", "exstream", "ar1", "cumulative"}
    assert strategies.create("latent_replay", replay_size=7).replay_size == 7


def test_the_learner_mixes_replayed_latents_into_latent_replay_batches() -> None:
    seen: list[int] = []

    class Spy(LatentReplay):
        def learn_many(self, z: FloatArray, y: IntArray) -> None:
            seen.append(len(y))
            super().learn_many(z, y)

    store = replay.create("class_balanced", max_bytes=100_000)
    learner = Learner(IdentityBackbone(4), Spy(replay_size=5), store)
    z, y = stream(12, 4, 2)
    learner.learn_many(z[:6], y[:6].tolist())
    learner.learn_many(z[6:8], y[6:8].tolist())
    assert seen == [6, 2 + 5]


# -- the learner, saved and loaded mid-stream -------------------------------------------
@pytest.mark.parametrize("name", strategies.names())
def test_learner_save_load_mid_stream_gives_identical_predictions(
    name: str, tmp_path: Path
) -> None:
    z, y = stream(120, 16, 5)
    order = np.argsort(y >= 3, kind="stable")  # classes 3 and 4 only in the second half
    z, y = z[order], y[order]
    labels = [f"class-{c}" for c in y.tolist()]
    store = replay.create("class_balanced", max_bytes=20_000, seed=1)
    learner = Learner(IdentityBackbone(16), strategies.create(name), store, seed=3)
    # A task-aware head learns only samples with a task: all in one here.
    tasks = ["t"] * 6 if isinstance(learner.strategy, TaskAware) else None
    for start in range(0, 60, 6):
        learner.learn_many(z[start : start + 6], labels[start : start + 6], tasks)
    learner.save(tmp_path / "learner.snap")
    loaded = Learner.load(tmp_path / "learner.snap")
    np.testing.assert_array_equal(loaded.predict_proba_many(z), learner.predict_proba_many(z))
    for start in range(60, 120, 6):  # the rest of the stream, new classes included
        for lrn in (learner, loaded):
            lrn.learn_many(z[start : start + 6], labels[start : start + 6], tasks)
    np.testing.assert_array_equal(loaded.predict_proba_many(z), learner.predict_proba_many(z))
    assert loaded.predict_many(z) == learner.predict_many(z)
    assert loaded.prequential.accuracy == learner.prequential.accuracy
