"""Each strategy declares its paper's memory and default budget."""

from __future__ import annotations

import numpy as np
import pytest

from edgecl import replay, strategies
from edgecl.bench.recipes import RECIPES
from edgecl.strategies.ncm import NCM
from edgecl.strategies.stores import PaperStore


@pytest.mark.parametrize("name", strategies.names())
def test_every_strategy_declares_a_registered_store_or_none(name: str) -> None:
    declared = strategies.paper_store(name)
    assert declared.kind is None or declared.kind in replay.names()
    if strategies.create(name).replay_size > 0 or name == "gdumb":
        assert declared.kind is not None, f"{name} learns from memory but declares none"


def test_the_papers_stores() -> None:
    kinds = {n: strategies.paper_store(n).kind for n in ("exstream", "gdumb", "ar1", "cwr_star")}
    assert kinds == {
        "exstream": "exstream",
        "gdumb": "class_balanced",
        "ar1": "latent_replay",
        "cwr_star": None,
    }


def test_the_benchmark_recipes_use_the_declared_stores() -> None:
    for name, recipe in RECIPES.items():
        assert recipe.store == strategies.paper_store(name).kind, name


@pytest.mark.parametrize("kind", ["class_balanced", "exstream", "latent_replay"])
def test_the_budget_holds_the_declared_items(kind: str) -> None:
    declared = PaperStore(kind, items=40)
    store = replay.create(kind, max_bytes=declared.max_bytes("int8", (16,)), encoding="int8")
    rng = np.random.default_rng(0)
    for _ in range(10):
        store.add_many(rng.normal(size=(10, 16)).astype(np.float32), rng.integers(0, 2, size=10))
    assert len(store) == 40


def test_a_strategy_class_may_declare_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    class Mine(NCM):
        name = "mine_with_memory"
        paper_store = PaperStore("reservoir", items=10)

    strategies.names()  # the built-ins first, then one more only for this test
    monkeypatch.setitem(strategies.REGISTRY._classes, Mine.name, Mine)
    assert strategies.paper_store("mine_with_memory") == PaperStore("reservoir", items=10)
