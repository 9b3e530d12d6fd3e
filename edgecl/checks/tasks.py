"""What every :class:`~edgecl.protocols.TaskAware` strategy promises beyond the plain
checks (each returns at once for a strategy that ignores tasks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecl import codec
from edgecl.checks.strategy import Factory, blobs, expect
from edgecl.protocols import Snapshot, Strategy, TaskAware
from edgecl.types import FloatArray


def two_tasks(make: Factory) -> tuple[Strategy, FloatArray] | None:
    """A task-aware strategy taught task 0 (classes 0, 1) and task 1 (classes 2, 3), and
    test latents of all four classes; None for a strategy that ignores tasks."""
    strategy = make()
    if not isinstance(strategy, TaskAware):
        return None
    strategy.add_classes(4)
    strategy.add_tasks(2)
    for task, classes in enumerate(([0, 1], [2, 3])):
        z, y = blobs(classes, per_class=20, seed=task)
        for start in range(0, len(y), 8):
            sl = slice(start, start + 8)
            strategy.learn_tasks(z[sl], y[sl], np.full(len(y[sl]), task, np.int64))
    probe, _ = blobs([0, 1, 2, 3], per_class=5, seed=9)
    return strategy, probe


def check_tasks_keep_the_mass_on_their_own_classes(make: Factory) -> None:
    taught = two_tasks(make)
    if taught is None:
        return
    strategy, probe = taught
    assert isinstance(strategy, TaskAware)
    for task, others in ((0, [2, 3]), (1, [0, 1])):
        p = strategy.predict_proba_tasks(probe, np.full(len(probe), task, np.int64))
        expect(np.allclose(p.sum(axis=1), 1.0, atol=1e-5), f"task {task}: rows do not sum to 1")
        expect(not p[:, others].any(), f"task {task} gives mass to another task's classes")
    expect(strategy.task_mode in ("required", "inferred"), f"task_mode {strategy.task_mode!r}")
    if strategy.task_mode == "inferred":
        p = strategy.predict_proba_tasks(probe, None)
        expect(np.allclose(p.sum(axis=1), 1.0, atol=1e-5), "inferred rows do not sum to 1")
    else:
        try:
            strategy.predict_proba_tasks(probe, None)
        except ValueError as exc:
            expect("task" in str(exc), f"the error for a missing task says: {exc}")
        else:
            raise AssertionError("a required task was not asked for")


def check_task_state_round_trips_and_snapshots_stay(make: Factory) -> None:
    taught = two_tasks(make)
    if taught is None:
        return
    strategy, probe = taught
    assert isinstance(strategy, TaskAware)
    t = np.arange(len(probe)) % 2
    before = strategy.predict_proba_tasks(probe, t)
    copy = make(**codec.roundtrip(strategy.options()))
    copy.load_state_dict(codec.roundtrip(strategy.state_dict()))
    assert isinstance(copy, TaskAware)
    expect(np.array_equal(copy.predict_proba_tasks(probe, t), before), "restored state differs")
    expect(copy.task_nbytes() == strategy.task_nbytes(), "restored bytes per task differ")
    nbytes = strategy.task_nbytes()
    expect(sorted(nbytes) == [0, 1] and all(v >= 0 for v in nbytes.values()), f"{nbytes}")
    expect(strategy.task_budget_problem(3) is None, "the default budget refuses a third task")
    if isinstance(strategy, Snapshot):
        frozen = strategy.snapshot()
        z, y = blobs([2, 3], per_class=10, seed=5)
        strategy.learn_tasks(z, y, np.ones(len(y), np.int64))
        same = np.array_equal(frozen.predict_proba_tasks(probe, t), before)  # type: ignore[attr-defined]
        expect(same, "the snapshot saw later learning")


def task_checks() -> list[Callable[[Factory], None]]:
    return [
        check_tasks_keep_the_mass_on_their_own_classes,
        check_task_state_round_trips_and_snapshots_stay,
    ]
