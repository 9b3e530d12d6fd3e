"""GET /metrics, parsed with prometheus_client's own parser: names, types, values that move."""

from __future__ import annotations

import base64
import gc
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.bootstrap import build_runtime
from service.errors import QueueFullError
from service.observability.collector import CLASS_SERIES_LIMIT
from service.usecases import PendingLearn
from tests.service.conftest import DIM, make_settings, png, sample

GRAFANA = Path(__file__).parents[2] / "deploy/grafana/provisioning/dashboards/edgecl.json"
Families = dict[str, tuple[str, dict[tuple[tuple[str, str], ...], float]]]


def scrape(client: TestClient) -> Families:
    """family name -> (type, {sorted labels of a sample (its name included): value})."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out: Families = {}
    for family in text_string_to_metric_families(response.text):
        samples = {}
        for s in family.samples:
            samples[(("__name__", s.name), *sorted(s.labels.items()))] = s.value
        out[family.name] = (family.type, samples)
    return out


def value(families: Families, name: str, suffix: str | None = None, **labels: str) -> float:
    """A sample of family ``name``: a counter's ``_total`` unless another ``suffix`` is given."""
    kind, samples = families[name]
    if suffix is None:
        suffix = "_total" if kind == "counter" else ""
    return samples[(("__name__", name + suffix), *sorted(labels.items()))]


def learn(client: TestClient, *samples: dict[str, Any]) -> None:
    response = client.post("/learn", json={"samples": list(samples)})
    assert response.status_code == 200, response.text


EXPECTED_TYPES = {
    "edgecl_build_info": "gauge",
    "edgecl_samples_learned": "counter",
    "edgecl_samples_ingested": "counter",
    "edgecl_samples_rejected": "counter",
    "edgecl_samples_predicted": "counter",
    "edgecl_learn_duration_seconds": "histogram",
    "edgecl_predict_duration_seconds": "histogram",
    "edgecl_checkpoint_duration_seconds": "histogram",
    "edgecl_gc_pause_seconds": "histogram",
    "edgecl_queue_depth": "gauge",
    "edgecl_queue_capacity": "gauge",
    "edgecl_store_items": "gauge",
    "edgecl_store_bytes": "gauge",
    "edgecl_store_max_bytes": "gauge",
    "edgecl_store_evictions": "counter",
    "edgecl_prequential_accuracy": "gauge",
    "edgecl_prequential_window_accuracy": "gauge",
    "edgecl_class_samples_learned": "counter",
    "edgecl_class_prequential_accuracy": "gauge",
    "edgecl_classes": "gauge",
    "edgecl_model_version": "gauge",
    "edgecl_mqtt_connected": "gauge",
    "edgecl_http_requests": "counter",
    "edgecl_http_request_duration_seconds": "histogram",
    "edgecl_runtime_events": "counter",
    "process_resident_memory_bytes": "gauge",
    "edgecl_probe_items": "gauge",
    "edgecl_probe_bytes": "gauge",
    "edgecl_probe_samples_held": "counter",
    "edgecl_probe_accuracy": "gauge",
    "edgecl_probe_forgetting": "gauge",
    "edgecl_probe_class_accuracy": "gauge",
    "edgecl_probe_class_forgetting": "gauge",
}


