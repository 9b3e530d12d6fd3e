"""The daemon's fleet client and `edgecl fleet server` never let Flower phone home."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("flwr")

CHECK = """
import {module}
from flwr.supercore import telemetry
print(telemetry.FLWR_TELEMETRY_ENABLED)
"""


@pytest.mark.parametrize("module", ["service.fleet.client", "service.fleet.server"])
def test_flower_telemetry_is_off_unless_asked_for(module: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLWR_TELEMETRY_ENABLED"}
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert out.strip() == "0"
    opted_in = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)],
        env={**env, "FLWR_TELEMETRY_ENABLED": "1"}, capture_output=True, text=True,
        check=True, timeout=60,
    ).stdout  # fmt: skip
    assert opted_in.strip() == "1"
