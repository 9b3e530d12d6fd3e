"""Every endpoint through create_app(settings, runtime) and TestClient."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.service.conftest import make_settings, png, retrainable_runtime, sample, stats_counts


def learn(client: TestClient, *samples: dict[str, object]) -> dict[str, object]:
    response = client.post("/learn", json={"samples": list(samples)})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_learn_then_predict_json(client: TestClient) -> None:
    body = learn(client, sample("a", 0), sample("b", 1), sample(7, 2))
    assert body == {"accepted": 3, "duplicates": 0, "model_version": 1, "classes": 3}
    response = client.post(
        "/predict", json={"samples": [{"features": [0.1, 0.9, 0.0, 0.0]}], "top_k": 2}
    )
    assert response.status_code == 200
    out = response.json()
    assert out["model_version"] == 1
    (pred,) = out["predictions"]
    assert pred["label"] == "b"
    assert [t["label"] for t in pred["top_k"]][0] == "b" and len(pred["top_k"]) == 2
    assert pred["score"] == pred["top_k"][0]["score"]


def test_integer_labels_stay_integers(client: TestClient) -> None:
    learn(client, sample(7, 0), sample("7", 1))
    out = client.post("/predict", json={"samples": [{"features": [1.0, 0, 0, 0]}]}).json()
    assert out["predictions"][0]["label"] == 7


def test_msgpack_body_and_reply(client: TestClient) -> None:
    image = png([[255, 0], [0, 0]])  # identity backbone: pixels/255 = [1, 0, 0, 0]
    raw = np.array([0, 0, 0, 1], np.float32).tobytes()
    packed = {"dtype": "float32", "shape": [4], "data": raw}
    body = {"samples": [{"image": image, "label": "corner"}, {"array": packed, "label": "last"}]}
    headers = {"content-type": "application/msgpack", "accept": "application/msgpack"}
    response = client.post("/learn", content=msgpack.packb(body), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(response.content)["accepted"] == 2
    query = {"samples": [{"array": [[0.0, 0.0], [0.0, 0.9]]}], "top_k": 1}
    response = client.post("/predict", content=msgpack.packb(query), headers=headers)
    assert msgpack.unpackb(response.content)["predictions"][0]["label"] == "last"


def test_json_image_is_base64(client: TestClient) -> None:
    image = base64.b64encode(png([[0, 255], [0, 0]])).decode()
    learn(client, {"image": image, "label": "right"}, sample("left", 0))
    out = client.post("/predict", json={"samples": [{"image": image}]}).json()
    assert out["predictions"][0]["label"] == "right"


def test_multipart_upload_like_curl_form(client: TestClient) -> None:
    files = [("file", ("x.png", png([[0, 0], [255, 0]]), "image/png"))]
    response = client.post("/learn", files=files, data={"label": "sneaker", "id": "up-1"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    learn(client, sample("other", 0))
    response = client.post("/predict", files=files, data={"top_k": "1"})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "sneaker"


def test_multipart_many_files_one_label(client: TestClient) -> None:
    files = [
        ("file", ("a.png", png([[0, 0], [255, 0]]), "image/png")),
        ("file", ("b.png", png([[0, 0], [250, 0]]), "image/png")),
    ]
    response = client.post("/learn", files=files, data={"label": "sneaker"})
    assert response.json()["accepted"] == 2


def test_duplicate_ids_are_acknowledged_not_relearned(client: TestClient) -> None:
    learn(client, sample("a", 0, sid="k1"), sample("b", 1, sid="k2"))
    before = stats_counts(client)
    body = learn(client, sample("a", 0, sid="k1"))
    assert body["accepted"] == 1 and body["duplicates"] == 1
    assert stats_counts(client) == before
    # The same id twice in one request: learned once.
    body = learn(client, sample("c", 2, sid="k3"), sample("c", 2, sid="k3"))
    assert body["duplicates"] == 1
    assert client.get("/stats").json()["classes"]["c"]["samples"] == 1


def test_predict_before_learning_is_409(client: TestClient) -> None:
    response = client.post("/predict", json={"samples": [{"features": [0, 0, 0, 1.0]}]})
    assert response.status_code == 409
    assert "nothing has been learned" in response.json()["detail"]


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    assert client.get("/health/ready").json() == {"status": "ready"}


def test_not_ready_before_start(settings: Settings) -> None:
    from service.app import create_app
    from service.bootstrap import build_runtime

    client = TestClient(create_app(settings, build_runtime(settings, durable=False)))
    # Without entering the client, the lifespan never ran: the runtime is not started.
    assert client.get("/health/ready").status_code == 503
    assert client.get("/health/live").status_code == 200
    response = client.post("/learn", json={"samples": [sample("a", 0)]})
    assert response.status_code == 503 and "Retry-After" in response.headers


def test_stats_fields(client: TestClient) -> None:
    learn(client, sample("a", 0), sample("b", 1))
    learn(client, sample("a", 0), sample("b", 1))
    s = client.get("/stats").json()
    assert s["samples_learned"] == 4 and s["model_version"] == 2
    assert s["uptime_s"] >= 0 and s["rss_bytes"] > 0
    assert s["classes"]["a"]["samples"] == 2
    # Test-then-train: the second round was predicted right before being learned.
    assert s["classes"]["a"]["accuracy"] == 0.5
    assert s["prequential"]["accuracy"] == 0.5 and s["prequential"]["seen"] == 4
    assert s["store"]["kind"] == "reservoir" and s["store"]["items"] == 4
    assert 0 < s["store"]["bytes"] <= s["store"]["max_bytes"]
    assert s["strategy"] == {"name": "ncm", "temperature": 1.0}
    assert "bytes_written_per_sample" not in s  # no WAL in memory-only mode


def test_stats_without_a_store(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(store={"kind": None}))
    learn(client, sample("a", 0))
    store = client.get("/stats").json()["store"]
    assert store == {"kind": None, "items": 0, "bytes": 0, "max_bytes": 0, "strategy_bytes": None}


def test_metrics_are_prometheus_text(client: TestClient) -> None:
    learn(client, sample("a", 0))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "edgecl_samples_learned_total 1.0" in text
    assert 'edgecl_http_requests_total{method="POST",route="/learn",status="200"} 1.0' in text
    assert "edgecl_model_version 1.0" in text


def test_metrics_registry_is_per_app(client_for: Callable[..., TestClient]) -> None:
    first, second = client_for(make_settings()), client_for(make_settings())
    learn(first, sample("a", 0))
    assert "edgecl_samples_learned_total 0.0" in second.get("/metrics").text


def test_bearer_token(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(api_token="s3cret"))
    good = {"authorization": "Bearer s3cret"}
    for method, path in [
        ("post", "/learn"),
        ("post", "/predict"),
        ("get", "/stats"),
        ("get", "/metrics"),
        ("post", "/retrain"),
        ("get", "/retrain/x"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
        ("get", "/redoc"),
    ]:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            response = client.request(method.upper(), path, headers=headers)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/health/live").status_code == 200
    assert client.get("/health/ready").status_code == 200
    response = client.post("/learn", json={"samples": [sample("a", 0)]}, headers=good)
    assert response.status_code == 200
    assert client.get("/stats", headers=good).json()["samples_learned"] == 1
    assert "/learn" in client.get("/openapi.json", headers=good).json()["paths"]
    for page in ("/docs", "/redoc"):
        response = client.get(page, headers=good)
        assert response.status_code == 200 and "/openapi.json" in response.text


def test_retrain_unsupported_strategy_is_409(client: TestClient) -> None:
    response = client.post("/retrain")
    assert response.status_code == 409
    assert "does not retrain from memory" in response.json()["detail"]
    assert client.get("/retrain/nope").status_code == 404


def test_retrain_job_runs_while_predictions_are_served(
    client_for: Callable[..., TestClient], settings: Settings
) -> None:
    gate = threading.Event()
    client = client_for(settings, retrainable_runtime(gate))
    learn(client, sample("a", 0), sample("b", 1))
    response = client.post("/retrain")
    assert response.status_code == 202
    job = response.json()["job"]
    status = client.get(f"/retrain/{job}").json()
    assert status["state"] == "running" and status["progress"] == 0.0
    assert client.post("/retrain").status_code == 409  # one job at a time
    # Predictions are served while the job waits at its gate.
    response = client.post("/predict", json={"samples": [{"features": [1.0, 0, 0, 0]}]})
    assert response.json()["predictions"][0]["label"] == "a"
    gate.set()
    status = wait_job(client, job)
    assert status["state"] == "succeeded" and status["progress"] == 1.0
    # Applying the retrained head is a new model version.
    assert client.get("/stats").json()["model_version"] == 2


def test_retrain_cancel(client_for: Callable[..., TestClient], settings: Settings) -> None:
    gate = threading.Event()
    client = client_for(settings, retrainable_runtime(gate))
    learn(client, sample("a", 0), sample("b", 1))
    job = client.post("/retrain").json()["job"]
    response = client.delete(f"/retrain/{job}")
    assert response.status_code == 202
    gate.set()
    assert wait_job(client, job)["state"] == "cancelled"
    assert client.get("/stats").json()["model_version"] == 1


def wait_job(client: TestClient, job: str) -> dict[str, object]:
    for _ in range(500):
        status: dict[str, object] = client.get(f"/retrain/{job}").json()
        if status["state"] != "running":
            return status
        time.sleep(0.01)
    raise AssertionError(f"job {job} did not finish")


def test_every_route_documents_its_responses(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            assert codes, (method, path)
            if path not in ("/health/live", "/health/ready"):
                assert "401" in codes, (method, path)
    learn_op = spec["paths"]["/learn"]["post"]
    assert set(learn_op["requestBody"]["content"]) == {
        "application/json",
        "application/msgpack",
        "multipart/form-data",
    }
    assert {"200", "413", "422", "503", "507"} <= set(learn_op["responses"])
    assert "LearnRequest" in spec["components"]["schemas"]
    assert {"200", "409"} <= set(spec["paths"]["/predict"]["post"]["responses"])


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
def test_body_limit(client_for: Callable[..., TestClient], declared: bool) -> None:
    client = client_for(make_settings(max_body_bytes=4096))
    payload = b'{"samples": [' + b" " * 10_000 + b"]}"

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 1000):
            yield payload[i : i + 1000]

    content: bytes | Iterator[bytes] = payload if declared else chunks()
    response = client.post(
        "/learn",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "larger than the limit of 4096 bytes" in response.json()["detail"]
    assert client.get("/stats").json()["samples_learned"] == 0
