"""/stats shows the bytes a strategy keeps as its own memory, beside the store's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import make_settings, sample


@pytest.mark.parametrize(
    ("name", "keeps"), [("generative_replay", True), ("icarl", True), ("ncm", False)]
)
def test_stats_report_the_memory_a_strategy_keeps_itself(
    client_for: Callable[..., TestClient], name: str, keeps: bool
) -> None:
    client = client_for(make_settings(strategy={"name": name}, store={"kind": None}))
    body = {"samples": [sample("a", 0), sample("b", 1), sample("a", 0, 2), sample("b", 1, 3)]}
    assert client.post("/learn", json=body).status_code == 200
    store = client.get("/stats").json()["store"]
    assert store["bytes"] == 0  # no store: what the strategy holds is reported apart
    if keeps:
        assert store["strategy_bytes"] > 0
    else:
        assert store["strategy_bytes"] is None
