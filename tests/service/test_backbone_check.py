"""The int8 backbone's start-up self-check, seen through /health/ready, /stats and the
dashboard's data, on the prebuilt backbone that ships in the package (no torch needed)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.bootstrap import build_runtime
from tests.service.conftest import make_settings


def serve(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = make_settings(
        backbone="onnx", backbone_dir=tmp_path / "backbone", backbone_threads=1, **overrides
    )
    return TestClient(create_app(settings, build_runtime(settings, durable=False)))


def test_the_shipped_backbone_passes_its_check_on_this_cpu(tmp_path: Path) -> None:
    with serve(tmp_path) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200
        check = ready.json()["backbone_check"]
        assert check["passed"] and check["session"] == "optimized" and check["reason"] is None
        assert check["images"] >= 5 and check["min_cosine"] >= check["threshold"] == 0.95
        assert client.get("/stats").json()["backbone_check"] == check
        assert client.get("/dashboard/data").json()["stats"]["backbone_check"] == check


def test_a_failed_check_switches_to_the_reference_session_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No int8 session reaches cosine 1.0: both fail, the daemon still serves and reports it.
    with caplog.at_level(logging.WARNING), serve(tmp_path, backbone_check_min_cosine=1.0) as c:
        check = c.get("/health/ready").json()["backbone_check"]
        assert check["session"] == "reference" and not check["passed"]
        assert check["threshold"] == 1.0 and "graph optimisations off" in check["reason"]
        assert check["optimized"]["min_cosine"] < 1.0
        assert c.get("/stats").json()["backbone_check"] == check
        image = {"file": ("x.png", tiny_png(), "image/png")}
        assert c.post("/learn", files=image, data={"label": "x"}).status_code == 200
        assert c.post("/predict", files=image).json()["predictions"][0]["label"] == "x"
    assert "graph optimisations off" in caplog.text


def test_an_unreachable_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="backbone_check_min_cosine"):
        make_settings(backbone_check_min_cosine=1.5)


def tiny_png() -> bytes:
    from tests.service.conftest import png

    return png([[0, 128], [255, 64]])
