"""Headless Chromium opens /dashboard of a running daemon and shows what /stats reports.

The daemon is a real `edgecl serve` process (identity backbone, 4-d features) that learned
several classes. Chromium renders the page (`--dump-dom` after a virtual-time budget that
lets it fetch and draw), and screenshots are saved: to ``$EDGECL_ARTIFACTS_DIR`` when set,
else to the test's tmp dir; their paths are logged and recorded as junit properties. The
page writes what a driver would measure (its scroll width, each chart's width, the first
point it holds) as ``data-`` attributes, so the dumped DOM is enough to check them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.cdp import Browser
from tests.service.daemon import Daemon, edgecl_env

log = logging.getLogger(__name__)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CLASSES = ["t-shirt", "ankle boot", "<b>bag</b>", "sneaker"]  # one would be markup if unescaped
WINDOW = (1440, 1600)
WIDE, NARROW = (1400, 1800), (420, 2600)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)"
    ),
]


class DashboardDom(HTMLParser):
    """The parts of the rendered page the test checks."""

    def __init__(self) -> None:
        super().__init__()
        self.state: str | None = None
        self.charts = 0
        self.rows: dict[str, dict[str, str]] = {}
        self.markup_in_labels = False
        self.kpis: list[str] = []  # the id of each KPI tile, in page order
        self.probe_value = ""  # the probe tile's figure as shown
        self._in_probe_value = False
        self._row: str | None = None
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "html":
            self.state = a.get("data-state")
        if tag == "div" and "uplot" in classes:
            self.charts += 1
        if tag == "div" and "kpi" in classes:
            self.kpis.append(a.get("id", ""))
        if tag == "div" and "value" in classes and self.kpis[-1:] == ["kpi-probe"]:
            self._in_probe_value = True
        if tag == "tr" and "data-class" in a:
            self._row = a["data-class"]
            self.rows[self._row] = {
                "samples_attr": a["data-samples"],
                "acc_attr": a["data-accuracy"],
            }
        if self._row is not None:
            if tag == "b":
                self.markup_in_labels = True
            for name in ("label", "samples", "accuracy"):
                if name in classes:
                    self._cell = name

    def handle_endtag(self, tag: str) -> None:
        if tag == "div":
            self._in_probe_value = False
        if tag == "tr":
            self._row = None
        if tag in ("td", "span"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_probe_value:
            self.probe_value += data
        if self._row is not None and self._cell is not None:
            cells = self.rows[self._row]
            cells[self._cell] = cells.get(self._cell, "") + data


def chromium(
    profile: Path, budget_ms: int, *args: str, window: tuple[int, int] = WINDOW
) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={window[0]},{window[1]}",
        f"--virtual-time-budget={budget_ms}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def teach(url: str, rounds: int = 30) -> None:
    """Several classes, noisy enough that accuracies differ, through HTTP."""
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32) * 2.0
    for _ in range(rounds):
        y = rng.integers(0, len(CLASSES), 16)
        x = centers[y] + rng.normal(0, 0.9, (16, 4))
        samples = [
            {"features": xi.tolist(), "label": CLASSES[i]} for xi, i in zip(x, y, strict=True)
        ]
        response = httpx.post(f"{url}/learn", json={"samples": samples}, timeout=30)
        assert response.status_code == 200, response.text
    queries = [{"features": s["features"]} for s in samples[:4]]
    assert httpx.post(f"{url}/predict", json={"samples": queries}, timeout=30).is_success


def wait_for_points(url: str, points: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        data = httpx.get(f"{url}/dashboard/data", timeout=30).json()
        if len(data["series"]["t"]) >= points:
            return
        time.sleep(0.2)
    raise AssertionError(f"the time series did not reach {points} points")


@pytest.fixture
def daemon_env() -> dict[str, str]:
    return edgecl_env(
        backbone="identity",
        latent_dim="4",
        strategy__name="slda",
        store__kind="class_balanced",
        log_level="warning",
        wal_fsync="group",
        dashboard_interval_s="0.2",
        probe_share="0.1",
        probe_every="50",
        # Every read after learning re-scores the probe once, then reuses that score: the
        # page and /stats, read apart, show the same figure.
        probe_rescore_s="0.01",
    )


def test_dashboard_shows_what_stats_reports(
    tmp_path: Path, daemon_env: dict[str, str], record_property: Callable[[str, object], None]
) -> None:
    with Daemon(tmp_path / "data", daemon_env) as daemon:
        teach(daemon.url)
        wait_for_points(daemon.url, 3)
        stats: dict[str, Any] = httpx.get(f"{daemon.url}/stats", timeout=30).json()
        page = f"{daemon.url}/dashboard"

        dom = DashboardDom()
        for budget in (5_000, 15_000, 30_000):
            out = chromium(tmp_path / "profile-dom", budget, "--dump-dom", page)
            dom = DashboardDom()
            dom.feed(out.stdout)
            if dom.state == "ready" and dom.charts == 5:
                break
        assert dom.state == "ready", f"page never got ready:\n{out.stderr[-2000:]}"
        assert dom.charts == 5

        artifacts = Path(os.environ.get("EDGECL_ARTIFACTS_DIR") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "dashboard.png"
        out = chromium(tmp_path / "profile-shot", 8_000, f"--screenshot={shot}", page)
        assert shot.is_file(), out.stderr[-2000:]
        log.warning("dashboard screenshot: %s", shot)
        record_property("screenshot", str(shot))

    # The figure that tells the truth about forgetting comes first: the probe's accuracy.
    assert dom.kpis[0] == "kpi-probe", dom.kpis
    assert stats["probe"]["status"] == "ok" and stats["probe"]["accuracy"] is not None
    assert float(dom.probe_value.rstrip("%")) / 100 == pytest.approx(
        stats["probe"]["accuracy"], abs=0.0006
    )
    assert set(dom.rows) == set(stats["classes"]) == set(CLASSES)
    assert not dom.markup_in_labels  # labels are text, never HTML
    for label, want in stats["classes"].items():
        row = dom.rows[label]
        assert row["label"] == label
        assert int(row["samples_attr"]) == want["samples"]
        assert int(row["samples"].replace(",", "")) == want["samples"]
        assert float(row["acc_attr"]) == pytest.approx(want["accuracy"], abs=1e-12)
        shown = float(row["accuracy"].rstrip("%")) / 100
        assert shown == pytest.approx(want["accuracy"], abs=0.0006), (label, row)
    with Image.open(shot) as image:
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 100  # drawn, not a blank page


class ById(HTMLParser):
    """Attributes and text of every element with an id (text of nested ones included)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "wbr"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.root: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.root = a
        if tag in self.VOID:
            return
        self._open.append(a.get("id"))
        if a.get("id"):
            self.attrs[a["id"]], self.text[a["id"]] = a, ""

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for id_ in filter(None, self._open):
            self.text[id_] += data


