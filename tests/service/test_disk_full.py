"""A full or read-only data dir through the real daemon: /learn answers 507 with a clear
message and learns nothing, /predict keeps answering, learning resumes when space returns."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.daemon import ForkedDaemon, ForkServer, identity_env
from tests.tmpfs import small_tmpfs

DIM = 8
PROBE = {"samples": [{"features": [1.0] + [0.0] * (DIM - 1)}], "top_k": 2}


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer(identity_env(DIM)) as server:
        yield server


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, the daemon's data dir (its log stays outside, in ``tmp_path``)."""
    with small_tmpfs(tmp_path / "fs", "1m") as mount:
        yield mount


def remount(mount: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount)], check=True)


class Client:
    """Learns 4-sample requests with fresh ids and counts what was acknowledged."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=10.0)
        self.acked: Counter[str] = Counter()
        self.next = 0

    def request(self) -> dict[str, Any]:
        samples = []
        for k in range(4):
            n = self.next + k
            features = [float(i == n % 3) + 0.01 * n for i in range(DIM)]
            samples.append({"features": features, "label": f"c{n % 3}", "id": f"s-{n}"})
        self.next += 4
        return {"samples": samples}

    def learn(self, body: dict[str, Any] | None = None) -> httpx.Response:
        body = body if body is not None else self.request()
        reply = self.http.post("/learn", json=body)
        if reply.status_code == 200:
            assert reply.json()["duplicates"] == 0
            self.acked.update(s["label"] for s in body["samples"])
        return reply

    def counts(self) -> dict[str, int]:
        stats = self.http.get("/stats").json()
        return {label: c["samples"] for label, c in stats["classes"].items()}

    def predict(self) -> dict[str, Any]:
        reply = self.http.post("/predict", json=PROBE)
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result


@pytest.mark.slow
def test_disk_full_answers_507_then_resumes(small_fs: Path, forks: ForkServer) -> None:
    # Checkpoints are due often, so some fall on the full disk; a failed one is retried
    # after checkpoint_every_s, not after every failed request.
    env = identity_env(DIM, checkpoint_every_samples="40", checkpoint_every_s="600")
    with ForkedDaemon(forks, small_fs, env) as daemon:
        client = Client(daemon.url)
        for _ in range(5):
            assert client.learn().status_code == 200
        st = os.statvfs(small_fs)
        (small_fs / "ballast").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - (16 << 10)))

        for _ in range(300):
            body = client.request()
            reply = client.learn(body)
            if reply.status_code != 200:
                break
        assert reply.status_code == 507, reply.text
        detail = reply.json()["detail"]
        assert detail.startswith(
            "the samples could not be stored, nothing was learned: the data directory is full"
        )
        assert "(No space left on device)" in detail
        assert client.counts() == dict(client.acked)  # a 507 learned nothing
        for _ in range(3):
            assert client.learn().status_code == 507
        answer = client.predict()
        assert httpx.get(f"{daemon.url}/health/ready").status_code == 200

        (small_fs / "ballast").unlink()  # space returns
        assert client.learn(body).status_code == 200  # the refused request, resent
        for _ in range(3):
            assert client.learn().status_code == 200
        assert client.counts() == dict(client.acked)
        assert client.predict()["model_version"] > answer["model_version"]
        assert daemon.stop() == 0
    log = daemon.log.read_text()
    assert log.count("ERROR edgecl.runtime: the samples could not be stored") >= 4
    assert log.count("checkpoint failed") <= 1

    with ForkedDaemon(forks, small_fs, env) as daemon:
        assert Client(daemon.url).counts() == dict(client.acked)


@pytest.mark.slow
def test_read_only_data_dir_predicts_and_resumes_when_writable(
    small_fs: Path, forks: ForkServer
) -> None:
    env = identity_env(DIM)
    with ForkedDaemon(forks, small_fs, env) as daemon:
        client = Client(daemon.url)
        for _ in range(3):
            assert client.learn().status_code == 200
        daemon.kill()  # these are in the WAL only: a start on a read-only dir replays them
    remount(small_fs, "ro")
    try:
        with ForkedDaemon(forks, small_fs, env) as daemon:
            client.http = httpx.Client(base_url=daemon.url, timeout=10.0)
            assert client.counts() == dict(client.acked)
            answer = client.predict()
            body = client.request()
            reply = client.learn(body)
            assert reply.status_code == 507
            assert "the data directory is read-only" in reply.json()["detail"]
            assert client.predict() == answer
            remount(small_fs, "rw")
            assert client.learn(body).status_code == 200
            assert client.counts() == dict(client.acked)
            assert daemon.stop() == 0
    finally:
        remount(small_fs, "rw")
    with ForkedDaemon(forks, small_fs, env) as daemon:
        assert Client(daemon.url).counts() == dict(client.acked)
