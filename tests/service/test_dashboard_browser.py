"""Headless Chromium opens /dashboard of a running daemon and shows what /stats reports.

The daemon is a real `edgecl serve` process (identity backbone, 4-d features) that learned
several classes. Chromium renders the page (`--dump-dom` after a virtual-time budget that
lets it fetch and draw), and a screenshot is saved: to ``$EDGECL_ARTIFACTS_DIR`` when set,
else to the test's tmp dir; its path is logged and recorded as a junit property.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service.daemon import Daemon, edgecl_env

log = logging.getLogger(__name__)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CLASSES = ["t-shirt", "ankle boot", "<b>bag</b>", "sneaker"]  # one would be markup if unescaped
WINDOW = (1440, 1600)

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


def chromium(profile: Path, budget_ms: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--virtual-time-budget={budget_ms}", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def teach(url: str) -> None:
    """Several classes, noisy enough that accuracies differ, through HTTP."""
    rng = np.random.default_rng(0)
    centers = np.eye(4, dtype=np.float32) * 2.0
    for _ in range(30):
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
            if dom.state == "ready" and dom.charts == 4:
                break
        assert dom.state == "ready", f"page never got ready:\n{out.stderr[-2000:]}"
        assert dom.charts == 4

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
