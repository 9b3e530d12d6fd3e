"""A smoke run of benchmarks/fleet.py: tiny latents, two devices, one round of each part,
its sections written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")

pytestmark = pytest.mark.slow


def test_fleet_benchmark_writes_its_sections(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## Another section\n\nkept\n")
    subprocess.run(
        [
            sys.executable, "-m", "benchmarks.fleet", "--part", "cost", "--devices", "2",
            "--dim", "8", "--classes", "4", "--cost-rounds", "1", "--per-round", "10",
            "--strategies", "slda", "latent_replay", "--out", str(out),
        ],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    text = out.read_text()
    assert "## Another section\n\nkept" in text
    section = text.split("## Fleet: bytes per device per round and round time")[1]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == ["`slda`", "`latent_replay`"]
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == "2"
        assert float(cells[2].split()[0].replace(",", "")) > 0  # bytes sent
        assert int(cells[6]) < 1024  # an idle round sends no arrays
