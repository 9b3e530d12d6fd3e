"""The README's quick start, followed literally on a fresh copy of the repository.

`make run` builds a fresh `.venv-run` (from the package index) and serves; then every shell
block of the README marked ``<!-- quickstart:NAME -->`` runs as written, in README order,
in a folder holding the photos it names (real photos, several hundred KB). Only addresses
differ: ``curl`` and the mosquitto clients are wrapped to reach this test's free ports, and
``curl`` to fail on an HTTP error. `make test`, the second command, is what CI runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests import mosquitto
from tests.net import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PHOTOS = ROOT / "edgecl" / "data" / "calibration"
BLOCK = re.compile(r"<!-- quickstart:(\w+) -->\n```sh\n(.*?)```", re.S)
MISSING = [t for t in ("make", "curl", "mosquitto_pub", "mosquitto_sub") if not shutil.which(t)]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING) or not mosquitto.available(),
        reason=f"needs {MISSING or ['mosquitto']} (.ci/run installs them)",
    ),
]

# Addresses only: the README talks to localhost:8080 and the default MQTT port.
SHIMS = """\
set -euo pipefail
curl() { command curl --fail-with-body -sS "${@//localhost:8080/127.0.0.1:$EDGECL_PORT}"; echo; }
mosquitto_pub() { command mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" "$@"; }
mosquitto_sub() { command mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" "$@"; }
"""


def quick_start_commands() -> list[str]:
    """The commands of the README's first shell block, comments dropped."""
    first = re.search(r"```sh\n(.*?)```", README.read_text(), re.S)
    assert first, "the README has no shell block"
    lines = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    return [line for line in lines if line]


def fresh_copy(dest: Path) -> Path:
    """The repository's files as a clone has them (no venvs, no data dirs)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def photo(src: str, dest: Path, size: tuple[int, int], **save: Any) -> Path:
    """A real photo, enlarged to ``size`` so that it weighs what a camera's does."""
    with Image.open(PHOTOS / src) as im:
        im.convert("RGB").resize(size, Image.Resampling.LANCZOS).save(dest, **save)
    return dest


def workdir(root: Path) -> Path:
    """The user's folder: the photos the README names, and a folder of labelled photos."""
    work = root / "work"
    work.mkdir()
    photo("photo-coffee.jpg", work / "mug.jpg", (1600, 1200), quality=95)
    photo("photo-lomiri-picos-0.jpg", work / "pen.png", (800, 600))
    photo("photo-lomiri-life-1.jpg", work / "what.jpg", (1600, 1200), quality=95)
    for label, stem in (("mug", "photo-lomiri-sunset"), ("pen", "photo-lomiri-seeding")):
        (work / "photos" / label).mkdir(parents=True)
        for i in range(3):
            photo(f"{stem}-{i}.jpg", work / "photos" / label / f"{i}.jpg", (640, 480))
    return work


def start(repo: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            ["make", "run"], cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"`make run` exited {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health/ready", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"`make run` not ready in {timeout} s:\n{log.read_text()}")


def answers(out: str) -> list[dict[str, object]]:
    """Every JSON object printed on a line of its own."""
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


def test_the_readme_quick_start_works_as_written(tmp_path: Path) -> None:
    assert quick_start_commands()[:2] == ["make run", "make test"]
    blocks = dict(BLOCK.findall(README.read_text()))
    assert {"http", "mqtt", "client"} <= set(blocks), f"quick-start blocks found: {sorted(blocks)}"
    repo = fresh_copy(tmp_path / "edgecl")
    work = workdir(tmp_path)
    assert (work / "pen.png").stat().st_size > 300_000  # past what one argument may hold
    port = free_port()
    with mosquitto.Mosquitto(tmp_path / "broker") as broker:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")},
            "EDGECL_PORT": str(port), "EDGECL_MQTT_HOST": "localhost",
            "EDGECL_MQTT_PORT": str(broker.port), "EDGECL_MQTT_DEVICE_ID": "cam1",
            "MQTT_PORT": str(broker.port), "EDGECL_URL": f"http://127.0.0.1:{port}",
            # What `export PATH="$PWD/.venv-run/bin:$PATH"` in the checkout does.
            "PATH": f"{repo / '.venv-run' / 'bin'}:{os.environ['PATH']}",
        }  # fmt: skip
        env.pop("VIRTUAL_ENV", None)
        log = tmp_path / "make-run.log"
        proc = start(repo, env, log)
        try:
            wait_ready(proc, f"http://127.0.0.1:{port}", log, timeout=900)
            outputs = {}
            for name, script in BLOCK.findall(README.read_text()):
                run = subprocess.run(
                    ["bash", "-c", SHIMS + script], cwd=work, env=env,
                    capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                assert run.returncode == 0, f"README block {name!r} failed:\n{run.stderr}"
                outputs[name] = run.stdout
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    http = answers(outputs["http"])
    learned = [a for a in http if "accepted" in a]
    assert [a["accepted"] for a in learned] == [1, 1]
    assert learned[-1]["classes"] == 2  # mug and pen
    predicted = [a for a in http if "predictions" in a]
    assert predicted[0]["predictions"][0]["label"] in {"mug", "pen"}  # type: ignore[index]
    assert any("samples_learned" in json.dumps(a) for a in http)
    mqtt = outputs["mqtt"]
    assert '"predictions"' in mqtt and "online" in mqtt
    assert "ready" in log.read_text() and "edgecl/cam1/" in log.read_text()
    client = outputs["client"]
    assert "photos/mug/0.jpg" in client and "accuracy" in client.lower()
