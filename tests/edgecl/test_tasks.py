"""Tasks through the Learner: per-sample tasks learned, stored, saved, probed and refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgecl import Learner, codec, replay, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.probe import ProbeSet
from edgecl.task_book import unpack
from edgecl.types import FloatArray, IntArray, State

DIM = 4


def two_tasks(n: int = 40, seed: int = 0) -> tuple[FloatArray, list[str], list[str]]:
    """The same inputs mean different labels in two tasks: only the task tells them."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, size=n)
    z = (np.eye(DIM, dtype=np.float32)[side] * 4 + rng.normal(0, 0.2, (n, DIM))).astype(np.float32)
    labels_a = ["cat" if s == 0 else "dog" for s in side]
    labels_b = ["red" if s == 0 else "blue" for s in side]
    return np.vstack([z, z]), labels_a + labels_b, ["animals"] * n + ["colours"] * n


def test_a_task_aware_head_answers_each_task_with_its_own_classes() -> None:
    learner = Learner(IdentityBackbone(DIM), strategies.create("multi_head", lr=0.5))
    z, labels, tasks = two_tasks()
    for start in range(0, len(z), 16):
        sl = slice(start, start + 16)
        learner.learn_latents(z[sl], labels[sl], tasks=tasks[sl])
    probe = np.eye(DIM, dtype=np.float32)[:2] * 4
    assert learner.predict_many(probe, ["animals", "animals"]) == ["cat", "dog"]
    assert learner.predict_many(probe, ["colours", "colours"]) == ["red", "blue"]
    report = learner.tasks.report(learner.labels.labels, learner.strategy)
    assert [(r["name"], r["samples"], set(r["classes"])) for r in report] == [
        ("animals", 40, {"cat", "dog"}),
        ("colours", 40, {"red", "blue"}),
    ]
    assert all(r["bytes"] == 4 * 4 * (DIM + 1) for r in report)  # 4 classes, dim + bias


def test_a_strategy_that_ignores_tasks_records_them_and_learns_as_before() -> None:
    z, labels, tasks = two_tasks()
    plain, tasked = (Learner(IdentityBackbone(DIM), strategies.create("ncm")) for _ in "ab")
    plain.learn_latents(z, labels)
    tasked.learn_latents(z, labels, tasks=tasks)
    assert np.array_equal(plain.predict_proba_latents(z), tasked.predict_proba_latents(z))
    assert tasked.tasks.counts == [40, 40] and plain.tasks.counts == []


def test_a_required_task_missing_is_refused_naming_it_and_nothing_changes() -> None:
    learner = Learner(IdentityBackbone(DIM), strategies.create("multi_head"))
    z, labels, tasks = two_tasks(8)
    learner.learn_latents(z, labels, tasks=tasks)
    before = codec.packb(learner.state_dict())
    with pytest.raises(ValueError, match=r"samples\[1\]\.task"):
        learner.learn_latents(z[:2], labels[:2], tasks=["animals", None])
    with pytest.raises(ValueError, match="task"):
        learner.predict_proba_latents(z[:2])  # two tasks: "required" needs one
    with pytest.raises(ValueError, match="never taught"):
        learner.predict_proba_latents(z[:1], ["plants"])
    assert codec.packb(learner.state_dict()) == before


def test_a_new_task_past_the_byte_budget_is_refused_before_anything_is_learned() -> None:
    # one task's head: 2 classes x (DIM + 1) x 4 bytes = 40; two tasks need 80
    learner = Learner(IdentityBackbone(DIM), strategies.create("multi_head", max_bytes=60))
    z, labels, tasks = two_tasks(8)
    learner.learn_latents(z[:8], labels[:8], tasks=tasks[:8])
    before = codec.packb(learner.state_dict())
    with pytest.raises(ValueError, match="max_bytes=60"):
        learner.learn_latents(z[8:], labels[8:], tasks=tasks[8:])
    assert codec.packb(learner.state_dict()) == before
    assert learner.tasks.names.labels == ["animals"]


@pytest.mark.parametrize("store_name", replay.names())
def test_every_store_keeps_each_items_task_through_save_and_load(
    store_name: str, tmp_path: Path
) -> None:
    store = replay.create(store_name, max_bytes=1 << 16, encoding="float32")
    learner = Learner(IdentityBackbone(DIM), strategies.create("latent_replay"), store)
    rng = np.random.default_rng(1)
    # each latent says its task in its first coordinate, so a held item can be checked
    t = rng.integers(0, 3, size=30)
    z = np.c_[t, rng.normal(size=(30, DIM - 1))].astype(np.float32)
    learner.learn_latents(z, [f"c{i % 2}" for i in range(30)], tasks=[f"t{i}" for i in t])
    path = tmp_path / "model.edgecl"
    learner.save(path)
    loaded = Learner.load(path)
    assert loaded.store is not None and learner.store is not None
    zs, keys = loaded.store.items()
    _, tasks = unpack(keys)
    names = [loaded.tasks.names.decode(int(i)) for i in tasks]
    assert len(names) > 0 and names == [f"t{round(float(v))}" for v in zs[:, 0]]
    assert np.array_equal(keys, learner.store.items()[1])


