"""The task-column heads (pnn, piggyback, packnet, hypernetwork): each mechanism pinned on
a tiny example, exact state round trips, the byte budget and the task rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgecl import codec, strategies
from edgecl.protocols import TaskAware
from edgecl.strategies.hypernetwork import Hypernetwork
from edgecl.strategies.task_head import TaskHead
from edgecl.types import FloatArray, IntArray

NAMES = ["pnn", "piggyback", "packnet", "hypernetwork"]
DIM = 8
#: Small and quick for every head (options each of them takes).
TINY: dict[str, dict[str, Any]] = {
    "pnn": {"hidden": 8, "lr": 0.05},
    "piggyback": {"hidden": 8, "lr": 0.05, "mask_lr": 0.01},
    "packnet": {"hidden": 8, "lr": 0.05, "retain": 64},
    "hypernetwork": {"proj_dim": 8, "lr": 0.01},
}


def blobs(classes: list[int], per_class: int, seed: int) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.asarray(classes, np.int64), per_class)
    centres = np.random.default_rng(99).normal(scale=3.0, size=(10, DIM)).astype(np.float32)
    z = centres[y] + rng.normal(scale=0.5, size=(len(y), DIM)).astype(np.float32)
    order = rng.permutation(len(y))
    return np.ascontiguousarray(z[order]), y[order]


def make(name: str, **options: Any) -> TaskHead:
    head = strategies.create(name, **{**TINY[name], **options})
    assert isinstance(head, TaskHead) and isinstance(head, TaskAware)
    head.add_classes(6)
    head.add_tasks(3)
    return head


def teach(head: TaskHead, task: int, batches: int = 6, seed: int = 0) -> None:
    z, y = blobs([2 * task, 2 * task + 1], per_class=8 * batches, seed=seed + task)
    for start in range(0, len(y), 16):
        head.learn_tasks(z[start : start + 16], y[start : start + 16], np.full(16, task))


def probe(task: int) -> FloatArray:
    return blobs([2 * task, 2 * task + 1], per_class=10, seed=50 + task)[0]


def answers(head: TaskHead, task: int) -> FloatArray:
    return head.predict_proba_tasks(probe(task), np.full(20, task))


def model(head: TaskHead) -> Any:
    return head.state_dict()["model"]


def test_pnn_earlier_columns_stay_bit_for_bit_while_a_later_task_trains() -> None:
    head = make("pnn")
    teach(head, 0)
    column0 = {k: v.copy() for k, v in model(head)["columns"][0].items()}
    before = answers(head, 0)
    teach(head, 1)
    col0, col1 = model(head)["columns"]
    assert all(np.array_equal(col0[k], v) for k, v in column0.items())
    assert {"alpha", "v", "u"} <= set(col1) and col1["v"].shape == (8, 8)  # lateral adapter
    assert np.array_equal(answers(head, 0), before)
    accuracy = np.mean(answers(head, 1).argmax(1) == blobs([2, 3], 10, 51)[1])
    assert accuracy >= 0.9


def test_piggyback_masks_and_shared_weights_never_change_once_set() -> None:
    head = make("piggyback")
    teach(head, 0)
    shared = {k: model(head)[k].copy() for k in ("w", "b")}
    teach(head, 1)
    teach(head, 2, batches=1)  # task 2's first batch finalises task 1: its mask is packed
    mask1 = model(head)["masks"][0].copy()
    before = [answers(head, 0), answers(head, 1)]
    teach(head, 2, seed=7)
    assert all(np.array_equal(model(head)[k], v) for k, v in shared.items())
    assert np.array_equal(model(head)["masks"][0], mask1)
    bits = np.unpackbits(mask1, count=8 * DIM)
    assert 0 < bits.sum() < len(bits)  # a real mask, learned from the scores' 1e-2 start
    assert np.array_equal(answers(head, 0), before[0])
    assert np.array_equal(answers(head, 1), before[1])
    assert head.task_nbytes()[1] == mask1.nbytes + 4 * (6 * 8 + 6)  # 1 bit/weight + head


def test_packnet_freed_weights_are_disjoint_from_kept_ones_and_task1_stays_exact() -> None:
    head = make("packnet", prune=0.5)
    teach(head, 0)
    teach(head, 1, batches=1)  # finalises task 0: pruned, retrained, frozen
    owner, w = model(head)["owner"].copy(), model(head)["w"].copy()
    kept, freed = owner == 0, owner == -1
    assert not (kept & freed).any() and (kept | freed).all()
    assert kept.sum() == freed.sum() == w.size // 2  # prune 0.5 of the free weights
    before = answers(head, 0)
    teach(head, 1, seed=3)
    changed = model(head)["w"] != w
    assert changed.any() and not (changed & kept).any()  # only freed weights train
    teach(head, 2, batches=1)  # finalises task 1 from the weights task 0 freed
    owner2 = model(head)["owner"]
    assert np.array_equal(owner2 == 0, kept) and not ((owner2 == 1) & kept).any()
    assert (owner2 == 1).sum() == freed.sum() // 2
    teach(head, 2, seed=5)
    assert np.array_equal(answers(head, 0), before)
    accuracy = np.mean(answers(head, 1).argmax(1) == blobs([2, 3], 10, 51)[1])
    assert accuracy >= 0.9


def drift(beta: float) -> tuple[float, float]:
    """How far task 0's generated weights move from their target while task 1 trains,
    relative to the target's size; and task 0's accuracy afterwards."""
    head = make("hypernetwork", beta=beta, lr=0.01)
    teach(head, 0, batches=10)
    teach(head, 1, batches=1)
    assert isinstance(head, Hypernetwork)
    state = model(head)
    theta_star = {k: np.asarray(v) for k, v in state["theta_star"].items()}
    e0 = state["emb"][0][None, :]
    target = head.generate(theta_star, e0)[0]
    teach(head, 1, batches=20, seed=9)
    now = head.generate(model(head)["theta"], e0)[0]
    accuracy = float(np.mean(answers(head, 0).argmax(1) == blobs([0, 1], 10, 50)[1]))
    return float(np.linalg.norm(now - target) / np.linalg.norm(target)), accuracy


def test_hypernetwork_regulariser_holds_earlier_tasks_weights_and_beta_zero_lets_them_go() -> None:
    held, accuracy = drift(0.01)
    free, _ = drift(0.0)
    assert held < 0.05 and accuracy >= 0.9
    assert free > 3 * held


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trip_gives_identical_predictions_mid_task(name: str) -> None:
    head = make(name)
    teach(head, 0)
    teach(head, 1)
    teach(head, 2, batches=2)
    restored = strategies.create(name, **codec.roundtrip(head.options()))
    assert isinstance(restored, TaskHead)
    restored.load_state_dict(codec.roundtrip(head.state_dict()))
    for task in range(3):
        assert np.array_equal(answers(restored, task), answers(head, task))
    assert restored.task_nbytes() == head.task_nbytes()
    for h in (head, restored):
        teach(h, 2, seed=11)
    assert np.array_equal(answers(restored, 2), answers(head, 2))


@pytest.mark.parametrize("name", NAMES)
def test_a_task_past_the_byte_budget_is_refused_and_nothing_changes(name: str) -> None:
    reference = make(name)
    teach(reference, 0)
    held = sum(reference.task_nbytes().values()) + reference.shared_nbytes()
    head = strategies.create(name, **{**TINY[name], "max_bytes": held + 1})
    assert isinstance(head, TaskHead)
    head.add_classes(6)
    head.add_tasks(1)
    teach(head, 0)
    before = codec.packb(head.state_dict())
    problem = head.task_budget_problem(2)
    assert problem is not None and "max_bytes" in problem and name in problem
    with pytest.raises(ValueError, match="max_bytes"):
        head.add_tasks(2)
    assert head.n_tasks == 1 and codec.packb(head.state_dict()) == before
    assert head.task_budget_problem(1) is None
    assert reference.task_budget_problem(3) is None and set(reference.task_nbytes()) == {0}


@pytest.mark.parametrize("name", NAMES)
def test_tasks_are_required_and_a_finalised_task_cannot_learn(name: str) -> None:
    head = make(name)
    assert head.task_mode == "required"
    teach(head, 0)
    teach(head, 1)
    with pytest.raises(ValueError, match="task"):
        head.predict_proba_many(probe(0))
    with pytest.raises(ValueError, match="task"):
        head.predict_proba_tasks(probe(0), None)
    before = codec.packb(head.state_dict())
    z, y = blobs([0, 1], per_class=4, seed=20)
    with pytest.raises(ValueError, match="task 0 was finalised"):
        head.learn_tasks(z, y, np.zeros(8, np.int64))
    with pytest.raises(ValueError, match="task 5 is out of range"):
        head.learn_tasks(z, y, np.full(8, 5))
    assert codec.packb(head.state_dict()) == before
    proba = answers(head, 1)
    assert np.all(proba[:, [0, 1, 4, 5]] == 0.0)  # only task 1's classes get mass
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-5)
    assert set(head.task_nbytes()) == {0, 1} and min(head.task_nbytes().values()) > 0


def test_hypernetwork_refuses_more_classes_in_a_task_than_its_output_slots() -> None:
    head = make("hypernetwork", slots=2)
    teach(head, 0)
    before = codec.packb(head.state_dict())
    z, y = blobs([0, 2], per_class=4, seed=21)
    with pytest.raises(ValueError, match="3 classes, more than the 2 output slots"):
        head.learn_tasks(z, y, np.zeros(8, np.int64))
    assert codec.packb(head.state_dict()) == before


@pytest.mark.parametrize("name", NAMES)
def test_a_bad_first_batch_through_learn_many_adds_no_task(name: str) -> None:
    head = strategies.create(name)
    assert isinstance(head, TaskHead)
    head.add_classes(2)
    with pytest.raises(ValueError, match="out of range"):
        head.learn_many(*blobs([0, 3], per_class=2, seed=1))
    assert head.n_tasks == 0 and head.task_nbytes() == {}
    head.learn_many(*blobs([0, 1], per_class=2, seed=1))
    assert head.n_tasks == 1 and set(head.task_nbytes()) == {0}
