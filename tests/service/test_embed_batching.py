"""Concurrent requests share backbone runs, on the shipped int8 backbone, and answer exactly
what they answer alone; a bad image in a shared batch fails only its own request."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from edgecl.datasets import load_fixture
from service.app import create_app
from service.bootstrap import build_runtime
from service.embed_batching import EmbedBatcher
from tests.service.conftest import make_settings, png


def serve(tmp_path: Path, **overrides: Any) -> TestClient:
    settings = make_settings(
        backbone="onnx",
        backbone_dir=tmp_path / "backbone",
        backbone_threads=1,
        **overrides,
    )
    return TestClient(create_app(settings, build_runtime(settings, durable=False)))


def images(n: int) -> tuple[list[str], list[str]]:
    train, _ = load_fixture()
    pick = np.random.default_rng(0).choice(len(train.labels), n, replace=False)
    encoded = [base64.b64encode(png(train.images[i].tolist())).decode() for i in pick]
    return encoded, [f"c{train.labels[i]}" for i in pick]


def predict_all(client: TestClient, encoded: list[str], workers: int) -> list[dict[str, Any]]:
    def one(image: str) -> dict[str, Any]:
        response = client.post("/predict", json={"samples": [{"image": image}], "top_k": 3})
        assert response.status_code == 200, response.text
        out: dict[str, Any] = response.json()["predictions"][0]
        return out

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, encoded))


def test_batched_predictions_equal_lone_ones(tmp_path: Path) -> None:
    encoded, labels = images(48)
    teach = [{"image": im, "label": y} for im, y in zip(encoded[:32], labels[:32], strict=True)]
    answers = {}
    for batching in (False, True):
        with serve(tmp_path, embed_batching=batching, embed_wait_ms=20.0) as client:
            assert client.post("/learn", json={"samples": teach}).status_code == 200
            answers[batching] = predict_all(client, encoded[32:], workers=8 if batching else 1)
            batcher = client.app.state.runtime.embedder.batcher  # type: ignore[attr-defined]
            if batching:
                # Eight clients at once: some backbone runs held more than one request.
                assert batcher.batches < batcher.samples
    for alone, shared in zip(answers[False], answers[True], strict=True):
        assert shared["label"] == alone["label"]
        for a, b in zip(alone["top_k"], shared["top_k"], strict=True):
            assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-5


def test_a_bad_image_fails_alone_in_a_shared_batch(tmp_path: Path) -> None:
    encoded, labels = images(8)
    broken = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    with serve(tmp_path, embed_wait_ms=50.0) as client:
        teach = [{"image": im, "label": y} for im, y in zip(encoded, labels, strict=True)]
        assert client.post("/learn", json={"samples": teach}).status_code == 200

        def ask(image: str) -> int:
            body = {"samples": [{"image": image}]}
            code: int = client.post("/predict", json=body).status_code
            return code

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(ask, [encoded[0], broken, encoded[1], encoded[2]]))
    assert codes == [200, 422, 200, 200]


def test_the_batcher_isolates_an_input_the_backbone_refuses() -> None:
    def embed(x: np.ndarray) -> np.ndarray:
        if (x < 0).any():
            raise ValueError("negative pixels")
        return x.astype(np.float32)

    batcher = EmbedBatcher(embed, wait_ms=100.0)
    inputs = [np.full((2, 3), i) for i in (1, -1, 2, 3)]

    def run(x: np.ndarray) -> str:
        try:
            return str(batcher.embed(x)[0, 0])
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(run, inputs))
    batcher.close()
    assert outs == ["1.0", "negative pixels", "2.0", "3.0"]
    assert batcher.embed(np.ones((1, 3))).shape == (1, 3)  # closed: runs alone