class Recorder:
    """A task-aware head that learns nothing but what it is handed (to see the replay)."""

    name, task_mode, replay_size = "recorder", "required", 8

    def __init__(self) -> None:
        self.seen: list[tuple[IntArray, IntArray]] = []
        self.k = 0

    def add_classes(self, n: int) -> None:
        self.k = n

    def add_tasks(self, n: int) -> None:
        pass

    def task_budget_problem(self, n: int) -> str | None:
        return None

    def learn_tasks(self, z: FloatArray, y: IntArray, t: IntArray) -> None:
        assert np.array_equal(z[:, 0].round().astype(int), t)  # latents carry their task
        self.seen.append((y.copy(), t.copy()))

    def learn_many(self, z: FloatArray, y: IntArray) -> None:
        raise AssertionError("a task-aware head is taught with its tasks")

    def predict_proba_tasks(self, z: FloatArray, t: Any) -> FloatArray:
        return np.full((len(z), self.k), 1.0 / self.k, np.float32)

    def predict_proba_many(self, z: FloatArray) -> FloatArray:
        return self.predict_proba_tasks(z, None)

    def task_nbytes(self) -> dict[int, int]:
        return {}

    def options(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> State:
        return {}

    def load_state_dict(self, state: State) -> None:
        pass


def test_replayed_items_come_back_with_their_task() -> None:
    store = replay.create("reservoir", max_bytes=1 << 16, encoding="float32")
    head = Recorder()
    learner = Learner(IdentityBackbone(DIM), head, store)
    for task in range(3):
        z = np.full((4, DIM), float(task), np.float32)
        learner.learn_latents(z, ["a", "b", "a", "b"], tasks=[f"t{task}"] * 4)
    y, t = head.seen[-1]
    # the batch of task 2, then a replay of the items of tasks 0 and 1 stored before it
    assert t[:4].tolist() == [2] * 4 and set(t[4:].tolist()) == {0, 1}


def test_the_probe_holds_items_with_their_task_and_scores_them_with_it() -> None:
    probe = ProbeSet(share=0.3, every=10, warmup=1, min_items=4)
    learner = Learner(IdentityBackbone(DIM), strategies.create("multi_head", lr=0.5), probe=probe)
    z, labels, tasks = two_tasks(60)
    order = np.random.default_rng(0).permutation(len(z))
    for start in range(0, len(z), 20):
        rows = order[start : start + 20]
        learner.learn_latents(z[rows], [labels[i] for i in rows], tasks=[tasks[i] for i in rows])
    _, y, t = probe.labelled()
    assert probe.held > 4 and set(t.tolist()) == {0, 1}
    report = probe.report(learner.labels.labels, None)
    assert report["accuracy"] == 1.0  # same inputs, other labels: right only with the task
    assert sum(c["held"] for c in report["classes"].values()) == probe.held
    assert learner.calibration.status == "fitted"


def test_a_state_from_before_tasks_loads_without_any() -> None:
    learner = Learner(IdentityBackbone(DIM), strategies.create("ncm"))
    learner.learn_latents(np.eye(DIM, dtype=np.float32)[:2], ["a", "b"])
    state = learner.state_dict()
    del state["tasks"]
    assert len(Learner.from_state(state).tasks) == 0


def test_a_head_retrained_from_memory_gets_class_indices_not_task_labels() -> None:
    store = replay.create("class_balanced", max_bytes=1 << 16, encoding="float32")
    learner = Learner(IdentityBackbone(DIM), strategies.create("gdumb", epochs=5), store)
    z = np.eye(DIM, dtype=np.float32)[:2].repeat(8, axis=0)
    learner.learn_latents(z, ["up"] * 8 + ["right"] * 8, tasks=["a"] * 16)
    assert learner.retrain()
    assert learner.predict_many(np.eye(DIM, dtype=np.float32)[:2]) == ["up", "right"]


def test_a_finalised_task_is_refused_before_anything_is_learned() -> None:
    learner = Learner(IdentityBackbone(4), strategies.create("packnet", hidden=8))
    x = np.eye(4, dtype=np.float32)
    learner.learn_many(x[:2], ["a", "b"], tasks=["A", "A"])
    learner.learn_many(x[2:], ["c", "d"], tasks=["B", "B"])  # finalises A
    before = learner.samples_learned
    with pytest.raises(ValueError, match=r"samples\[1\]\.task.*finalised"):
        learner.check_batch(x[:2], ["a", "b"], tasks=["B", "A"])
    assert learner.samples_learned == before
