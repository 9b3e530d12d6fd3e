"""`edgecl serve` as a real process: learn over HTTP, SIGTERM drains and checkpoints, restart
restores."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.net import free_port
from tests.service.conftest import sample
from tests.service.daemon import Daemon, identity_env


def env() -> dict[str, str]:
    return identity_env(4, log_level="warning")


@pytest.mark.slow
def test_sigterm_drains_checkpoints_and_restart_restores(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Daemon(data, env()) as daemon:
        body = {"samples": [sample("a", 0, sid="k1"), sample("b", 1)]}
        assert httpx.post(f"{daemon.url}/learn", json=body).json()["accepted"] == 2
        assert httpx.get(f"{daemon.url}/stats").json()["bytes_written_per_sample"] > 0
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(10) == 0
        assert time.monotonic() - started < 10
    assert list((data / "checkpoints").glob("checkpoint-*.ckpt"))

    with Daemon(data, env()) as daemon:
        stats = httpx.get(f"{daemon.url}/stats").json()
        assert stats["samples_learned"] == 2 and set(stats["classes"]) == {"a", "b"}
        again = httpx.post(f"{daemon.url}/learn", json={"samples": [sample("a", 0, sid="k1")]})
        assert again.json()["duplicates"] == 1


@pytest.mark.slow
def test_port_taken_fails_with_nonzero_exit(tmp_path: Path) -> None:
    with Daemon(tmp_path / "one", env()) as daemon:
        port = daemon.port
        out = subprocess.run(
            [sys.executable, "-m", "service", "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "two")],
            env=env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode != 0


def test_free_port_is_usable() -> None:
    assert 0 < free_port() < 65536