@pytest.fixture
def probed(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for(
        make_settings(probe_share=0.3, probe_every=10, store={"kind": "class_balanced"})
    )


def test_names_and_types_and_values_that_move(probed: TestClient) -> None:
    learn(probed, sample("a", 0), sample("b", 1))
    before = scrape(probed)
    assert value(before, "edgecl_samples_learned") == 2
    for _ in range(20):
        learn(probed, *[sample("a", 0), sample("b", 1)] * 10)
    assert probed.post("/predict", json={"samples": [{"features": [1.0, 0, 0, 0]}]}).is_success
    after = scrape(probed)

    missing = {n for n in EXPECTED_TYPES if n not in after}
    assert not missing
    assert {n: after[n][0] for n in EXPECTED_TYPES} == EXPECTED_TYPES
    held = value(after, "edgecl_probe_samples_held")
    learned = value(after, "edgecl_samples_learned")
    ingested = value(after, "edgecl_samples_ingested", source="http")
    assert ingested == 2 + 20 * 20 and 0 < held and learned + held == ingested
    assert value(after, "edgecl_probe_items") == held  # nothing evicted: two classes, room
    assert 0.9 <= value(after, "edgecl_probe_accuracy") <= 1.0
    assert value(after, "edgecl_probe_class_forgetting", **{"class": "a"}) >= 0.0
    batches = value(after, "edgecl_learn_duration_seconds", "_count")
    assert batches > value(before, "edgecl_learn_duration_seconds", "_count")
    assert value(after, "edgecl_samples_predicted") == 1
    assert value(after, "edgecl_model_version") > value(before, "edgecl_model_version")
    assert value(after, "edgecl_classes") == 2
    learned_a = value(after, "edgecl_class_samples_learned", **{"class": "a"})
    assert learned_a == probed.get("/stats").json()["classes"]["a"]["samples"]
    assert 0 < value(after, "edgecl_store_bytes") <= value(after, "edgecl_store_max_bytes")
    assert value(after, "process_resident_memory_bytes") > 0
    info = [dict(k) for k in after["edgecl_build_info"][1]]
    assert info[0]["backbone"] == "identity" and info[0]["version"]
    requests = value(after, "edgecl_http_requests", method="POST", route="/learn", status="200")
    assert requests == 21


def test_rejected_samples_are_counted_by_source_and_reason(client: TestClient) -> None:
    learn(client, sample("a", 0))
    image = base64.b64encode(png([[0, 1, 2], [3, 4, 5]])).decode()  # 6 pixels, not DIM
    bad_image = {"samples": [{"image": image, "label": "a"}]}
    assert client.post("/learn", json=bad_image).status_code == 422
    cases = client.app.state.usecases  # type: ignore[attr-defined]
    with pytest.raises(ValueError):  # two samples, one label
        cases.submit(PendingLearn(np.zeros((2, DIM), np.float32), ["a"], [None, None], "mqtt"))
    families = scrape(client)
    name = "edgecl_samples_rejected"
    assert value(families, name, source="http", reason="invalid") == 1
    assert value(families, name, source="mqtt", reason="invalid") == 2


def test_a_full_queue_counts_rejections(client_for: Callable[..., TestClient]) -> None:
    rt = build_runtime(make_settings(queue_size=1), durable=False)
    client = client_for(make_settings(queue_size=1), rt)
    cases = client.app.state.usecases  # type: ignore[attr-defined]
    with rt.exclusive():  # hold the writer, so the queue cannot drain
        futures, full = [], 0
        for _ in range(5):
            try:
                pending = PendingLearn(np.ones((1, DIM), np.float32), ["a"], [None], "http")
                futures.append(cases.submit(pending))
            except QueueFullError:
                full += 1
    for future in futures:
        future.result(timeout=10)
    families = scrape(client)
    name = "edgecl_samples_rejected"
    assert full > 0
    assert value(families, name, source="http", reason="queue_full") == full


def test_per_class_series_are_capped(client: TestClient) -> None:
    n = CLASS_SERIES_LIMIT + 30
    for start in range(0, n, 40):
        learn(client, *[sample(f"class-{i}", i % DIM) for i in range(start, min(start + 40, n))])
    learn(client, *[sample("class-7", 0)] * 3)  # the most samples: always among the series
    families = scrape(client)
    assert value(families, "edgecl_classes") == n
    for name in ("edgecl_class_samples_learned", "edgecl_class_prequential_accuracy"):
        labels = {dict(k)["class"] for k in families[name][1]}
        assert len(labels) == CLASS_SERIES_LIMIT and "class-7" in labels


def test_checkpoints_and_wal_bytes(client_for: Callable[..., TestClient], tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path, checkpoint_every_samples=1, wal_fsync="group")
    client = client_for(settings, build_runtime(settings, durable=True))
    learn(client, sample("a", 0), sample("b", 1))
    learn(client, sample("a", 0))
    families = scrape(client)
    name = "edgecl_checkpoint_duration_seconds"
    assert value(families, name, "_count") >= 1
    written = value(families, "edgecl_wal_written_bytes")
    assert written > 0


def test_the_grafana_dashboard_uses_only_metrics_that_exist(
    client_for: Callable[..., TestClient], tmp_path: Path
) -> None:
    settings = make_settings(
        data_dir=tmp_path, checkpoint_every_samples=1, probe_share=0.3, probe_every=5
    )
    client = client_for(settings, build_runtime(settings, durable=True))
    for _ in range(5):
        learn(client, *[sample("a", 0), sample("b", 1)] * 10)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    exposed = {  # a labelled counter with no samples yet still names its series
        family + suffix
        for family, (kind, _) in scrape(client).items()
        for suffix in suffixes.get(kind, [""])
    }
    text = GRAFANA.read_text()
    dashboard = json.loads(text)
    used = set(re.findall(r"\b((?:edgecl|process)_[a-z_]+)\b", text))
    assert used and not used - exposed, sorted(used - exposed)
    assert dashboard["uid"] == "edgecl"
    assert {p["title"] for p in dashboard["panels"]} >= {"Memory", "Accuracy", "Classes"}


def test_mqtt_connected_follows_the_setter(client: TestClient) -> None:
    telemetry = client.app.state.telemetry  # type: ignore[attr-defined]
    assert value(scrape(client), "edgecl_mqtt_connected") == 0
    telemetry.set_mqtt_connected(True)
    assert value(scrape(client), "edgecl_mqtt_connected") == 1
    telemetry.set_mqtt_connected(False)
    assert value(scrape(client), "edgecl_mqtt_connected") == 0


def test_collector_pauses_are_timed_while_the_app_runs(client: TestClient) -> None:
    key = (("__name__", "edgecl_gc_pause_seconds_count"), ("generation", "2"))
    before = scrape(client)["edgecl_gc_pause_seconds"][1].get(key, 0.0)
    gc.collect()
    after = scrape(client)
    assert after["edgecl_gc_pause_seconds"][0] == "histogram"
    assert after["edgecl_gc_pause_seconds"][1][key] >= before + 1
    assert value(after, "edgecl_gc_pause_seconds", "_sum", generation="2") > 0
