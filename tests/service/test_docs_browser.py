"""Headless Chromium opens /docs of a running daemon with every other host unreachable (as
on a device without internet) and Swagger UI draws the API's operations; a screenshot is
saved to ``$EDGECL_ARTIFACTS_DIR`` when set, else to the test's tmp dir."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tests.service.daemon import Daemon, edgecl_env
from tests.service.test_dashboard_browser import CHROMIUM, WINDOW, chromium

log = logging.getLogger(__name__)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)"
    ),
]
#: Every name resolves to nothing but the daemon's own address.
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"


def test_docs_draw_the_api_offline(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    env = edgecl_env(backbone="identity", latent_dim="4", log_level="warning")
    with Daemon(tmp_path / "data", env) as daemon:
        page = f"{daemon.url}/docs"
        dom = ""
        for budget in (5_000, 15_000, 30_000):
            out = chromium(tmp_path / "profile-dom", budget, OFFLINE, "--dump-dom", page)
            dom = out.stdout
            if "opblock-summary-path" in dom:
                break
        paths = set(re.findall(r'data-path="([^"]+)"', dom))
        assert {"/learn", "/predict", "/stats"} <= paths, out.stderr[-2000:]

        artifacts = Path(os.environ.get("EDGECL_ARTIFACTS_DIR") or tmp_path)
        artifacts.mkdir(parents=True, exist_ok=True)
        shot = artifacts / "docs.png"
        out = chromium(tmp_path / "profile-shot", 8_000, OFFLINE, f"--screenshot={shot}", page)
        assert shot.is_file(), out.stderr[-2000:]
        log.warning("docs screenshot: %s", shot)
        record_property("screenshot", str(shot))
    with Image.open(shot) as image:
        assert image.size == WINDOW
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 100  # drawn, not a blank page