@dataclass
class View:
    dom: ById
    scroll_width: int
    inner_width: int
    charts: dict[str, list[float]]  # id -> [left, right] of its drawing, in CSS px
    shot: Path


MEASURE = """({
  scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
  charts: Object.fromEntries([...document.querySelectorAll(".chart")].map((c) => {
    const plot = c.querySelector(".uplot");
    const box = plot ? plot.getBoundingClientRect() : { left: -1, right: -1 };
    return [c.id, [box.left, box.right]];
  })),
  html: document.documentElement.outerHTML,
})"""


def look(url: str, tmp_path: Path, name: str, window: tuple[int, int], points: int) -> View:
    """Open the page in a viewport of exactly ``window`` (headless windows cannot be under
    500 px wide, so the viewport is emulated), wait until its five charts hold ``points``,
    measure it and save a screenshot."""
    assert CHROMIUM is not None
    artifacts = Path(os.environ.get("EDGECL_ARTIFACTS_DIR") or tmp_path)
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / name
    with Browser(CHROMIUM, tmp_path / f"profile-{name}") as browser:
        browser.open(f"{url}/dashboard", *window)
        root = "document.documentElement"  # null while the navigation starts
        browser.wait_for(
            f"{root} !== null && {root}.dataset.state === 'ready'"
            f" && Number({root}.dataset.points) >= {points}"
            " && document.querySelectorAll('.uplot').length === 5"
        )
        time.sleep(1.0)  # let the charts settle to their panels' widths
        seen = browser.evaluate(MEASURE)
        browser.screenshot(shot)
    with Image.open(shot) as image:
        assert image.size == window
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 100  # drawn, not a blank page
    log.warning("dashboard screenshot: %s", shot)
    return View(ById(seen["html"]), seen["scroll"], seen["inner"], seen["charts"], shot)


def predict(url: str, n: int) -> None:
    query = {"samples": [{"features": [2.0, 0.1, 0.0, 0.3]}]}
    for _ in range(n):
        assert httpx.post(f"{url}/predict", json=query, timeout=30).is_success


