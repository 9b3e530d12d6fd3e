"""The dashboard's history across restarts (a file in the data dir), and its end-to-end
request latency, which must agree with the Prometheus histogram."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.bootstrap import build_runtime
from service.observability.history import Sampler, TimeSeries
from service.observability.history_file import NAME, load_history, save_history
from service.observability.metrics import Telemetry
from service.settings import Settings
from tests.service.conftest import DIM, make_settings, sample


def durable_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, build_runtime(settings, durable=True)))


def sampler_of(client: TestClient) -> Sampler:
    """The app's sampler, once its thread took the point it takes at start (then it waits
    an interval), so the points the test takes are the only others."""
    sampler: Sampler = client.app.state.sampler  # type: ignore[attr-defined]
    deadline = time.monotonic() + 30
    while not sampler.sampled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sampler.sampled
    return sampler


def teach_and_predict(client: TestClient, predicts: int) -> None:
    learn = client.post("/learn", json={"samples": [sample(c, c) for c in range(DIM)] * 3})
    assert learn.status_code == 200, learn.text
    for _ in range(predicts):
        answer = client.post("/predict", json={"samples": [{"features": [1.0, 0, 0, 0]}]})
        assert answer.status_code == 200, answer.text


def histogram(text: str, route: str, part: str) -> float:
    name = f'edgecl_http_request_duration_seconds_{part}{{route="{route}"}}'
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


def test_history_is_kept_across_a_restart(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path, dashboard_interval_s=3600)
    with durable_client(settings) as client:
        teach_and_predict(client, 2)
        for _ in range(3):
            sampler_of(client).sample()
        before = client.get("/dashboard/data").json()["series"]
    assert (tmp_path / NAME).is_file()  # written at shutdown
    with durable_client(settings) as client:
        sampler_of(client).sample()
        after = client.get("/dashboard/data").json()["series"]
    n = len(before["t"])
    assert n == 4 and after["t"][:n] == before["t"] and len(after["t"]) == n + 3
    # Then one point without figures, where the charts' lines break: the restart.
    assert all(column[n] is None for column in after["values"].values())
    for name, column in before["values"].items():
        kept = after["values"][name][:n]
        assert [v is None for v in kept] == [v is None for v in column], name
        numbers = [v for v in column if v is not None]
        assert [v for v in kept if v is not None] == pytest.approx(numbers, rel=1e-6), name
    assert set(after["classes"]) == set(before["classes"]) == {"0", "1", "2", "3"}
    # The samples learned before the restart are still there, from the checkpoint and WAL.
    assert after["values"]["samples_learned"][-1] == before["values"]["samples_learned"][-1]


def test_an_in_memory_daemon_writes_no_history(tmp_path: Path) -> None:
    settings = make_settings(data_dir=tmp_path)
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        sampler_of(client).sample()
    assert not (tmp_path / NAME).exists()


@pytest.mark.parametrize(
    "content", [b"", b"garbage", b"EDGECL-HISTORY1\n" + b"\x78\x9c" + b"\x00" * 40]
)
def test_a_damaged_history_starts_empty_with_a_log_line(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / NAME).write_bytes(content)
    settings = make_settings(data_dir=tmp_path, dashboard_interval_s=3600)
    with caplog.at_level(logging.INFO, "edgecl.timeseries"), durable_client(settings) as client:
        sampler_of(client)
        series = client.get("/dashboard/data").json()["series"]
        assert client.get("/health/ready").status_code == 200
    assert len(series["t"]) == 1  # the sampler's first point of this run, nothing older
    assert any("ignoring" in r.getMessage() and NAME in r.getMessage() for r in caplog.records)
    assert load_history(tmp_path / NAME) is not None  # replaced by a good one at shutdown


def test_a_missing_history_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "edgecl.timeseries"):
        assert load_history(tmp_path / NAME) is None
    assert "no dashboard history" in caplog.text


def test_the_history_file_stays_small_and_is_written_at_most_every_save_interval(
    tmp_path: Path,
) -> None:
    series = TimeSeries(capacity=720, class_limit=10)
    figures = [f"figure_{i}" for i in range(30)]
    for t in range(5_000):  # far more points than the ring keeps
        values: dict[str, float | None] = {f: float(t * (i + 1)) for i, f in enumerate(figures)}
        series.append(1.7e9 + 5 * t, values, {f"class {c}": c / 10 for c in range(10)})
    size = save_history(tmp_path / NAME, series.columns(), 5.0)
    assert size < 150_000  # 720 points of 40 figures; under 1 MB an hour at one write per 10 min
    restored = load_history(tmp_path / NAME)
    assert restored is not None and restored["t"] == series.columns()["t"]
    assert not list(tmp_path.glob(".*.tmp"))  # replaced by a rename, nothing left behind

    path = tmp_path / "sampled.bin"
    source = build_runtime(make_settings(), durable=False)
    sampler = Sampler(source, Telemetry(), TimeSeries(10), 3600, path=path, save_every_s=3600)
    sampler.start()  # the thread takes one point, and is not due to save for an hour
    while not sampler.sampled:
        time.sleep(0.01)
    sampler.sample()
    assert not path.exists()
    sampler.stop()
    kept = load_history(path)
    assert kept is not None and len(kept["t"]) == 2


def test_end_to_end_latency_matches_the_http_histogram(tmp_path: Path) -> None:
    settings = make_settings(dashboard_interval_s=3600)
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        sampler_of(client)
        teach_and_predict(client, 5)
        sampler_of(client).sample()
        teach_and_predict(client, 3)
        sampler_of(client).sample()
        data: dict[str, Any] = client.get("/dashboard/data").json()
        metrics = client.get("/metrics").text
    values = data["series"]["values"]
    assert values["predict_http_requests"][-2:] == [5, 3]
    assert sum(values["predict_http_requests"]) == histogram(metrics, "/predict", "count") == 8
    assert sum(values["learn_http_requests"]) == histogram(metrics, "/learn", "count") == 2
    for route in ("predict", "learn"):
        p50, p95, top = (values[f"{route}_http_{k}_s"][-1] for k in ("p50", "p95", "max"))
        assert 0 < p50 <= p95 <= top
    # A whole request costs more than scoring its latents on the head.
    assert values["predict_http_p50_s"][-1] > values["predict_latency_s"][-1]
    assert histogram(metrics, "/predict", "sum") >= values["predict_http_max_s"][-1]


def test_a_probe_that_cannot_measure_says_what_it_needs(tmp_path: Path) -> None:
    settings = make_settings(probe_share=0.3, probe_every=10)
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        teach_and_predict(client, 0)
        probe = client.get("/stats").json()["probe"]
    assert probe["status"] == "too_few" and probe["min_items"] > probe["held"]
    assert f"needs at least {probe['min_items']} items" in probe["reason"]


def test_points_from_the_future_are_dropped_when_the_clock_went_back() -> None:
    """A board without a real-time clock may start with its clock behind the history's."""
    old = TimeSeries(capacity=10)
    for t in (100.0, 200.0, 300.0):
        old.append(t, {"rss_bytes": t}, {})
    fresh = TimeSeries(capacity=2)
    assert fresh.restore(old.columns(), until=250.0) == 2
    assert fresh.columns()["t"] == [100.0, 200.0]
    capped = TimeSeries(capacity=2)
    assert capped.restore(old.columns(), until=1e9) == 2  # the newest that fit
    assert capped.columns()["t"] == [200.0, 300.0]


def test_an_idle_daemon_does_not_rewrite_its_history(tmp_path: Path) -> None:
    path = tmp_path / "idle.bin"
    source = build_runtime(make_settings(), durable=False)
    sampler = Sampler(source, Telemetry(), TimeSeries(10), 0.01, path=path, save_every_s=0.0)
    sampler.start()  # due to save at every point, but nothing is learned or predicted
    while sampler.sampled < 20:
        time.sleep(0.01)
    assert not path.exists()
    sampler.stop()  # shutdown still keeps what there is
    assert path.exists()
