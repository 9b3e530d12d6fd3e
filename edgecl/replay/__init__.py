"""Byte-bounded replay stores, registered by name like strategies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecl.protocols import ReplayStore

_REGISTRY: dict[str, Callable[..., ReplayStore]] = {}
_BUILTIN_LOADED = False


def register(name: str, factory: Callable[..., ReplayStore]) -> None:
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered store names.

    >>> {"class_balanced", "reservoir"} <= set(names())
    True
    """
    _load_builtin()
    return sorted(_REGISTRY)


def create(name: str, **options: Any) -> ReplayStore:
    """Build the store registered as ``name`` with ``options`` (``max_bytes`` at least)."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown replay store {name!r}; choose one of {names()}") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ValueError(f"bad options for store {name!r}: {exc}") from exc


def holds_inputs(store: ReplayStore | None) -> bool:
    """Whether ``store`` keeps raw inputs (to embed again on replay) rather than latents.

    >>> holds_inputs(create("reservoir", max_bytes=1000, encoding="lz4"))
    True
    >>> holds_inputs(create("reservoir", max_bytes=1000)) or holds_inputs(None)
    False
    """
    return getattr(store, "holds", "latents") == "inputs"


def _load_builtin() -> None:
    # A flag, not "is the registry empty": a store registered first must not hide these.
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    from edgecl.replay.class_balanced import ClassBalancedStore
    from edgecl.replay.exstream import ExStreamStore
    from edgecl.replay.latent import LatentReplayStore
    from edgecl.replay.pq import PQStore
    from edgecl.replay.reservoir import ReservoirStore

    _REGISTRY.setdefault("reservoir", ReservoirStore)
    _REGISTRY.setdefault("class_balanced", ClassBalancedStore)
    _REGISTRY.setdefault("exstream", ExStreamStore)
    _REGISTRY.setdefault("latent_replay", LatentReplayStore)
    _REGISTRY.setdefault("pq", PQStore)
