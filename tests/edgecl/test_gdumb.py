"""GDumb: retraining from memory on request, cancellation, the atomic swap, NCM meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgecl import Learner, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.strategies.gdumb import GDumb
from edgecl.types import FloatArray, IntArray, State
from service.app import create_app
from service.runtime import LearnerRuntime
from service.settings import QueueSettings
from tests.service.conftest import make_settings

DIM = 4
CENTRES = np.eye(DIM, dtype=np.float32) * 3.0


def blobs(classes: list[int], n: int, seed: int = 0) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes, dtype=np.int64), n)
    z = CENTRES[y] + rng.normal(scale=0.3, size=(len(y), DIM)).astype(np.float32)
    order = rng.permutation(len(y))
    return z[order], y[order]


def gdumb_learner(**options: Any) -> Learner:
    store = replay.create("class_balanced", max_bytes=64 << 10)
    return Learner(IdentityBackbone(DIM), strategies.create("gdumb", **options), store)


def learn(learner: Learner, classes: list[int], n: int = 30, seed: int = 0) -> None:
    z, y = blobs(classes, n, seed)
    learner.learn_many(z, y.tolist())


def accuracy(learner: Learner, classes: list[int]) -> float:
    z, y = blobs(classes, 20, seed=99)
    return float(np.mean(np.array(learner.predict_many(z)) == y))


def test_retrain_trains_a_head_from_the_memory_and_swaps_it_in() -> None:
    learner = gdumb_learner()
    learn(learner, [0, 1, 2])
    strategy = learner.strategy
    assert isinstance(strategy, GDumb) and strategy.state_dict()["head"] is None
    version = learner.model_version
    fractions: list[float] = []
    assert learner.retrain(progress=fractions.append) is True
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert learner.model_version == version + 1 and strategy.retrains == 1
    head = strategy.state_dict()["head"]
    assert head is not None and head["trained"].tolist() == [True, True, True]
    assert accuracy(learner, [0, 1, 2]) >= 0.95


def test_the_head_is_trained_from_memory_only() -> None:
    # Samples that never made it into the memory do not shape the head.
    learner, other = gdumb_learner(), gdumb_learner()
    learn(learner, [0, 1])
    learn(other, [0, 1])
    z, y = blobs([0, 1], 5, seed=7)
    other.strategy.learn_many(z, y)  # only the running means see these, not the memory
    learner.retrain()
    other.retrain()
    heads = [lrn.strategy.state_dict()["head"] for lrn in (learner, other)]
    np.testing.assert_array_equal(heads[0]["w"], heads[1]["w"])


def test_classes_learned_since_the_retrain_are_answered_by_nearest_class_mean() -> None:
    learner = gdumb_learner()
    learn(learner, [0, 1])
    learner.retrain()
    learn(learner, [2, 3], seed=1)  # after the retrain: no head output for these yet
    proba = learner.predict_proba_latents(blobs([0, 1, 2, 3], 5)[0])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert accuracy(learner, [2, 3]) >= 0.95
    assert accuracy(learner, [0, 1]) >= 0.95
    learner.retrain()
    head = learner.strategy.state_dict()["head"]
    assert head["trained"].tolist() == [True] * 4


def test_a_cancelled_retrain_changes_nothing() -> None:
    learner = gdumb_learner(epochs=50)
    learn(learner, [0, 1])
    before = codec.packb(learner.state_dict())
    calls: list[float] = []
    assert learner.retrain(progress=calls.append, cancel=lambda: len(calls) >= 3) is False
    assert len(calls) == 3  # it stopped at the first check after cancel() said so
    assert codec.packb(learner.state_dict()) == before


def test_predictions_are_served_from_the_old_head_while_a_retrain_runs() -> None:
    learner = gdumb_learner(epochs=20)
    learn(learner, [0, 1])
    learner.retrain()
    learn(learner, [2], seed=2)
    z, _ = blobs([0, 1, 2], 5, seed=3)
    old = learner.predict_proba_latents(z)
    in_progress, release = threading.Event(), threading.Event()

    def progress(fraction: float) -> None:
        in_progress.set()
        release.wait(10.0)

    done: list[bool] = []
    worker = threading.Thread(target=lambda: done.append(learner.retrain(progress)))
    worker.start()
    assert in_progress.wait(10.0)
    during = learner.predict_proba_latents(z)  # while the new head is being trained
    np.testing.assert_array_equal(during, old)
    release.set()
    worker.join(10.0)
    assert done == [True]
    assert not np.array_equal(learner.predict_proba_latents(z), old)


def test_retrain_needs_a_capable_strategy_and_a_memory() -> None:
    with pytest.raises(ValueError, match="does not retrain"):
        Learner(IdentityBackbone(DIM), strategies.create("ncm")).retrain()
    with pytest.raises(ValueError, match="memory is empty"):
        gdumb_learner().retrain()


def test_the_retrain_state_swaps_only_the_head() -> None:
    s = GDumb()
    s.add_classes(2)
    z, y = blobs([0, 1], 10)
    s.learn_many(z, y)
    state = s.retrain(z, y, lambda fraction: True)
    assert set(state) == {"head", "retrains"}
    s.add_classes(3)
    s.learn_many(*blobs([2], 10, seed=1))  # the means move on while the head trains
    means = s.means.copy()
    s.load_state_dict(state)
    np.testing.assert_array_equal(s.means, means)


# -- the daemon: POST /retrain -----------------------------------------------------------
class GatedGDumb(GDumb):
    """GDumb whose every retrain epoch waits for ``gate``: the test decides when it ends.
    (Set after construction: the constructor's parameters are the options.)"""

    gate: threading.Event

    def retrain(self, z: FloatArray, y: IntArray, on_progress: Callable[[float], bool]) -> State:
        def gated(fraction: float) -> bool:
            self.gate.wait(10.0)
            return on_progress(fraction)

        return super().retrain(z, y, gated)


def features(hot: int) -> dict[str, Any]:
    return {"features": CENTRES[hot].tolist()}


@pytest.fixture
def gated() -> Iterator[tuple[TestClient, threading.Event]]:
    """A started daemon on GatedGDumb + class_balanced that learned "a" and "b"."""
    gate = threading.Event()
    store = replay.create("class_balanced", max_bytes=64 << 10)
    strategy = GatedGDumb(epochs=5)
    strategy.gate = gate
    learner = Learner(IdentityBackbone(DIM), strategy, store)
    runtime = LearnerRuntime(learner, queue=QueueSettings(max_wait_ms=1.0))
    with TestClient(create_app(make_settings(strategy={"name": "gdumb"}), runtime)) as client:
        samples = [{**features(c), "label": name} for c, name in ((0, "a"), (1, "b"))] * 3
        assert client.post("/learn", json={"samples": samples}).status_code == 200
        yield client, gate
        gate.set()


def wait_job(client: TestClient, job: str) -> dict[str, Any]:
    for _ in range(1000):
        status: dict[str, Any] = client.get(f"/retrain/{job}").json()
        if status["state"] != "running":
            return status
        time.sleep(0.01)
    raise AssertionError(f"retrain job {job} did not finish")


def predict(client: TestClient, hot: int) -> str:
    response = client.post("/predict", json={"samples": [features(hot)]})
    assert response.status_code == 200
    label: str = response.json()["predictions"][0]["label"]
    return label


def test_post_retrain_runs_in_the_background_and_swaps_the_head(
    gated: tuple[TestClient, threading.Event],
) -> None:
    client, gate = gated
    response = client.post("/retrain")
    assert response.status_code == 202 and response.json()["state"] == "running"
    job = response.json()["job"]
    assert predict(client, 0) == "a"  # served while the job waits at its gate
    new = {**features(2), "label": "c"}
    assert client.post("/learn", json={"samples": [new, new]}).status_code == 200
    gate.set()
    assert wait_job(client, job)["state"] == "succeeded"
    assert client.get("/stats").json()["model_version"] == 3  # learn, learn, swap
    # "c" came after the memory snapshot: nearest class mean answers it.
    assert [predict(client, c) for c in (0, 1, 2)] == ["a", "b", "c"]


def test_delete_retrain_cancels_and_keeps_the_head(
    gated: tuple[TestClient, threading.Event],
) -> None:
    client, gate = gated
    job = client.post("/retrain").json()["job"]
    assert client.delete(f"/retrain/{job}").status_code == 202
    gate.set()
    assert wait_job(client, job)["state"] == "cancelled"
    assert client.get("/stats").json()["model_version"] == 1
    assert predict(client, 1) == "b"
