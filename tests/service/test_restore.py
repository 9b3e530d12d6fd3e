"""Restores through the real daemon: a checkpoint of any size comes back exactly, and a
checkpoint that cannot be read while the WAL no longer holds what it held stops the start
with one sentence, the file left in place."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest

from tests.service.daemon import ForkedDaemon, ForkServer, identity_env

DIM = 8


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer(identity_env(DIM)) as server:
        yield server


def figures(url: str, probes: list[list[float]]) -> dict[str, Any]:
    """What learning changes, and the exact scores of fixed inputs."""
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    keys = ("samples_learned", "model_version", "classes", "store", "prequential")
    body = {"samples": [{"features": p} for p in probes], "top_k": 3}
    reply = httpx.post(f"{url}/predict", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return {**{k: stats[k] for k in keys}, "predictions": reply.json()}


def packed(rows: np.ndarray[Any, Any]) -> list[dict[str, Any]]:
    return [
        {"features": {"dtype": "float32", "shape": [len(r)], "data": r.astype("<f4").tobytes()}}
        for r in rows
    ]


@pytest.mark.slow
def test_restart_after_a_checkpoint_over_100_mib_is_exact(tmp_path: Path) -> None:
    # A float32 store of 8192-d latents: 3,400 samples make one array over 100 MiB, past
    # msgpack's default buffer limit that used to make such a checkpoint unreadable.
    dim, per_request, requests = 8192, 200, 17
    env = identity_env(
        dim,
        store__encoding="float32",
        store__max_bytes=str(160 << 20),
        max_samples_per_request=str(per_request),
        checkpoint_every_samples=str(per_request * 10),
        checkpoint_on_stop="true",
    )
    rng = np.random.default_rng(0)
    probes = rng.normal(size=(4, dim)).astype(np.float32).tolist()
    data = tmp_path / "data"
    with ForkServer(env) as server:
        with ForkedDaemon(server, data, env, ready_timeout=120) as daemon:
            with httpx.Client(base_url=daemon.url, timeout=120) as http:
                for r in range(requests):
                    samples = packed(rng.normal(size=(per_request, dim)))
                    for k, s in enumerate(samples):
                        s.update(label=f"c{(r + k) % 7}", id=f"s-{r}-{k}")
                    reply = http.post(
                        "/learn",
                        content=msgpack.packb({"samples": samples}),
                        headers={"content-type": "application/msgpack"},
                    )
                    assert reply.status_code == 200, reply.text
            before = figures(daemon.url, probes)
            assert daemon.stop() == 0  # drains and checkpoints
        (newest,) = sorted((data / "checkpoints").glob("*.ckpt"))[-1:]
        assert newest.stat().st_size > 100 << 20
        assert before["store"]["bytes"] > 100 << 20

        with ForkedDaemon(server, data, env, ready_timeout=120) as daemon:
            assert figures(daemon.url, probes) == before
        log = daemon.log.read_text()
    assert f"restored checkpoint at WAL seq {requests}" in log
    assert "skipping" not in log and "Traceback" not in log


def learn(url: str, requests: int, first: int = 0) -> None:
    with httpx.Client(base_url=url, timeout=10.0) as http:
        for r in range(first, first + requests):
            samples = [
                {"features": [float(k == r % DIM) for k in range(DIM)], "label": f"c{r % 3}"}
            ]
            assert http.post("/learn", json={"samples": samples}).status_code == 200


@pytest.mark.slow
def test_an_unreadable_checkpoint_the_wal_no_longer_covers_stops_the_start(
    tmp_path: Path, forks: ForkServer
) -> None:
    # One generation, small segments: the WAL before the checkpoint is compacted away.
    env = identity_env(
        DIM, checkpoint_keep="1", checkpoint_every_samples="20", wal_segment_bytes="4096"
    )
    data = tmp_path / "data"
    probes = [[float(k == j) for k in range(DIM)] for j in range(3)]
    with ForkedDaemon(forks, data, env) as daemon:
        learn(daemon.url, 70)
        before = figures(daemon.url, probes)
        assert daemon.stop() == 0
    (checkpoint,) = (data / "checkpoints").glob("*.ckpt")
    first_segment = min((data / "wal").glob("wal-*.log"))
    assert int(first_segment.name[4:16]) > 1  # compacted
    good = checkpoint.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0x01
    checkpoint.write_bytes(bytes(damaged))

    for _ in range(2):  # a supervisor restarting it gets the same answer
        daemon = ForkedDaemon(forks, data, env).start()
        assert daemon.wait() == 2
        log = daemon.log.read_text()
        assert re.search(rf"edgecl: error: checkpoint {checkpoint} cannot be read \(", log)
        assert "refusing to start rather than lose acknowledged samples" in log
        assert "Traceback" not in log
        assert checkpoint.read_bytes() == bytes(damaged)  # left in place, untouched

    # Restored from a backup, the daemon starts with everything it had.
    checkpoint.write_bytes(good)
    with ForkedDaemon(forks, data, env) as daemon:
        assert figures(daemon.url, probes) == before
    shutil.rmtree(data)
