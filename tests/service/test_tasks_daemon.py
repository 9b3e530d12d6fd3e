"""Tasks through the daemon: the `task` field over HTTP (JSON, msgpack, multipart) and MQTT,
refusals that name it and change nothing, /stats, and every task back after kill -9."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.bootstrap import build_runtime
from service.mqtt_wire import Topics
from tests.mosquitto import Mosquitto, Probe, available
from tests.service.conftest import make_settings, png
from tests.service.daemon import Daemon, ForkedDaemon, ForkServer, identity_env
from tests.service.test_dashboard_browser import CHROMIUM, ById, chromium
from tests.service.test_mqtt import learned, wait_until

DIM = 4
#: The same inputs mean other labels in each task: only the task tells them apart.
TASKS = {"animals": ("cat", "dog"), "colours": ("red", "blue")}
LEFT, RIGHT = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]


def samples(task: str, n: int = 12) -> list[dict[str, Any]]:
    a, b = TASKS[task]
    out = []
    for i in range(n):
        x = [v + 0.05 * ((i * 7 + k) % 5) for k, v in enumerate(LEFT if i % 2 else RIGHT)]
        out.append({"features": x, "label": b if i % 2 == 0 else a, "task": task})
    return out


def asked(task: str | None) -> dict[str, Any]:
    return {"samples": [{"features": LEFT, "task": task}, {"features": RIGHT, "task": task}]}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = make_settings(strategy={"name": "multi_head", "options": {"lr": 0.5}})
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as c:
        yield c


def test_two_tasks_over_http_each_answered_in_its_own_classes(client: TestClient) -> None:
    assert client.post("/learn", json={"samples": samples("animals")}).status_code == 200
    packed = msgpack.packb({"samples": samples("colours")})
    reply = client.post("/learn", content=packed, headers={"content-type": "application/msgpack"})
    assert reply.status_code == 200, reply.text
    for task, (a, b) in TASKS.items():
        out = client.post("/predict", json=asked(task)).json()["predictions"]
        assert [(p["label"], p["task"]) for p in out] == [(a, task), (b, task)]
    tasks = client.get("/stats").json()["tasks"]
    assert tasks["mode"] == "required"
    assert [(t["name"], t["samples"], sorted(t["classes"])) for t in tasks["tasks"]] == [
        ("animals", 12, ["cat", "dog"]),
        ("colours", 12, ["blue", "red"]),
    ]
    assert all(t["bytes"] == 4 * 4 * (DIM + 1) for t in tasks["tasks"])


def test_multipart_takes_a_task_for_all_files_or_one_per_file(client: TestClient) -> None:
    left, right = png([[255, 0], [0, 0]]), png([[0, 255], [0, 0]])
    files = [("file", ("l.png", left, "image/png")), ("file", ("r.png", right, "image/png"))]
    reply = client.post("/learn", files=files, data={"label": ["cat", "dog"], "task": "animals"})
    assert reply.status_code == 200, reply.text
    reply = client.post("/learn", files=files, data={"label": ["red", "blue"], "task": "colours"})
    assert reply.status_code == 200, reply.text
    one = [("file", ("l.png", left, "image/png"))]
    out = client.post("/predict", files=one, data={"task": "colours"}).json()["predictions"]
    assert (out[0]["label"], out[0]["task"]) == ("red", "colours")
    bad = client.post("/learn", files=files, data={"label": "cat", "task": ["a", "b", "c"]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "task"


def test_a_missing_task_is_a_422_naming_the_field_and_changes_nothing(client: TestClient) -> None:
    client.post("/learn", json={"samples": samples("animals") + samples("colours")})
    before = client.get("/stats").json()
    body = {"samples": [{**samples("animals")[0]}, {"features": LEFT, "label": "cat"}]}
    reply = client.post("/learn", json=body)
    assert reply.status_code == 422 and "samples[1].task" in reply.json()["detail"]
    reply = client.post("/predict", json=asked(None))
    assert reply.status_code == 422 and "task" in reply.json()["detail"]
    reply = client.post("/predict", json=asked("plants"))
    assert reply.status_code == 422 and "never taught" in reply.json()["detail"]
    bad = client.post("/learn", json={"samples": [{**samples("animals")[0], "task": True}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "samples[0].task"
    after = client.get("/stats").json()
    assert (after["samples_learned"], after["tasks"]) == (
        before["samples_learned"],
        before["tasks"],
    )


def test_a_new_task_past_the_budget_is_a_422_with_the_strategys_sentence() -> None:
    # one task's head holds 2 classes x (4 + 1) x 4 bytes = 40 bytes; two do not fit in 60
    options = {"lr": 0.5, "max_bytes": 60}
    settings = make_settings(strategy={"name": "multi_head", "options": options})
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        assert client.post("/learn", json={"samples": samples("animals")}).status_code == 200
        reply = client.post("/learn", json={"samples": samples("colours")})
        assert reply.status_code == 422 and "max_bytes=60" in reply.json()["detail"]
        stats = client.get("/stats").json()
        assert [t["name"] for t in stats["tasks"]["tasks"]] == ["animals"]
        assert stats["samples_learned"] == 12


def test_a_strategy_that_ignores_tasks_counts_them() -> None:
    settings = make_settings()
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        assert client.post("/learn", json={"samples": samples("animals")}).status_code == 200
        out = client.post("/predict", json=asked("animals")).json()["predictions"]
        assert [p["task"] for p in out] == [None, None]
        tasks = client.get("/stats").json()["tasks"]
        assert tasks["mode"] is None and tasks["tasks"][0]["bytes"] is None


@pytest.mark.skipif(not available() and not os.environ.get("CI"), reason="no mosquitto")
def test_two_tasks_over_mqtt(tmp_path: Path) -> None:
    dev = f"dev-{uuid.uuid4().hex[:8]}"
    t = Topics.under("edgecl", dev)
    with Mosquitto(tmp_path / "mosquitto") as broker:
        settings = make_settings(
            strategy={"name": "multi_head", "options": {"lr": 0.5}},
            mqtt_host="127.0.0.1",
            mqtt_port=broker.port,
            mqtt_device_id=dev,
            data_dir=tmp_path / "data",
        )
        runtime = build_runtime(settings)
        with (
            Probe(broker.port, [t.status, "replies/#"]) as probe,
            TestClient(create_app(settings, runtime)) as client,
        ):
            probe.expect(t.status, lambda m: m.payload == b"online")
            assert probe.publish(t.learn, json.dumps({"samples": samples("animals")}).encode())
            assert probe.publish(t.learn, msgpack.packb({"samples": samples("colours")}))
            wait_until(lambda: learned(client) == 24, "24 samples learned")
            for task, (a, b) in TASKS.items():
                probe.publish(
                    t.predict_request, json.dumps(asked(task)).encode(),
                    response_topic=f"replies/{task}", correlation=task.encode(),
                )  # fmt: skip
                reply = json.loads(probe.expect(f"replies/{task}").payload)
                got = [(p["label"], p["task"]) for p in reply["predictions"]]
                assert got == [(a, task), (b, task)]


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    with ForkServer(identity_env(DIM)) as server:
        yield server


def figures(url: str, tasks: list[str | None]) -> dict[str, Any]:
    stats = httpx.get(f"{url}/stats", timeout=30).json()
    answers = [
        httpx.post(f"{url}/predict", json={**asked(t), "top_k": 4}, timeout=30).json()
        for t in tasks
    ]
    keys = ("samples_learned", "model_version", "classes", "store", "tasks")
    return {**{k: stats[k] for k in keys}, "answers": answers}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "asks"),
    [("multi_head", ["animals", "colours"]), ("hat", ["animals", "colours"]),
     ("supsup", ["animals", "colours", None])],
)  # fmt: skip
def test_every_task_comes_back_exactly_after_kill_9(
    tmp_path: Path, forks: ForkServer, name: str, asks: list[str | None]
) -> None:
    env = identity_env(
        DIM,
        strategy__name=name,
        strategy__options=json.dumps({"lr": 0.5}),
        checkpoint_every_samples="30",  # a checkpoint holds some, the WAL the rest
        probe_share="0.2",  # held-back items keep their task through restarts too
    )
    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        with httpx.Client(base_url=daemon.url, timeout=30) as http:
            for taught in ("animals", "colours", "animals", "colours"):
                body = {"samples": samples(taught, 10)}
                assert http.post("/learn", json=body).status_code == 200
        before = figures(daemon.url, asks)
        assert daemon.kill() == -9
    for asked_task, answer in zip(asks, before["answers"], strict=True):
        if asked_task is not None:
            labels = [p["label"] for p in answer["predictions"]]
            assert labels == list(TASKS[asked_task])
            assert answer["predictions"][0]["task"] == asked_task
    with ForkedDaemon(forks, tmp_path / "data", env) as daemon:
        after = figures(daemon.url, asks)
    assert after == before


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_the_dashboard_lists_the_tasks_stats_reports(tmp_path: Path) -> None:
    env = identity_env(DIM, strategy__name="multi_head", dashboard_interval_s="0.2")
    with Daemon(tmp_path / "data", env) as daemon:
        for task in TASKS:
            body = {"samples": samples(task)}
            assert httpx.post(f"{daemon.url}/learn", json=body, timeout=30).status_code == 200
        tasks = httpx.get(f"{daemon.url}/stats", timeout=30).json()["tasks"]["tasks"]
        page = ById("")
        for budget in (5_000, 15_000, 30_000):
            out = chromium(tmp_path / "profile", budget, "--dump-dom", f"{daemon.url}/dashboard")
            page = ById(out.stdout)
            if page.root.get("data-renders"):
                break
    assert "hidden" not in page.attrs["tasks-panel"], out.stderr[-2000:]
    shown = page.text["tasks-body"]
    for t in tasks:
        assert t["name"] in shown and ", ".join(t["classes"]) in shown
    assert "task required" in page.text["tasks-note"]


def test_retraining_from_a_memory_of_tasked_samples_over_http() -> None:
    settings = make_settings(
        strategy={"name": "gdumb", "options": {"epochs": 5}},
        store={"kind": "class_balanced", "max_bytes": 64 << 10},
    )
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        assert client.post("/learn", json={"samples": samples("animals")}).status_code == 200
        job = client.post("/retrain").json()["job"]
        wait_until(
            lambda: client.get(f"/retrain/{job}").json()["state"] != "running", "the retrain"
        )
        assert client.get(f"/retrain/{job}").json()["state"] == "succeeded"
        out = client.post("/predict", json=asked("animals")).json()["predictions"]
        assert [p["label"] for p in out] == ["cat", "dog"]
