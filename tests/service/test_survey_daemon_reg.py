"""The survey's strategies in the real daemon: learned over HTTP with classes arriving over
time (so experiences end and consolidate), killed with -9 between checkpoints, restarted:
the same predictions to the last byte."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.service.daemon import ForkedDaemon, ForkServer, identity_env

DIM = 8
CLASSES = ["ant", "bee", "cat", "dog", "eel"]
PROBES = [[float(i == k) + 0.1 * j for i in range(DIM)] for k in range(5) for j in range(2)]
SURVEY = ["cumulative", "ensemble", "lwf", "ewc", "si", "progress_compress"]


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer(identity_env(DIM)) as server:
        yield server


def sample(n: int, label: str) -> dict[str, Any]:
    x = np.random.default_rng(n).normal(0.0, 0.3, DIM)
    x[CLASSES.index(label)] += 1.5
    return {"features": [float(v) for v in x], "label": label, "id": f"s-{n}"}


def learn(url: str) -> None:
    """Class-incremental, in order: two classes, then one new class every few requests
    (each request one micro-batch, so each new class is an experience boundary)."""
    n = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for stage in range(2, len(CLASSES) + 1):
            for _ in range(4):
                labels = [CLASSES[(stage - 2 + k) % stage] for k in range(5)]
                samples = []
                for y in labels:
                    samples.append(sample(n, y))
                    n += 1
                reply = http.post("/learn", json={"samples": samples})
                assert reply.status_code == 200, reply.text


def figures(url: str) -> dict[str, Any]:
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    keys = ("samples_learned", "model_version", "classes", "store", "prequential")
    body = {"samples": [{"features": p} for p in PROBES], "top_k": 5}
    reply = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return {**{k: stats[k] for k in keys}, "predictions": reply.json()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "options"),
    [(name, {}) for name in SURVEY] + [("ewc", {"hidden": [16], "mode": "online"})],
)
def test_learn_kill_9_restart_is_exact(
    tmp_path: Path, forks: ForkServer, name: str, options: dict[str, Any]
) -> None:
    env = identity_env(
        DIM,
        strategy__name=name,
        strategy__options=json.dumps({"lr": 0.1, **options}),
        store__kind="paper",
        checkpoint_every_samples="35",  # some of it in a checkpoint, the rest in the WAL
    )
    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        learn(daemon.url)
        before = figures(daemon.url)
        assert daemon.kill() == -9
    assert before["samples_learned"] == 80 and len(before["classes"]) == 5
    top = [p["label"] for p in before["predictions"]["predictions"]]
    assert len(set(top)) >= 3, top  # it learned something of several classes

    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        after = figures(daemon.url)
    assert after == before


@pytest.mark.slow
def test_cumulative_retrains_on_request_and_the_retrained_head_survives_kill_9(
    tmp_path: Path, forks: ForkServer
) -> None:
    env = identity_env(
        DIM,
        strategy__name="cumulative",
        strategy__options=json.dumps({"lr": 0.1}),
        store__kind="paper",
        checkpoint_every_samples="1000",  # only the retrain's own checkpoint
    )
    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        learn(daemon.url)
        learned = figures(daemon.url)
        reply = httpx.post(f"{daemon.url}/retrain", timeout=30)
        assert reply.status_code == 202, reply.text
        job = reply.json()["job"]
        for _ in range(1000):
            status = httpx.get(f"{daemon.url}/retrain/{job}", timeout=30).json()
            if status["state"] != "running":
                break
            time.sleep(0.01)
        assert status["state"] == "succeeded", status
        before = figures(daemon.url)
        assert before["model_version"] == learned["model_version"] + 1
        assert before["predictions"] != learned["predictions"]  # a head trained afresh
        assert daemon.kill() == -9

    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        after = figures(daemon.url)
    assert after == before