def series(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/dashboard/data", timeout=30).json()["series"]
    return data


def wait_for(url: str, ok: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ok(data := series(url)):
            return data
        time.sleep(0.2)
    raise AssertionError(f"the time series never {what}")


def has_latency(s: dict[str, Any]) -> bool:
    return any(v is not None for v in s["values"].get("predict_http_p50_s", []))


def test_dashboard_at_1400_and_420_px_across_a_restart(
    tmp_path: Path, daemon_env: dict[str, str], record_property: Callable[[str, object], None]
) -> None:
    """Memory and the store's budget on separate charts, the probe saying why it cannot
    measure yet, end-to-end latency of real requests, a page that fits 420 px, and the
    history of the first run still there after a restart."""
    data_dir = tmp_path / "data"
    with Daemon(data_dir, daemon_env) as daemon:
        teach(daemon.url, rounds=2)  # 32 samples: the probe holds too few to measure
        predict(daemon.url, 5)
        before = wait_for(daemon.url, has_latency, "showed /predict latency")
        before = wait_for(daemon.url, lambda s: len(s["t"]) > len(before["t"]), "moved on")
    assert (data_dir / "dashboard-history.bin").is_file()  # written at shutdown

    with Daemon(data_dir, daemon_env) as daemon:
        n = len(before["t"])
        predict(daemon.url, 5)
        after = wait_for(
            daemon.url,
            lambda s: sum(filter(None, s["values"]["predict_http_requests"][n:])) == 5,
            "counted the requests after the restart",
        )
        after = wait_for(daemon.url, lambda s: len(s["t"]) >= len(after["t"]) + 2, "moved on")
        stats: dict[str, Any] = httpx.get(f"{daemon.url}/stats", timeout=30).json()
        wide_view = look(daemon.url, tmp_path, "dash-1400.png", WIDE, n + 3)
        narrow_view = look(daemon.url, tmp_path, "dash-420.png", NARROW, n + 3)
        for view in (wide_view, narrow_view):
            record_property(view.shot.name, str(view.shot))
    wide = wide_view.dom

    # History: every point of the first run is still served, and drawn, after the restart.
    assert after["t"][:n] == before["t"]
    assert float(wide.root["data-first-t"]) == before["t"][0]
    assert int(wide.root["data-points"]) > n

    # Process memory and the store's budget: two charts, each with its own axis.
    rss, store = wide.attrs["chart-rss"], wide.attrs["chart-store"]
    assert rss["data-series"] == "resident (RSS)" and rss["data-scale"] == "rss"
    assert "budget" in store["data-series"].split("|") and store["data-scale"] == "store"
    budget = stats["store"]["max_bytes"]
    assert float(store["data-ymax"]) == pytest.approx(budget * 1.1)
    assert float(rss["data-ymax"]) >= max(v for v in after["values"]["rss_bytes"] if v)

    # The probe cannot measure 32 samples' worth: the page gives /stats's reason, and
    # forgetting says what it needs.
    probe = stats["probe"]
    assert probe["status"] == "too_few"
    assert wide.text["probe-reason"] == probe["reason"]
    assert wide.text["kpi-probe"].count("–") == 1  # no accuracy figure from too few items
    for label in stats["classes"]:  # nor per class, though /stats scores what it holds
        assert wide.text[f"probe-accuracy-{label}"] == "–"
    assert f"needs {probe['min_items']} held items" in wide.text["kpi-forgetting"]
    assert "first sample counts as a miss" in wide.text["prequential-note"]

    # End-to-end latency of the real /predict requests, not the head's fraction of it.
    shown = float(wide.attrs["predict-latency"].get("data-ms", "0"))
    latest = [v for v in after["values"]["predict_http_p50_s"] if v is not None][-1]
    assert shown == pytest.approx(latest * 1000) and shown > 0
    assert "predict: head only" in wide.attrs["chart-latency"]["data-series"].split("|")

    # 420 px: nothing wider than the window, every chart drawn within it and narrower
    # than at 1400 px (they follow their panels).
    assert narrow_view.inner_width == NARROW[0] and wide_view.inner_width == WIDE[0]
    assert narrow_view.scroll_width <= NARROW[0], narrow_view.scroll_width
    assert wide_view.scroll_width <= WIDE[0], wide_view.scroll_width
    for chart, (left, right) in narrow_view.charts.items():
        assert 0 <= left < right <= NARROW[0], (chart, left, right)
        wide_left, wide_right = wide_view.charts[chart]
        assert wide_right - wide_left > right - left, chart
