"""`edgecl serve` as a real process: learn over HTTP, SIGTERM drains and checkpoints, restart
restores."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.mosquitto import Mosquitto, available
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


def test_port_taken_is_one_sentence_and_no_ready_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "service", "serve", "--port", str(port),
             "--data-dir", str(tmp_path / "data")],
            env=identity_env(4, log_level="info"), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 3
    # The whole output, at log level info: no "ready: ncm", no "Application startup complete".
    assert out.stdout + out.stderr == (
        f"edgecl: error: port {port} on 127.0.0.1 is already in use; choose another with "
        "--port or EDGECL_PORT\n"
    )
    assert not (tmp_path / "data").exists()  # nothing was started


def test_free_port_is_usable() -> None:
    assert 0 < free_port() < 65536


def test_strategy_flag_beats_the_environment(tmp_path: Path) -> None:
    # identity_env names ncm in EDGECL_STRATEGY__NAME; the flags win.
    flags = ["--strategy", "slda", "--strategy-option", "shrinkage=0.001"]
    with Daemon(tmp_path / "data", env(), extra=flags) as daemon:
        shown = httpx.get(f"{daemon.url}/dashboard/data").json()["settings"]
    assert shown["strategy"] == "slda"
    assert shown["strategy_options"]["shrinkage"] == 0.001


def test_plain_strategy_in_the_environment(tmp_path: Path) -> None:
    plain = {**env(), "EDGECL_STRATEGY": "slda"}
    del plain["EDGECL_STRATEGY__NAME"]
    with Daemon(tmp_path / "data", plain) as daemon:
        assert httpx.get(f"{daemon.url}/dashboard/data").json()["settings"]["strategy"] == "slda"


def test_unknown_strategy_flag_lists_the_choices() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--strategy", "nmc"],
        env=env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert "invalid choice: 'nmc'" in out.stderr and "ncm" in out.stderr


@pytest.mark.skipif(not available(), reason="mosquitto is not installed")
def test_mqtt_start_up_log_names_the_topic_root_and_subscriptions(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        mqtt = {"mqtt_host": "127.0.0.1", "mqtt_port": str(broker.port), "mqtt_device_id": "pi-7"}
        with Daemon(tmp_path / "data", identity_env(4, **mqtt)) as daemon:
            log = daemon.log.read_text()  # written before the daemon is ready
    assert "topic root edgecl/pi-7/" in log
    assert "subscribing to edgecl/pi-7/learn, edgecl/pi-7/predict/request" in log
