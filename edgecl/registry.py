"""Name → class tables for strategies and stores, and options read off constructors."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def constructor_options(obj: object) -> dict[str, Any]:
    """The arguments ``obj`` was built with: each parameter of its class's constructor,
    read back from the attribute of the same name (as river's ``_get_params``), or from
    the head's SGD value ``obj.sgd`` (:class:`~edgecl.strategies.linear.SGD`), so a class
    never writes ``options()`` by hand and ``create(name, **options)`` rebuilds it.

    >>> class Head:
    ...     def __init__(self, lr: float = 0.1, seed: int = 0) -> None:
    ...         self.lr, self.seed = lr, seed
    >>> constructor_options(Head(lr=0.5))
    {'lr': 0.5, 'seed': 0}
    """
    params = inspect.signature(type(obj).__init__).parameters.values()
    wanted = [
        p.name
        for p in params
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    sources = [obj, getattr(obj, "sgd", None)]
    found = {}
    for name in wanted:
        holder = next((s for s in sources if s is not None and hasattr(s, name)), None)
        if holder is None:
            raise TypeError(f"{type(obj).__name__} keeps no attribute for {name!r}")
        found[name] = getattr(holder, name)
    return found


class Configurable:
    """``options()`` derived from the constructor (see :func:`constructor_options`)."""

    def options(self) -> dict[str, Any]:
        return constructor_options(self)


class Registry(Generic[T]):
    """Classes by their ``name``; ``create`` builds one from plain options.

    ``builtin`` imports and returns the shipped classes on first use, so that importing
    edgecl stays light (torch-based strategies import torch only when built); a class
    registered before that does not hide them.

    >>> class Mine:
    ...     name = "mine"
    ...     def __init__(self, size: int = 1) -> None:
    ...         self.size = size
    >>> table: Registry[Mine] = Registry("widget", lambda: [])
    >>> table.register(Mine)
    >>> table.names(), table.create("mine", size=2).size
    (['mine'], 2)
    >>> table.create("yours")
    Traceback (most recent call last):
    ...
    ValueError: unknown widget 'yours'; choose one of ['mine']
    """

    def __init__(self, kind: str, builtin: Callable[[], list[Callable[..., T]]]) -> None:
        self.kind = kind
        self._builtin: Callable[[], list[Callable[..., T]]] | None = builtin
        self._classes: dict[str, Callable[..., T]] = {}

    def register(self, cls: Callable[..., T], name: str | None = None) -> None:
        """Add ``cls`` under ``name`` (default: its ``name`` attribute)."""
        self._classes[name or str(getattr(cls, "name"))] = cls  # noqa: B009

    def _load(self) -> None:
        if self._builtin is not None:
            builtin, self._builtin = self._builtin, None
            for cls in builtin():
                self._classes.setdefault(str(getattr(cls, "name")), cls)  # noqa: B009

    def names(self) -> list[str]:
        self._load()
        return sorted(self._classes)

    def get(self, name: str) -> Callable[..., T]:
        self._load()
        try:
            return self._classes[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} {name!r}; choose one of {self.names()}"
            ) from None

    def create(self, name: str, **options: Any) -> T:
        """Build ``name`` with ``options``; a bad option is a ``ValueError``."""
        cls = self.get(name)
        try:
            return cls(**options)
        except TypeError as exc:
            raise ValueError(f"bad options for {self.kind} {name!r}: {exc}") from exc
