"""The replay-selection, generative and hybrid strategies in the real daemon: chosen by
``EDGECL_STRATEGY__NAME`` with their paper's store, they learn and predict over HTTP,
checkpoint, and come back exactly after kill -9 (checkpoint plus WAL replay)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.daemon import ForkedDaemon, ForkServer, identity_env

DIM = 8
CLASSES = ["ant", "bee", "cat", "dog", "eel"]
NAMES = ["mir", "agem", "gem", "icarl", "generative_replay", "generative_negative_replay"]
PROBES = [[float(i == k) + 0.1 * j for i in range(DIM)] for k in range(5) for j in range(2)]


def env_for(name: str) -> dict[str, str]:
    # lr 0.1: the defaults are tuned for 1280-d latents, these are 8-d and few.
    return identity_env(
        DIM,
        strategy__name=name,
        strategy__options='{"lr": 0.1}',
        store__kind="paper",
        checkpoint_every_samples="50",
    )


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer(env_for("mir")) as server:
        yield server


def request(r: int, labels: list[str]) -> dict[str, Any]:
    rng = np.random.default_rng(r)
    samples = []
    for k, label in enumerate(labels):
        x = rng.normal(0.0, 0.3, DIM)
        x[CLASSES.index(label)] += 1.0
        samples.append({"features": x.tolist(), "label": label, "id": f"s-{r}-{k}"})
    return {"samples": samples}


def learn(url: str) -> None:
    """Sequential requests of 4, class-incremental: two classes, then one more at a time
    (so the strategies that need experiences see several)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        for r in range(40):
            seen = CLASSES[: 2 + r // 10]
            labels = [seen[(r + k) % len(seen)] for k in range(4)]
            reply = http.post("/learn", json=request(r, labels))
            assert reply.status_code == 200, reply.text


def figures(url: str) -> dict[str, Any]:
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    body = {"samples": [{"features": p} for p in PROBES], "top_k": 5}
    reply = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    keys = ("samples_learned", "model_version", "classes", "store", "prequential", "strategy")
    return {**{k: stats.get(k) for k in keys}, "predictions": reply.json()}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_learns_predicts_and_restores_exactly_after_kill_9(
    tmp_path: Path, forks: ForkServer, name: str
) -> None:
    env, data = env_for(name), tmp_path / "data"
    with ForkedDaemon(forks, data, env) as daemon:
        learn(daemon.url)
        before = figures(daemon.url)
        assert daemon.kill() == -9
    top = [p["label"] for p in before["predictions"]["predictions"]]
    assert sum(t == CLASSES[k // 2] for k, t in enumerate(top)) >= 8, top  # it learned

    with ForkedDaemon(forks, data, env) as daemon:
        after = figures(daemon.url)
        text = daemon.log.read_text()
    assert after == before  # the same scores to the last bit, the same counters
    assert re.search(r"restored checkpoint at WAL seq [1-9]", text), text
    assert re.search(r"replayed [1-9]\d* samples from the WAL", text), text
