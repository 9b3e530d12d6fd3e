"""The mechanisms of the task-aware heads, each pinned on a tiny example."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import codec, strategies
from edgecl.checks.strategy import blobs
from edgecl.strategies.hat import HAT
from edgecl.strategies.multi_head import MultiHead
from edgecl.strategies.supsup import SupSup
from edgecl.types import FloatArray, IntArray


def teach(head: object, z: FloatArray, y: IntArray, task: int, batch: int = 16) -> None:
    for start in range(0, len(z), batch):
        sl = slice(start, start + batch)
        head.learn_tasks(z[sl], y[sl], np.full(len(z[sl]), task))  # type: ignore[attr-defined]


def two_tasks() -> tuple[tuple[FloatArray, IntArray], tuple[FloatArray, IntArray]]:
    """Task 0: classes 0, 1; task 1: classes 2, 3 (blobs on other axes)."""
    return blobs([0, 1], 40, seed=1), blobs([2, 3], 40, seed=2)


def test_hat_leaves_the_weights_task_1_uses_unchanged_while_task_2_trains() -> None:
    head = HAT()
    head.add_classes(4)
    head.add_tasks(2)
    (z1, y1), (z2, y2) = two_tasks()
    teach(head, z1, y1, 0)
    used = [a == 1.0 for a in head.masks(0, head.s_max)]  # units task 1 took
    assert 0 < used[0].sum() < len(used[0])
    weights = {k: v.copy() for k, v in head.params.items()}
    answers = head.predict_proba_tasks(z1, np.zeros(len(z1), np.int64))
    teach(head, z2, y2, 1)
    # Every weight into a unit task 1 uses, and its bias, is where task 1 left it ...
    assert np.array_equal(head.params["w0"][used[0]], weights["w0"][used[0]])
    assert np.array_equal(head.params["b0"][used[0]], weights["b0"][used[0]])
    # ... while task 2 trained the free units (up to those it may use).
    assert not np.array_equal(head.params["w0"][~used[0]], weights["w0"][~used[0]])
    after = head.predict_proba_tasks(z1, np.zeros(len(z1), np.int64))
    assert np.array_equal(after, answers)  # so task 1 answers exactly as before
    assert (head.predict_proba_tasks(z2, np.ones(len(z2), np.int64)).argmax(1) == y2).all()


def test_hat_anneals_masks_to_near_binary_and_reports_embedding_bytes() -> None:
    head = HAT(hidden=[32, 16])
    head.add_classes(2)
    head.add_tasks(1)
    teach(head, *blobs([0, 1], 30), 0)
    for a in head.masks(0, head.s_max):
        assert ((a < 1e-6) | (a > 1 - 1e-6)).mean() > 0.9
    assert head.task_nbytes() == {0: 4 * (32 + 16)}


def test_supsup_infers_the_task_of_inputs_of_distinct_tasks() -> None:
    head = SupSup(hidden=[256], lr=0.5, epochs=10, seed=1)
    head.add_classes(4)
    head.add_tasks(2)
    (z1, y1), (z2, y2) = two_tasks()
    teach(head, z1, y1, 0)
    teach(head, z2, y2, 1)
    (t1, _), (t2, _) = blobs([0, 1], 20, seed=7), blobs([2, 3], 20, seed=8)
    zt = np.vstack([t1, t2])
    truth = np.r_[np.zeros(40, np.int64), np.ones(40, np.int64)]
    inferred = head.infer_tasks(zt)
    assert (inferred == truth).mean() >= 0.95
    # without a task, predictions are made within the inferred one
    assert np.array_equal(
        head.predict_proba_tasks(zt, None), head.predict_proba_tasks(zt, inferred)
    )


def test_supsup_never_changes_its_random_weights_and_tasks_keep_their_own_scores() -> None:
    head = SupSup(hidden=[32])
    head.add_classes(2)
    head.add_tasks(1)
    (z1, y1), (z2, y2) = two_tasks()
    teach(head, z1, y1, 0)
    weights = [w.copy() for w in head.weights]
    scores = [s.copy() for s in head.scores[0]]
    answers = head.predict_proba_tasks(z1, np.zeros(len(z1), np.int64))
    head.add_classes(4)  # the new classes' rows do not change task 0's mask
    head.add_tasks(2)
    teach(head, z2, y2, 1)
    assert all(np.array_equal(a, b[: len(a)]) for a, b in zip(weights, head.weights, strict=True))
    assert all(np.array_equal(a, b[: len(a)]) for a, b in zip(scores, head.scores[0], strict=True))
    after = head.predict_proba_tasks(z1, np.zeros(len(z1), np.int64))
    assert np.array_equal(after[:, :2], answers) and not after[:, 2:].any()
    assert (head.predict_proba_tasks(z2, np.ones(len(z2), np.int64)).argmax(1) == y2).mean() > 0.9


def test_multi_head_heads_are_independent() -> None:
    head = MultiHead()
    head.add_classes(2)
    head.add_tasks(1)
    (z1, y1), (z2, y2) = two_tasks()
    teach(head, z1, y1, 0)
    answers = head.predict_proba_tasks(z1, np.zeros(len(z1), np.int64))
    head.add_classes(4)
    head.add_tasks(2)
    teach(head, z2, y2, 1)
    after = head.predict_proba_tasks(z1, np.zeros(len(z1), np.int64))
    assert np.array_equal(after[:, :2], answers) and not after[:, 2:].any()


def test_multi_head_with_entropy_inference_picks_the_surest_head() -> None:
    head = MultiHead(infer_task="entropy", lr=0.5)
    assert head.task_mode == "inferred"
    head.add_classes(4)
    head.add_tasks(2)
    (z1, y1), (z2, y2) = two_tasks()
    teach(head, z1, y1, 0)
    teach(head, z2, y2, 1)
    truth = np.r_[np.zeros(len(z1), np.int64), np.ones(len(z2), np.int64)]
    assert (head.infer_tasks(np.vstack([z1, z2])) == truth).mean() > 0.9


def test_multi_head_without_inference_requires_the_task_once_two_exist() -> None:
    head = MultiHead()
    head.add_classes(4)
    head.add_tasks(2)
    (z1, y1), (z2, y2) = two_tasks()
    teach(head, z1, y1, 0)
    teach(head, z2, y2, 1)
    with pytest.raises(ValueError, match="task is required"):
        head.predict_proba_many(z1)


@pytest.mark.parametrize("name", ["multi_head", "hat", "supsup"])
def test_the_budget_refuses_a_task_past_it_with_a_sentence(name: str) -> None:
    head = strategies.create(name)
    head.add_classes(2)
    head.learn_many(*blobs([0, 1], 10))
    one = sum(head.task_nbytes().values())  # type: ignore[attr-defined]
    held = head.nbytes_for(1)  # type: ignore[attr-defined]
    tight = strategies.create(name, max_bytes=held + one // 2)
    tight.load_state_dict(codec.roundtrip(head.state_dict()))
    assert tight.task_budget_problem(1) is None  # type: ignore[attr-defined]
    problem = tight.task_budget_problem(2)  # type: ignore[attr-defined]
    assert problem is not None and f"max_bytes={held + one // 2}" in problem
