"""New tasks of one micro-batch against the strategy's byte budget, together.

Each request's tasks were checked when it was queued, alone: two requests that each bring
a new task may fit one by one and not together. The writer admits them in order, and one
whose new tasks would pass the budget beside those admitted before it fails alone, with
the strategy's sentence, before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from edgecl.batch import Batch
from edgecl.learner import Learner
from edgecl.task_book import task_aware
from edgecl.types import Label


class _Job(Protocol):
    batch: Batch
    future: Future[Any]


J = TypeVar("J", bound=_Job)


def admit_tasks(learner: Learner, jobs: Sequence[J]) -> list[J]:
    """The jobs whose new tasks fit beside those of the jobs admitted before them."""
    head = task_aware(learner.strategy)
    if head is None:
        return list(jobs)
    known, new = learner.tasks.names, set[tuple[type, Label]]()
    admitted = []
    for job in jobs:
        mine = {(type(t), t) for t in job.batch.tasks or () if t is not None and t not in known}
        if mine - new:
            problem = head.task_budget_problem(len(known) + len(new | mine))
            if problem:
                job.future.set_exception(ValueError(problem))
                continue
        new |= mine
        admitted.append(job)
    return admitted
