"""Concurrent requests share backbone runs, on the shipped int8 backbone, and answer exactly
what they answer alone; a bad image in a shared batch fails only its own request;
predictions run ahead of learning, and learning under predictions is still acknowledged
and durable."""

from __future__ import annotations

import base64
import os
import threading
import time
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


def serve(tmp_path: Path, durable: bool = False, **overrides: Any) -> TestClient:
    settings = make_settings(
        backbone="onnx",
        backbone_dir=tmp_path / "backbone",
        data_dir=tmp_path / "data",
        backbone_threads=1,
        **overrides,
    )
    return TestClient(create_app(settings, build_runtime(settings, durable=durable)))


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
    answers: dict[object, list[dict[str, Any]]] = {}
    for batching in (False, True):
        with serve(tmp_path, embed_batching=batching, embed_lanes=1) as client:
            assert client.post("/learn", json={"samples": teach}).status_code == 200
            answers[batching] = predict_all(client, encoded[32:], workers=8 if batching else 1)
            batcher = client.app.state.runtime.embedder.batcher  # type: ignore[attr-defined]
            if batching:
                # Eight clients at once on one lane: some runs held more than one request.
                assert batcher.batches < batcher.samples
                # A lone prediction is answered too, as it is without batching.
                answers["lone"] = predict_all(client, encoded[32:33], workers=1)
    assert_same(answers[False], answers[True])
    assert_same(answers[False][:1], answers["lone"])


def assert_same(alone: list[dict[str, Any]], shared: list[dict[str, Any]]) -> None:
    for a_, s_ in zip(alone, shared, strict=True):
        assert s_["label"] == a_["label"]
        for a, b in zip(a_["top_k"], s_["top_k"], strict=True):
            assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-5


def test_a_bad_image_fails_alone_in_a_shared_batch(tmp_path: Path) -> None:
    encoded, labels = images(8)
    broken = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    with serve(tmp_path, embed_lanes=1) as client:
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

    batcher = EmbedBatcher(embed)
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


def test_lone_inputs_run_in_their_callers_thread_and_runs_never_outnumber_lanes() -> None:
    lock, active, most, where = threading.Lock(), [0], [0], []

    def embed(x: np.ndarray) -> np.ndarray:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            where.append(threading.current_thread().name)
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return x.astype(np.float32) * 2

    batcher = EmbedBatcher(embed, lanes=2)
    assert batcher.embed(np.full((1, 2), 5)).tolist() == [[10.0, 10.0]]
    assert where == [threading.current_thread().name]  # idle lanes: run here, no hand-off
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(batcher.embed, [np.full((1, 2), i) for i in range(32)]))
    batcher.close()
    assert [o[0, 0] for o in outs] == [2.0 * i for i in range(32)]
    assert most[0] <= 2 and batcher.samples == 33


def test_predictions_run_ahead_of_queued_learning() -> None:
    """While the lane is busy, a learn input and then two predictions queue: the lane runs
    the predictions next (as one batch), then the learning, in chunks while predictions
    keep coming."""
    started, release, runs = threading.Event(), threading.Event(), []

    def embed(x: np.ndarray) -> np.ndarray:
        runs.append(sorted({int(v) for v in x[:, 0]}))
        if len(runs) == 1:
            started.set()
            release.wait(10)
        return x.astype(np.float32)

    batcher = EmbedBatcher(embed, lanes=1, learn_chunk=2, learn_lag_ms=10_000, quiet_s=600)
    with ThreadPoolExecutor(4) as pool:
        busy = pool.submit(batcher.embed, np.full((1, 2), 9))
        started.wait(10)
        learn = pool.submit(batcher.embed, np.full((3, 2), 1), False)
        while not batcher.waiting():
            pass
        predictions = [pool.submit(batcher.embed, np.full((1, 2), v)) for v in (2, 3)]
        while batcher.waiting() < 3:
            pass
        release.set()
        outs = [f.result(10) for f in (busy, learn, *predictions)]
    batcher.close()
    assert runs == [[9], [2, 3], [1], [1]]  # the 3 learn rows as chunks of 2 and 1
    assert [o.shape for o in outs] == [(1, 2), (3, 2), (1, 2), (1, 2)]
    assert outs[1][:, 0].tolist() == [1.0, 1.0, 1.0]


def blocking_embed() -> tuple[Any, list[float], threading.Event, threading.Event]:
    """An embed that records each run's first value and holds the first learn run (value
    1) until released."""
    runs: list[float] = []
    started, release = threading.Event(), threading.Event()

    def embed(x: np.ndarray) -> np.ndarray:
        runs.append(float(x[0, 0]))
        if x[0, 0] == 1 and not started.is_set():
            started.set()
            release.wait(10)
        return x.astype(np.float32)

    return embed, runs, started, release


