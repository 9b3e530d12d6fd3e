"""Service fixtures: an in-memory app on the identity backbone, driven by TestClient."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from edgecl import Learner, strategies
from edgecl.backbones import IdentityBackbone
from edgecl.strategies.ncm import NCM
from edgecl.types import FloatArray, IntArray, State
from service.app import create_app
from service.bootstrap import build_runtime
from service.runtime import LearnerRuntime
from service.settings import QueueSettings, Settings

DIM = 4


def make_settings(**overrides: Any) -> Settings:
    """Test settings: identity backbone on 4-d features, ncm, a small reservoir store."""
    base: dict[str, Any] = {
        "backbone": "identity",
        "latent_dim": DIM,
        "strategy": {"name": "ncm"},
        "store": {"kind": "reservoir", "max_bytes": 64 << 10},
        "max_wait_ms": 1.0,
        "probe_share": 0.0,  # exact learned-sample counts; tests/service/test_metrics.py probes
    }
    return Settings(**{**base, **overrides})


def png(pixels: list[list[int]]) -> bytes:
    """A grayscale PNG; on the identity backbone its pixels/255 are the features."""
    buf = io.BytesIO()
    Image.fromarray(np.array(pixels, dtype=np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def sample(label: str | int, *hot: int, sid: str | None = None) -> dict[str, Any]:
    """A feature sample near the unit vector(s) ``hot``."""
    features = [0.0] * DIM
    for i in hot:
        features[i] = 1.0
    out: dict[str, Any] = {"features": features, "label": label}
    if sid is not None:
        out["id"] = sid
    return out


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def client_for() -> Iterator[Callable[..., TestClient]]:
    """Build a started client from settings (and optionally a runtime); stopped at the end."""
    clients: list[TestClient] = []

    def build(settings: Settings, runtime: LearnerRuntime | None = None) -> TestClient:
        rt = runtime if runtime is not None else build_runtime(settings, durable=False)
        client = TestClient(create_app(settings, rt))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_for: Callable[..., TestClient], settings: Settings) -> TestClient:
    return client_for(settings)


def stats_counts(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The /stats figures that any learning would change."""
    s = client.get("/stats", headers=headers).json()
    return {
        "samples_learned": s["samples_learned"],
        "model_version": s["model_version"],
        "classes": s["classes"],
        "store": s["store"],
        "prequential": s["prequential"],
    }


class RetrainableNCM(NCM):
    """NCM with a retrain capability: recomputes the means from memory, step by step.

    ``gate`` (when given) must be set before each step runs, so tests control progress.
    """

    name = "retrainable_ncm"

    def __init__(self, temperature: float = 1.0, gate: threading.Event | None = None) -> None:
        super().__init__(temperature)
        self.gate = gate

    def options(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def retrain(self, z: FloatArray, y: IntArray, on_progress: Callable[[float], bool]) -> State:
        fresh = NCM(self.temperature)
        fresh.add_classes(int(y.max()) + 1)
        classes = np.unique(y)
        for step, c in enumerate(classes):
            if self.gate is not None:
                self.gate.wait(10.0)
            fresh.learn_many(z[y == c], y[y == c])
            if not on_progress((step + 1) / len(classes)):
                break
        return fresh.state_dict()


def retrainable_runtime(gate: threading.Event | None = None) -> LearnerRuntime:
    from edgecl import replay

    learner = Learner(
        IdentityBackbone(DIM),
        RetrainableNCM(gate=gate),
        replay.create("reservoir", max_bytes=64 << 10),
    )
    return LearnerRuntime(learner, queue=QueueSettings(max_wait_ms=1.0))


def ncm_runtime(**kwargs: Any) -> LearnerRuntime:
    return LearnerRuntime(Learner(IdentityBackbone(DIM), strategies.create("ncm")), **kwargs)


@pytest.fixture(scope="session")
def built_backbone(backbone_manifest: Path) -> Path:
    """A folder of backbone builds holding the real int8 EfficientNet-Lite0 (the session's
    build, shared: do not change it)."""
    return backbone_manifest.parent.parent
