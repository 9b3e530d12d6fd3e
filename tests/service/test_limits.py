"""Limits that keep one client from growing the daemon without bound: classes, and what a
client that goes away mid-body or names a class with a NUL leaves behind."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from edgecl import Learner, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.batch import Batch
from service.errors import ClassLimitError
from service.writer import LearnJob, Writer
from tests.service.conftest import make_settings, sample, stats_counts
from tests.service.daemon import Daemon, identity_env


def test_a_new_class_past_max_classes_is_a_422(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(max_classes=3))
    body = {"samples": [sample("a", 0), sample("b", 1), sample("c", 2)]}
    assert client.post("/learn", json=body).status_code == 200
    before = stats_counts(client)
    reply = client.post("/learn", json={"samples": [sample("a", 0), sample("d", 3)]})
    assert reply.status_code == 422
    assert reply.json()["detail"] == (
        "samples[1]: label 'd' would be a new class, but the model holds the most classes "
        "it may (3, max_classes)"
    )
    assert stats_counts(client) == before
    # Known classes are still learned.
    assert client.post("/learn", json={"samples": [sample("c", 2)]}).status_code == 200


def test_requests_of_one_micro_batch_share_the_last_class_slots() -> None:
    writer = Writer(Learner(IdentityBackbone(2), strategies.create("ncm")), max_classes=2)
    z = np.eye(2, dtype=np.float32)
    jobs = [
        LearnJob(Batch(z[:1], ["a"]), [None], "http"),
        LearnJob(Batch(z, ["b", "a"]), [None, None], "http"),
        LearnJob(Batch(z[1:], ["c"]), [None], "mqtt"),  # a third class: refused alone
        LearnJob(Batch(z[1:], ["b"]), [None], "mqtt"),
    ]
    writer.learn_batch(jobs)
    with pytest.raises(ClassLimitError, match=r"samples\[0\]: label 'c' would be a new class"):
        jobs[2].future.result()
    assert [jobs[i].future.result().accepted for i in (0, 1, 3)] == [1, 2, 1]
    assert writer.learner.labels.labels == ["a", "b"]


def test_metrics_escape_control_characters_in_class_labels(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(make_settings())
    assert client.post("/learn", json={"samples": [sample("a\x00b\x1b", 0)]}).status_code == 200
    text = client.get("/metrics").content
    assert b"\x00" not in text and b"\x1b" not in text
    assert b'edgecl_class_samples_learned_total{class="a\\\\x00b\\\\x1b"} 1.0' in text


@pytest.mark.slow
def test_a_client_that_goes_away_mid_body_leaves_one_log_line(tmp_path: Path) -> None:
    with Daemon(tmp_path / "data", identity_env(4)) as daemon:
        with socket.create_connection(("127.0.0.1", daemon.port)) as conn:
            conn.sendall(
                b"POST /learn HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"samples": ['
            )
            time.sleep(0.2)  # the route is reading the body
        deadline = time.monotonic() + 10
        while "went away" not in daemon.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{daemon.url}/health/live").status_code == 200
    log = daemon.log.read_text()
    assert "went away before sending its whole request to /learn" in log, log
    assert "Traceback" not in log and "ERROR" not in log, log
