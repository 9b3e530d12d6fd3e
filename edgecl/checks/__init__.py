"""Conformance checks every strategy and store must pass (as ``river.checks``).

Each check takes the class (any factory called with options) and raises
``AssertionError`` with a sentence when the promise does not hold; shipped with the
library so a strategy or store written elsewhere can be checked the same way::

    for check in checks.strategy_checks():
        check(MyStrategy)

The test suite runs every check over every registered strategy and store.
"""

from __future__ import annotations

from collections.abc import Callable

from edgecl.checks.store import store_checks
from edgecl.checks.strategy import Factory
from edgecl.checks.strategy import strategy_checks as plain_checks
from edgecl.checks.tasks import task_checks

__all__ = ["store_checks", "strategy_checks", "task_checks"]


def strategy_checks() -> list[Callable[[Factory], None]]:
    """Every strategy check: the plain ones, then the task-aware ones (which pass at once
    for a strategy that ignores tasks)."""
    return plain_checks() + task_checks()
