"""The probe set: held back, never learned, class balanced, byte bounded, and it shows
forgetting that prequential accuracy hides.

The class-incremental stream is the committed Fashion-MNIST fixture (200 training images
per class) in five experiences of two classes, pixels mean-pooled 4x4 to 49-d latents so
SLDA stays fast, learned in shuffled batches of 20 with 10% held back.

Measured when written (after the last experience): naive windowed prequential 1.00, probe
accuracy 1.00 after experience 1 falling to 0.24, mean forgetting 0.80; slda probe accuracy
0.76, mean forgetting 0.12.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgecl import Learner, codec, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.datasets import load_fixture
from edgecl.probe import ProbeSet

EXPERIENCES = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
Run = tuple[Learner, ProbeSet, list[dict[str, float]]]


def learn(learner: Learner, z: np.ndarray, labels: list[str]) -> int:
    """Learn through the learner's probe; how many samples it learned (not held back)."""
    return learner.learn_batch(learner.check_batch(z, labels))


def pooled_fixture() -> tuple[np.ndarray, np.ndarray]:
    train, _ = load_fixture()
    x = train.images.reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(len(train.labels), -1)
    return (x / 255.0).astype(np.float32), train.labels


def class_incremental(name: str, **options: float) -> Run:
    """Learn the stream through a probe; one record per experience."""
    x, labels = pooled_fixture()
    probe = ProbeSet(share=0.1, every=100, max_bytes=64 << 10, seed=0)
    strategy = strategies.create(name, **options)
    learner = Learner(IdentityBackbone(x.shape[1]), strategy, window=100, probe=probe)
    rng = np.random.default_rng(0)
    history = []
    for classes in EXPERIENCES:
        order = rng.permutation(np.flatnonzero(np.isin(labels, classes)))
        for start in range(0, len(order), 20):
            idx = order[start : start + 20]
            learn(learner, x[idx], labels[idx].tolist())
        probe.rescore(learner)
        report = probe.report(learner.labels.labels)
        history.append(
            {
                "window": learner.prequential.window_accuracy,
                "probe": report["accuracy"],
                "forgetting": report["forgetting"],
                "max_forgetting": report["max_forgetting"],
            }
        )
    return learner, probe, history


@pytest.fixture(scope="module")
def naive() -> Run:
    return class_incremental("naive", lr=0.05)


@pytest.fixture(scope="module")
def slda() -> Run:
    return class_incremental("slda")


def test_naive_scores_high_prequentially_while_the_probe_shows_it_forgets(
    naive: Run, record_property: Callable[[str, object], None]
) -> None:
    _, _, history = naive
    first, last = history[0], history[-1]
    record_property("naive_history", history)
    assert all(h["window"] >= 0.9 for h in history), history
    assert first["probe"] >= 0.9, history
    assert last["probe"] <= 0.35, history
    assert last["forgetting"] >= 0.5 and last["max_forgetting"] >= 0.9, history


def test_slda_keeps_the_probe_high(
    slda: Run, naive: Run, record_property: Callable[[str, object], None]
) -> None:
    _, _, history = slda
    record_property("slda_history", history)
    assert all(h["probe"] >= 0.65 for h in history), history
    assert history[-1]["forgetting"] <= 0.25, history
    assert history[-1]["probe"] >= naive[2][-1]["probe"] + 0.3


def test_held_samples_are_never_learned(naive: Run) -> None:
    learner, probe, _ = naive
    x, _ = pooled_fixture()
    offered = len(x)  # every sample of the fixture went through the probe once
    assert probe.diverted > 0
    assert learner.samples_learned + probe.diverted == offered
    assert sum(learner.class_counts) == learner.samples_learned
    assert learner.prequential.seen == learner.samples_learned


def test_probe_is_class_balanced_and_byte_bounded_over_many_classes() -> None:
    dim, n_classes = 8, 300
    probe = ProbeSet(share=0.3, every=1000, max_bytes=4096, warmup=1, seed=1)
    learner = Learner(IdentityBackbone(dim), strategies.create("ncm"), probe=probe)
    rng = np.random.default_rng(0)
    for step in range(200):
        y = rng.integers(0, min(n_classes, 10 + 2 * step), 64)
        z = rng.normal(size=(64, dim)).astype(np.float32) + y[:, None]
        learn(learner, z, [f"c{i}" for i in y.tolist()])
        assert probe.store.nbytes <= probe.store.max_bytes
    counts = list(probe.store.class_counts.values())
    # 4096 bytes of 8-d int8 latents (20 B each): 204 items, fewer than the classes.
    assert len(probe.store) == 4096 // 20
    assert max(counts) - min(counts) <= 1
    probe.rescore(learner)
    report = probe.report(learner.labels.labels)
    assert len(report["classes"]) <= len(probe.store)


def test_warmup_and_share_zero() -> None:
    probe = ProbeSet(share=0.99, warmup=5, seed=0)
    learner = Learner(IdentityBackbone(2), strategies.create("ncm"), probe=probe)
    z = np.ones((5, 2), np.float32)
    assert learn(learner, z, ["a"] * 5) == 5  # the first five of a class are learned
    assert learn(learner, z, ["a"] * 5) < 5
    off = ProbeSet(share=0.0)
    learner = Learner(IdentityBackbone(2), strategies.create("ncm"), probe=off)
    assert learn(learner, z, ["a"] * 5) == 5 and off.held == 0


def test_state_round_trips_and_replays_the_same_split() -> None:
    probe = ProbeSet(share=0.2, every=10, warmup=1, seed=3)
    learner = Learner(IdentityBackbone(3), strategies.create("ncm"), probe=probe)
    rng = np.random.default_rng(0)

    def batch() -> tuple[np.ndarray, list[str]]:
        y = rng.integers(0, 4, 16)
        return rng.normal(size=(16, 3)).astype(np.float32) + y[:, None], [f"k{i}" for i in y]

    for _ in range(10):
        learn(learner, *batch())
    state = codec.unpackb(codec.packb(probe.state_dict()))
    twin = ProbeSet(share=0.2, every=10, warmup=1, seed=99)
    twin.load_state_dict(state)
    labels = learner.labels.labels
    assert twin.report(labels) == probe.report(labels)
    twin_learner = Learner.from_state(learner.state_dict(), probe=twin)
    for _ in range(5):
        z, y = batch()
        assert learn(learner, z, y) == learn(twin_learner, z, y)
    assert twin.report(labels) == probe.report(labels)


def test_another_budget_drops_held_items_but_keeps_counts() -> None:
    probe = ProbeSet(share=0.5, every=2, warmup=1, seed=0)
    learner = Learner(IdentityBackbone(2), strategies.create("ncm"), probe=probe)
    z = np.array([[1, 0], [0, 1]] * 20, np.float32)
    learn(learner, z[:2], ["a", "b"])
    learn(learner, z, ["a", "b"] * 20)
    other = ProbeSet(share=0.5, every=2, max_bytes=2048, seed=0)
    other.load_state_dict(probe.state_dict())
    assert other.held == 0 and other.diverted == probe.diverted > 0
    assert other.accuracy is None


@pytest.mark.parametrize(
    "options",
    [{"share": 1.0}, {"share": -0.1}, {"every": 0}, {"warmup": 0}, {"encoding": "lz4"}],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ProbeSet(**options)  # type: ignore[arg-type]
