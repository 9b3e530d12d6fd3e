"""The issue's bounds, on the real daemon with the int8 backbone: while clients send image
bombs, images just under the decode budget and 8 MiB bodies of empty samples, its RSS stays
under 400 MB and /health/live answers within 1 s; honest requests keep being learned."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest

from benchmarks.hostile_load import attack, webp
from tests.service.daemon import Daemon, edgecl_env


@pytest.mark.slow
def test_rss_and_liveness_under_bombs_and_an_8_mib_body(
    tmp_path: Path, built_backbone: Path
) -> None:
    env = edgecl_env(backbone_dir=str(built_backbone), log_level="warning", probe_share="0")
    env["MALLOC_ARENA_MAX"] = "2"  # as deployed (systemd unit, image)
    with Daemon(tmp_path / "data", env) as daemon:
        first = {"samples": [{"image": base64.b64encode(webp(64)).decode(), "label": "g"}]}
        assert httpx.post(f"{daemon.url}/learn", json=first, timeout=60).status_code == 200
        figures = attack(daemon.url, daemon.process.pid, seconds=20.0)
        stats = httpx.get(f"{daemon.url}/stats", timeout=30).json()
    replies = figures["replies"]
    assert figures["peak_rss_mib"] < 400, figures
    assert figures["live_max_s"] < 1.0, figures
    assert set(replies) <= {
        "bomb /learn 422",
        "bomb /predict 422",
        "under-budget /learn 200",
        "8 MiB empty samples 413",
        "8 MiB msgpack lists 413",
        "honest /learn 200",
    }, replies
    assert replies["under-budget /learn 200"] > 0 and replies["honest /learn 200"] > 0, replies
    assert replies["8 MiB empty samples 413"] > 0 and replies["bomb /predict 422"] > 0, replies
    assert stats["classes"]["grey"]["samples"] == replies["honest /learn 200"]
    assert "Traceback" not in daemon.log.read_text()
