"""Head strategies, registered by name: ``names()`` lists them, ``create(name)`` builds one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecl.protocols import Strategy

_REGISTRY: dict[str, Callable[..., Strategy]] = {}


def register(name: str, factory: Callable[..., Strategy]) -> None:
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered strategy names.

    >>> "ncm" in names()
    True
    """
    _load_builtin()
    return sorted(_REGISTRY)


def create(name: str, **options: Any) -> Strategy:
    """Build the strategy registered as ``name`` with ``options``."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {names()}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for strategy {name!r}: {exc}") from exc


def _load_builtin() -> None:
    if _REGISTRY:
        return
    # Imported here so that listing names does not need torch; torch-based strategies
    # import torch only when built.
    from edgecl.strategies.ncm import NCM

    register("ncm", NCM)
