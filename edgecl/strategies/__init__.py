"""Head strategies, registered by name: ``names()`` lists them, ``create(name)`` builds one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecl.protocols import Strategy

_REGISTRY: dict[str, Callable[..., Strategy]] = {}
_BUILTIN_LOADED = False


def register(name: str, factory: Callable[..., Strategy]) -> None:
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered strategy names.

    >>> {"slda", "ncm", "cwr_star", "latent_replay", "naive"} <= set(names())
    True
    """
    _load_builtin()
    return sorted(_REGISTRY)


def create(name: str, **options: Any) -> Strategy:
    """Build the strategy registered as ``name`` with ``options``.

    >>> create("slda", shrinkage=1e-3).options()["shrinkage"]
    0.001
    >>> create("slda", shrinkage=-1)
    Traceback (most recent call last):
    ...
    ValueError: shrinkage must be a finite number > 0, got -1
    """
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
    # A flag, not "is the registry empty": a strategy registered first must not hide these.
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    # Imported on first use so that importing edgecl stays light; these heads are NumPy
    # only, and a torch-based strategy must import torch only when built.
    from edgecl.strategies.ar1 import AR1
    from edgecl.strategies.cwr_star import CWRStar
    from edgecl.strategies.exstream import ExStream
    from edgecl.strategies.gdumb import GDumb
    from edgecl.strategies.latent_replay import LatentReplay
    from edgecl.strategies.naive import Naive
    from edgecl.strategies.ncm import NCM
    from edgecl.strategies.slda import StreamingLDA

    _REGISTRY.setdefault("slda", StreamingLDA)
    _REGISTRY.setdefault("ncm", NCM)
    _REGISTRY.setdefault("cwr_star", CWRStar)
    _REGISTRY.setdefault("latent_replay", LatentReplay)
    _REGISTRY.setdefault("naive", Naive)
    _REGISTRY.setdefault("exstream", ExStream)
    _REGISTRY.setdefault("gdumb", GDumb)
    _REGISTRY.setdefault("ar1", AR1)
