"""An API open to the network without a token is refused at start, with one sentence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")}
    config = tmp_path / "edgecl.yaml"
    config.write_text("log_level: info\n")
    return subprocess.run(
        [sys.executable, "-m", "service", "serve", "--data-dir", str(tmp_path / "d"),
         "--validate-config", str(config), *args],
        env={**base, "EDGECL_BACKBONE": "identity", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    "env",
    [{"EDGECL_HOST": "0.0.0.0"}, {"EDGECL_HOST": "0.0.0.0", "EDGECL_PUBLISHED_ADDR": "0.0.0.0"}],
)
def test_serving_beyond_loopback_without_a_token_is_refused(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = serve(tmp_path, **env)
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without an API token" in done.stderr
    assert "EDGECL_API_TOKEN" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "d").exists()  # nothing was created


@pytest.mark.parametrize(
    "env",
    [
        {"EDGECL_HOST": "127.0.0.1"},
        {"EDGECL_HOST": "0.0.0.0", "EDGECL_PUBLISHED_ADDR": "127.0.0.1"},  # compose's default
        {"EDGECL_HOST": "0.0.0.0", "EDGECL_API_TOKEN": "s3cret-token"},
        {"EDGECL_HOST": "0.0.0.0", "EDGECL_ALLOW_UNAUTHENTICATED": "true"},
    ],
)
def test_loopback_a_token_or_an_explicit_opt_out_is_accepted(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = serve(tmp_path, **env)
    assert done.returncode == 0, done.stderr
