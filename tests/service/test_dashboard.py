"""GET /dashboard, its vendored files, /dashboard/data, the ring buffer behind it, and the
probe section of /stats."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.observability.history import Sampler, TimeSeries
from service.routes.dashboard import FILES, STATIC
from tests.service.conftest import DIM, make_settings, sample


def learn(client: TestClient, *samples: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/learn", json={"samples": list(samples)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_the_page_and_every_file_it_loads_are_served(client: TestClient) -> None:
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs and not [r for r in refs if "//" in r], refs  # nothing from a CDN
    for ref in refs:
        response = client.get("/" + ref)
        assert response.status_code == 200, ref
        name = ref.removeprefix("dashboard/")
        assert response.headers["content-type"] == FILES[name]
    script = client.get("/dashboard/app.js").text
    assert "http://" not in script and "https://" not in script


def test_unknown_files_are_not_served(client: TestClient) -> None:
    for path in ("/dashboard/nope.js", "/dashboard/../settings.py", "/dashboard/%2e%2e/app.py"):
        assert client.get(path).status_code == 404, path


def test_the_chart_library_is_vendored_with_its_licence() -> None:
    vendor = STATIC / "vendor"
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    assert "uplot@1.6.32" in (vendor / "README.md").read_text()
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 10_000


def test_data_holds_series_stats_and_settings(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(probe_share=0.2, probe_every=5))
    for _ in range(10):
        learn(client, *[sample("a", 0), sample("b", 1), sample("c", 2)] * 4)
    client.post("/predict", json={"samples": [{"features": [1.0, 0, 0, 0]}]})
    sampler: Sampler = client.app.state.sampler  # type: ignore[attr-defined]
    sampler.sample()
    data = client.get("/dashboard/data").json()
    stats = client.get("/stats").json()
    for key in ("samples_learned", "classes", "prequential", "confusions", "store"):
        assert data["stats"][key] == stats[key], key
    ages = (data["stats"]["probe"].pop("age_s"), stats["probe"].pop("age_s"))  # read apart
    assert data["stats"]["probe"] == stats["probe"] and all(a >= 0 for a in ages)
    series = data["series"]
    n = len(series["t"])
    assert n >= 2
    assert all(len(column) == n for column in series["values"].values())
    assert set(series["classes"]) == {"a", "b", "c"}
    assert series["values"]["learn_rate"][-1] is not None
    assert series["values"]["store_max_bytes"][-1] == stats["store"]["max_bytes"]
    assert data["settings"]["strategy"] == "ncm" and data["settings"]["latent_shape"] == [DIM]
    assert "api_token" not in str(data["settings"])


def test_probe_section_keeps_learned_counts_honest(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(probe_share=0.3, probe_every=10))
    accepted = 0
    for _ in range(12):
        accepted += learn(client, *[sample("a", 0), sample("b", 1)] * 10)["accepted"]
    stats = client.get("/stats").json()
    probe = stats["probe"]
    assert probe["held"] == probe["diverted"] > 0  # two classes: nothing had to be evicted
    assert stats["samples_learned"] + probe["held"] == accepted
    assert sum(c["samples"] for c in stats["classes"].values()) == stats["samples_learned"]
    assert sum(c["held"] for c in probe["classes"].values()) == probe["held"]
    assert probe["accuracy"] == 1.0 and probe["forgetting"] == 0.0
    # Right on every held item, yet a sample of them: the 95% margin is not zero, and
    # shrinks as the probe holds more.
    n = probe["held"]
    assert probe["margin"] == pytest.approx(
        1.96 * (1.96**2 / (4 * n * n)) ** 0.5 / (1 + 1.96**2 / n)
    )
    assert probe["status"] == "ok" and probe["age_s"] >= 0
    assert probe["bytes"] <= probe["max_bytes"]


def test_a_small_probe_says_why_it_cannot_measure(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(probe_share=0.3, probe_every=10))
    learn(client, *[sample("a", 0), sample("b", 1)] * 3)
    probe = client.get("/stats").json()["probe"]
    assert probe["status"] == "too_few" and "needs at least" in probe["reason"]


def test_probe_off_is_null(client: TestClient) -> None:
    learn(client, sample("a", 0))
    assert client.get("/stats").json()["probe"] is None


def test_the_page_needs_no_token_but_the_data_does(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(api_token=SecretStr("s3cret")))
    assert client.get("/dashboard").status_code == 200
    assert client.get("/dashboard/app.js").status_code == 200
    assert client.get("/dashboard/data").status_code == 401
    ok = client.get("/dashboard/data", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_ring_buffer_stays_bounded_over_many_classes_and_a_long_run() -> None:
    series = TimeSeries(capacity=50, class_limit=5)
    for t in range(20_000):
        classes = {f"c{(t + i) % 300}": 0.5 for i in range(40)}
        series.append(float(t), {"rss_bytes": float(t), "accuracy": None}, classes)
    data = series.columns()
    assert len(series) == 50 and data["t"][0] == 19_950.0
    assert len(data["classes"]) == 5
    assert all(len(v) == 50 for v in [*data["values"].values(), *data["classes"].values()])


def test_the_sampler_keeps_the_classes_with_most_samples(
    client_for: Callable[..., TestClient],
) -> None:
    client = client_for(make_settings(dashboard_points=3))
    sampler: Sampler = client.app.state.sampler  # type: ignore[attr-defined]
    learn(client, *[sample(f"k{i}", i % DIM) for i in range(40)])
    learn(client, *[sample("k3", 3)] * 5)
    for _ in range(6):
        sampler.sample()
    data = sampler.series.columns()
    assert len(data["t"]) == 3
    assert len(data["classes"]) == sampler.series.class_limit and "k3" in data["classes"]


def test_the_sampler_thread_stops_with_the_app(client_for: Callable[..., TestClient]) -> None:
    client = client_for(make_settings(dashboard_interval_s=0.01))
    sampler: Sampler = client.app.state.sampler  # type: ignore[attr-defined]
    thread = sampler._thread
    assert thread is not None and thread.is_alive()
    client.__exit__(None, None, None)
    assert not thread.is_alive()
