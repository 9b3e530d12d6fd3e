"""Head strategies, registered by name: ``names()`` lists them, ``create(name)`` builds one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edgecl.protocols import Strategy
from edgecl.registry import Registry
from edgecl.strategies.stores import NONE, PAPER_STORES, PaperStore


def _builtin() -> list[Callable[..., Strategy]]:
    # Imported on first use so that importing edgecl stays light; these heads are NumPy
    # only, and a torch-based strategy imports torch only when built.
    from edgecl.strategies.agem import AGEM
    from edgecl.strategies.ar1 import AR1
    from edgecl.strategies.cumulative import Cumulative
    from edgecl.strategies.cwr_star import CWRStar
    from edgecl.strategies.ensemble import Ensemble
    from edgecl.strategies.ewc import EWC
    from edgecl.strategies.exstream import ExStream
    from edgecl.strategies.gdumb import GDumb
    from edgecl.strategies.gem import GEM
    from edgecl.strategies.generative_negative_replay import GenerativeNegativeReplay
    from edgecl.strategies.generative_replay import GenerativeReplay
    from edgecl.strategies.hat import HAT
    from edgecl.strategies.hypernetwork import Hypernetwork
    from edgecl.strategies.icarl import ICaRL
    from edgecl.strategies.latent_replay import LatentReplay
    from edgecl.strategies.lwf import LwF
    from edgecl.strategies.mir import MIR
    from edgecl.strategies.multi_head import MultiHead
    from edgecl.strategies.naive import Naive
    from edgecl.strategies.ncm import NCM
    from edgecl.strategies.packnet import PackNet
    from edgecl.strategies.piggyback import Piggyback
    from edgecl.strategies.pnn import PNN
    from edgecl.strategies.progress_compress import ProgressCompress
    from edgecl.strategies.si import SI
    from edgecl.strategies.slda import StreamingLDA
    from edgecl.strategies.supsup import SupSup

    base: list[Callable[..., Strategy]] = [
        StreamingLDA, NCM, CWRStar, LatentReplay, Naive, ExStream, GDumb, AR1,
    ]  # fmt: skip
    baselines: list[Callable[..., Strategy]] = [Cumulative, Ensemble]
    regularisers: list[Callable[..., Strategy]] = [LwF, EWC, SI, ProgressCompress]
    replay_selection: list[Callable[..., Strategy]] = [MIR, AGEM, GEM]
    generative: list[Callable[..., Strategy]] = [GenerativeReplay, GenerativeNegativeReplay]
    task_columns: list[Callable[..., Strategy]] = [PNN, Piggyback, PackNet, Hypernetwork]
    task_aware: list[Callable[..., Strategy]] = [MultiHead, HAT, SupSup]
    groups = base + baselines + regularisers + replay_selection + generative + [ICaRL]
    return groups + task_aware + task_columns


REGISTRY: Registry[Strategy] = Registry("strategy", _builtin)


def register(factory: Callable[..., Strategy], name: str | None = None) -> None:
    """Add a strategy class (under its ``name`` attribute unless ``name`` is given)."""
    REGISTRY.register(factory, name)


def names() -> list[str]:
    """Registered strategy names.

    >>> {"slda", "ncm", "cwr_star", "latent_replay", "naive"} <= set(names())
    True
    """
    return REGISTRY.names()


def create(name: str, **options: Any) -> Strategy:
    """Build the strategy registered as ``name`` with ``options``.

    >>> create("slda", shrinkage=1e-3).options()["shrinkage"]
    0.001
    >>> create("slda", shrinkage=-1)
    Traceback (most recent call last):
    ...
    ValueError: shrinkage must be a finite number > 0, got -1
    """
    return REGISTRY.create(name, **options)


def paper_store(name: str) -> PaperStore:
    """The memory the paper of strategy ``name`` uses: its class's ``paper_store`` if it
    declares one, else the built-in table (a strategy unknown to both keeps none).

    >>> paper_store("gdumb").kind, paper_store("exstream").kind, paper_store("slda").kind
    ('class_balanced', 'exstream', None)
    """
    declared = getattr(REGISTRY.get(name), "paper_store", None)
    if isinstance(declared, PaperStore):
        return declared
    return PAPER_STORES.get(name, NONE)
