"""Every conformance check of :mod:`edgecl.checks` over every registered strategy and store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from edgecl import checks, replay, strategies


def cases(names: list[str], all_checks: list[Callable[..., None]]) -> list[Any]:
    return [
        pytest.param(name, check, id=f"{name}-{check.__name__.removeprefix('check_')}")
        for name in names
        for check in all_checks
    ]


def buildable(factory: Callable[..., Any]) -> Callable[..., Any]:
    """The factory, or a skip when what it needs is not installed (torch for ``ar1``)."""
    try:
        factory()
    except ModuleNotFoundError as exc:
        pytest.skip(f"needs {exc.name}, which is not installed")
    except TypeError:
        pass  # a store needs max_bytes: its checks always give it
    return factory


@pytest.mark.parametrize(("name", "check"), cases(strategies.names(), checks.strategy_checks()))
def test_strategy(name: str, check: Callable[..., None]) -> None:
    check(buildable(strategies.REGISTRY.get(name)))


@pytest.mark.parametrize(("name", "check"), cases(replay.names(), checks.store_checks()))
def test_store(name: str, check: Callable[..., None]) -> None:
    check(buildable(replay.REGISTRY.get(name)))


def test_the_builtin_strategies_and_stores_are_registered() -> None:
    assert {"slda", "ncm", "cwr_star", "latent_replay", "naive"} <= set(strategies.names())
    assert {"reservoir", "class_balanced"} <= set(replay.names())


def test_unknown_options_are_refused_by_name() -> None:
    for name in strategies.names():
        with pytest.raises(ValueError, match="bad options"):
            strategies.create(name, no_such_option=1)
    with pytest.raises(ValueError, match="bad options"):
        replay.create("reservoir", max_bytes=100, no_such_option=1)
