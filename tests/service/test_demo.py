"""`edgecl demo` as a user runs it: says what it will do, then a line per experience with
the time elapsed and left; on a terminal also a progress bar on stderr."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from tests.service.daemon import edgecl_env

LINE = re.compile(
    r"experience (\d)/5: learned [a-z-]+, [a-z-]+ \((\d+) samples, \d+ samples/s\); "
    r"accuracy on (\d+) seen classes: (\d\.\d{3}) \[(\d+:\d\d) elapsed(, about \d+:\d\d left)?\]"
)


def test_quick_demo_on_the_int8_backbone(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--quick", "--data-dir", str(tmp_path)],
        env=edgecl_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    plan, *lines = out.stdout.splitlines()
    assert plan.startswith("edgecl demo: learns Fashion-MNIST two classes at a time")
    assert "200 training images" in plan and "250 images in all; about " in plan
    found = [LINE.fullmatch(line) for line in lines]
    assert all(found) and len(found) == 5, out.stdout
    for k, m in enumerate(found, start=1):
        assert m is not None
        assert (int(m[1]), int(m[2]), int(m[3])) == (k, 40, 2 * k)
        assert (m[6] is None) == (k == 5)  # the time left, until the end
    assert found[-1] is not None and float(found[-1][4]) > 0.5
    assert "elapsed" not in out.stderr  # no bar when stderr is not a terminal


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "service", "demo", "--backbone", "pixels", "--limit", "8"],
        env=edgecl_env(), stdout=subprocess.PIPE, stderr=terminal, text=True,
    ) as process:  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        stdout = process.stdout.read() if process.stdout else ""
        assert process.wait(60) == 0
    os.close(controller)
    bar = shown.decode()
    assert re.search(r"\rexperience 1/5 \[[#.]{30}\] \d+/100 images, \d+:\d\d elapsed", bar)
    assert "100/100 images" in bar
    assert len([line for line in stdout.splitlines() if LINE.fullmatch(line)]) == 5
