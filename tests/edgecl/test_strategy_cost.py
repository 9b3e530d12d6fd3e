"""A smoke run of benchmarks/strategy_cost.py with a short warm-up: its section written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/strategy_cost.py", "--n", "30", "--budget", "0.2",
         "--output", str(tmp_path / "BENCHMARKS.md"), *args],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_short_warm_up_still_shows_every_class(tmp_path: Path) -> None:
    # 10 warm-up samples: the timed stream used to bring a class the heads had not seen.
    done = run(tmp_path, "--warmup", "10", "--strategies", "ncm", "slda")
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "BENCHMARKS.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("|")[1].strip() for row in rows] == ["`ncm`", "`slda`"]
    for row in rows:
        assert float(row.split("|")[2]) > 0  # learn_one per second


def test_a_warm_up_shorter_than_the_classes_is_refused(tmp_path: Path) -> None:
    done = run(tmp_path, "--warmup", "5", "--strategies", "ncm")
    assert done.returncode == 2
    assert "--warmup must be at least 10" in done.stderr
    assert not (tmp_path / "BENCHMARKS.md").exists()