def test_learning_keeps_a_lane_free_while_predictions_come() -> None:
    embed, runs, started, release = blocking_embed()
    batcher = EmbedBatcher(embed, lanes=2, learn_lag_ms=10_000, quiet_s=600)
    batcher.embed(np.full((1, 2), 2))  # a prediction: predictions are coming
    with ThreadPoolExecutor(2) as pool:
        learn = pool.submit(batcher.embed, np.full((4, 2), 1), False)
        assert started.wait(10)
        # One lane holds a learn chunk; the other is kept for predictions, not learning.
        assert batcher.embed(np.full((1, 2), 3)).tolist() == [[3.0, 3.0]]
        time.sleep(0.2)
        assert runs == [2.0, 1.0, 3.0]
        release.set()
        assert learn.result(10).tolist() == [[1.0, 1.0]] * 4
    batcher.close()
    assert runs == [2.0, 1.0, 3.0, 1.0, 1.0, 1.0]  # the rest in chunks, one lane at a time


def test_learning_in_progress_does_not_lag_past_predictions() -> None:
    """A learn request longer than the lag bound, taken a chunk at a time by one lane, is
    making progress: it does not count as held back, so it never takes the lane kept for
    predictions."""
    lock, active, most = threading.Lock(), [0], [0]

    def embed(x: np.ndarray) -> np.ndarray:
        learning = x[0, 0] == 1
        with lock:
            active[0] += learning
            most[0] = max(most[0], active[0])
        time.sleep(0.1 if learning else 0.0)
        with lock:
            active[0] -= learning
        return x.astype(np.float32)

    batcher = EmbedBatcher(embed, lanes=2, learn_lag_ms=500, quiet_s=600)
    batcher.embed(np.full((1, 2), 2))  # predictions are coming
    out = batcher.embed(np.full((8, 2), 1), urgent=False)  # 8 chunks: 0.8 s > the bound
    batcher.close()
    assert out.shape == (8, 2) and most[0] == 1


def test_without_predictions_learning_runs_on_every_lane() -> None:
    embed, runs, started, release = blocking_embed()
    batcher = EmbedBatcher(embed, lanes=2, quiet_s=0)
    with ThreadPoolExecutor(2) as pool:
        learn = pool.submit(batcher.embed, np.full((4, 2), 1), False)
        assert started.wait(10)
        deadline = time.monotonic() + 10
        while len(runs) < 2 and time.monotonic() < deadline:  # the other lane's share
            time.sleep(0.01)
        assert len(runs) >= 2 and not learn.done()
        release.set()
        assert learn.result(10).shape == (4, 2)
    batcher.close()


def test_learning_beside_predictions_is_acknowledged_and_durable(tmp_path: Path) -> None:
    """Learn requests sent while predictions keep both lanes busy are all answered, and a
    restarted daemon on the same data dir holds every sample they taught."""
    encoded, labels = images(40)
    teach = [{"image": im, "label": y} for im, y in zip(encoded, labels, strict=True)]
    with serve(tmp_path, durable=True) as client:
        assert client.post("/learn", json={"samples": teach[:8]}).status_code == 200

        def learn(k: int) -> int:
            body = {"samples": teach[8 + 8 * k : 16 + 8 * k]}
            reply = client.post("/learn", json=body)
            assert reply.status_code == 200, reply.text
            accepted: int = reply.json()["accepted"]
            return accepted

        with ThreadPoolExecutor(8) as pool:
            asked = pool.submit(predict_all, client, encoded * 2, 4)
            accepted = list(pool.map(learn, range(4)))
            assert len(asked.result()) == 80
        assert accepted == [8, 8, 8, 8]
        learned = client.get("/stats").json()["samples_learned"]
    assert learned == 40
    with serve(tmp_path, durable=True) as client:
        assert client.get("/stats").json()["samples_learned"] == 40


def test_a_large_request_is_shared_out_among_the_lanes(tmp_path: Path) -> None:
    """One 32-image request on two lanes runs on both (several backbone runs), and learns
    exactly what it learns on one lane in one run."""
    encoded, labels = images(40)
    teach = [{"image": im, "label": y} for im, y in zip(encoded[:32], labels[:32], strict=True)]
    answers, runs = {}, {}
    for lanes in (1, 2):
        with serve(tmp_path / str(lanes), embed_lanes=lanes) as client:
            reply = client.post("/learn", json={"samples": teach})
            assert reply.status_code == 200 and reply.json()["accepted"] == 32, reply.text
            batcher = client.app.state.runtime.embedder.batcher  # type: ignore[attr-defined]
            runs[lanes] = (batcher.batches, batcher.samples)
            answers[lanes] = predict_all(client, encoded[32:], workers=1)
    assert runs[1] == (1, 32)
    assert runs[2][0] >= 2 and runs[2][1] == 32
    assert_same(answers[1], answers[2])


def test_unset_sizing_gives_a_lane_per_core_of_one_thread_each(tmp_path: Path) -> None:
    """Without embed_lanes and backbone_threads the daemon runs a backbone lane per core
    it may use, one ONNX Runtime thread each, and learns and predicts on them."""
    encoded, labels = images(12)
    settings = make_settings(
        backbone="onnx", backbone_dir=tmp_path / "backbone", data_dir=tmp_path / "data"
    )
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        teach = [{"image": im, "label": y} for im, y in zip(encoded[:8], labels[:8], strict=True)]
        assert client.post("/learn", json={"samples": teach}).status_code == 200
        assert len(predict_all(client, encoded[8:], workers=4)) == 4
        embedder = client.app.state.runtime.embedder  # type: ignore[attr-defined]
        assert embedder.batcher.lanes == len(os.sched_getaffinity(0))
        assert embedder.backbone.intra_op_threads == 1
