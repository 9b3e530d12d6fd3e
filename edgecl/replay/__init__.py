"""Byte-bounded replay stores, registered by name like strategies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecl.protocols import ReplayStore
from edgecl.registry import Registry


def _builtin() -> list[Callable[..., ReplayStore]]:
    from edgecl.replay.class_balanced import ClassBalancedStore
    from edgecl.replay.exstream import ExStreamStore
    from edgecl.replay.latent import LatentReplayStore
    from edgecl.replay.pq import PQStore
    from edgecl.replay.reservoir import ReservoirStore

    return [ReservoirStore, ClassBalancedStore, ExStreamStore, LatentReplayStore, PQStore]


REGISTRY: Registry[ReplayStore] = Registry("replay store", _builtin)


def register(factory: Callable[..., ReplayStore], name: str | None = None) -> None:
    """Add a store class (under its ``name`` attribute unless ``name`` is given)."""
    REGISTRY.register(factory, name)


def names() -> list[str]:
    """Registered store names.

    >>> {"class_balanced", "reservoir"} <= set(names())
    True
    """
    return REGISTRY.names()


def create(name: str, **options: Any) -> ReplayStore:
    """Build the store registered as ``name`` with ``options`` (``max_bytes`` at least)."""
    return REGISTRY.create(name, **options)


def holds_inputs(store: ReplayStore | None) -> bool:
    """Whether ``store`` keeps raw inputs (to embed again on replay) rather than latents.

    >>> holds_inputs(create("reservoir", max_bytes=1000, encoding="lz4"))
    True
    >>> holds_inputs(create("reservoir", max_bytes=1000)) or holds_inputs(None)
    False
    """
    return getattr(store, "holds", "latents") == "inputs"
