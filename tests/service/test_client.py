"""`edgecl teach` and `edgecl predict` as a user runs them: real processes against a real
`edgecl serve`, on folders of image files (one sub-folder per label)."""

from __future__ import annotations

import io
import json
import os
import pty
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.net import free_port
from tests.service.daemon import Daemon, edgecl_env, identity_env

SIDE = 4  # the identity daemon's images: 4x4 grayscale, their pixels are the features
TOKEN = "client-test-token"
PHOTOS = Path(__file__).parents[2] / "edgecl/data/calibration"


def image(hot: int, seed: int, pad: int = 0) -> bytes:
    """A 4x4 PNG bright at pixel ``hot`` (its class) over faint noise; ``pad`` bytes of
    text make the file larger without changing its pixels."""
    px = np.random.default_rng(seed).integers(0, 30, (SIDE, SIDE)).astype(np.uint8)
    px.flat[hot] = 230
    info = PngImagePlugin.PngInfo()
    if pad:
        info.add_text("pad", secrets.token_hex(pad // 2))
    buf = io.BytesIO()
    Image.fromarray(px, mode="L").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def image_folder(root: Path, classes: dict[str, int], per_class: int, pad: int = 0) -> Path:
    """``root/<label>/<k>.png``, ``per_class`` images of each label."""
    for label, hot in classes.items():
        (root / label).mkdir(parents=True)
        for k in range(per_class):
            (root / label / f"{k}.png").write_bytes(image(hot, seed=hot * 100 + k, pad=pad))
    return root


def edgecl(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """The ``edgecl`` command as a user runs it (the token from ``EDGECL_API_TOKEN``)."""
    env = edgecl_env()
    if token is not None:
        env["EDGECL_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def stats(url: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/stats", headers={"authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One identity daemon for the module (each test teaches classes of its own pixels),
    with a token and small limits that the client must keep to: 6 samples per request
    and 1 MB bodies."""
    env = identity_env(
        SIDE * SIDE,
        api_token=TOKEN,
        max_samples_per_request="6",
        max_body_bytes="1000000",
        log_level="warning",
    )
    with Daemon(tmp_path_factory.mktemp("client") / "data", env) as d:
        yield d


@pytest.mark.slow
def test_teach_a_folder_predict_it_and_teach_it_again(daemon: Daemon, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "fruit", {"apple": 0, "banana": 1, "cherry": 2}, 6)
    (folder / "notes.txt").write_text("not an image")
    (folder / "apple" / ".hidden.png").write_bytes(b"macOS metadata")
    before = stats(daemon.url)

    out = edgecl("teach", str(folder), "--url", daemon.url)
    assert out.returncode == 0, out.stderr
    assert "sent 18 images: apple 6, banana 6, cherry 6" in out.stdout
    assert "the daemon took 18 new and skipped 0" in out.stdout
    assert f"skipping {folder / 'notes.txt'}: not an image file" in out.stderr
    # --batch 16 by default; the daemon takes 6 per request: the client halves its batches.
    assert "sending at most 4 images per request" in out.stderr, out.stderr
    assert "teach: 18/18 images" in out.stderr  # the last line of the progress
    after = stats(daemon.url)
    assert after["samples_learned"] == before["samples_learned"] + 18
    assert {c: after["classes"][c]["samples"] for c in ("apple", "banana", "cherry")} == {
        "apple": 6,
        "banana": 6,
        "cherry": 6,
    }

    # Again, as after an interruption: every image is acknowledged, none learned twice.
    again = edgecl("teach", str(folder), "--url", daemon.url)
    assert again.returncode == 0, again.stderr
    assert "the daemon took 0 new and skipped 18 it already had" in again.stdout
    now = stats(daemon.url)
    assert now["samples_learned"] == after["samples_learned"]
    assert now["model_version"] == after["model_version"]

    # One line per file: path, label, score, known/unknown; then accuracy per label.
    seen = edgecl("predict", str(folder), "--url", daemon.url, "--evaluate", "--top-k", "2")
    assert seen.returncode == 0, seen.stderr
    lines = seen.stdout.splitlines()
    rows = [line.split("\t") for line in lines[:18]]
    assert sorted(Path(r[0]).relative_to(folder).as_posix() for r in rows) == sorted(
        f"{label}/{k}.png" for label in ("apple", "banana", "cherry") for k in range(6)
    )
    for path, label, score, known, second in rows:
        assert label == Path(path).parent.name and 0 < float(score) <= 1
        assert known in ("known", "unknown") and ":" in second
    assert lines[18] == "accuracy 1.000 (18/18 images)"
    assert lines[19:] == [f"  {c}\t1.000 (6/6)" for c in ("apple", "banana", "cherry")]

    # One file, as JSON lines.
    one = edgecl("predict", str(folder / "cherry" / "3.png"), "--url", daemon.url, "--json")
    assert one.returncode == 0, one.stderr
    (reply,) = [json.loads(line) for line in one.stdout.splitlines()]
    assert reply["path"] == str(folder / "cherry" / "3.png") and reply["label"] == "cherry"
    assert set(reply) == {"path", "label", "score", "unknown", "novelty", "top_k"}


@pytest.mark.slow
def test_teach_files_with_one_label_and_the_token_flag(daemon: Daemon, tmp_path: Path) -> None:
    files = []
    for k in range(3):
        files.append(tmp_path / f"shot-{k}.png")
        files[-1].write_bytes(image(5, seed=500 + k))
    before = stats(daemon.url)

    # No token: the daemon's 401, with how to give one; nothing learned.
    refused = edgecl("teach", *map(str, files), "--label", "plum", "--url", daemon.url, token=None)
    assert refused.returncode == 1
    assert "missing or wrong bearer token" in refused.stderr
    assert "--token" in refused.stderr and "EDGECL_API_TOKEN" in refused.stderr
    assert stats(daemon.url)["samples_learned"] == before["samples_learned"]

    args = ["--label", "plum", "--url", daemon.url, "--token", TOKEN]
    out = edgecl("teach", *map(str, files), *args, token=None)
    assert out.returncode == 0, out.stderr
    assert "sent 3 images: plum 3" in out.stdout
    assert stats(daemon.url)["classes"]["plum"]["samples"] == 3


@pytest.mark.slow
def test_a_refused_image_is_named_and_a_rerun_after_the_fix_learns_the_rest(
    daemon: Daemon, tmp_path: Path
) -> None:
    folder = image_folder(tmp_path / "nuts", {"almond": 6, "walnut": 7}, 5)
    bad = folder / "walnut" / "2.png"
    bad.write_bytes(b"this is no PNG")
    before = stats(daemon.url)

    out = edgecl("teach", str(folder), "--url", daemon.url, "--batch", "4")
    assert out.returncode == 1
    # The daemon's own message, the file it names, every file of the refused request.
    assert "cannot decode image bytes" in out.stderr and "(HTTP 422)" in out.stderr
    assert f"is {bad}" in out.stderr
    assert "the request held 4 file(s):" in out.stderr
    assert "the 4 images before that request were sent" in out.stderr
    # Labels in turn (almond/0, walnut/0, almond/1, walnut/1): the first request passed.
    middle = stats(daemon.url)
    assert middle["samples_learned"] == before["samples_learned"] + 4

    bad.write_bytes(image(7, seed=999))
    fixed = edgecl("teach", str(folder), "--url", daemon.url, "--batch", "4")
    assert fixed.returncode == 0, fixed.stderr
    assert "the daemon took 6 new and skipped 4 it already had" in fixed.stdout
    assert stats(daemon.url)["samples_learned"] == before["samples_learned"] + 10


@pytest.mark.slow
def test_large_files_are_sent_in_requests_under_the_body_limit(
    daemon: Daemon, tmp_path: Path
) -> None:
    # 8 files of 300 kB: 2.4 MB in one request is over the daemon's 1 MB limit.
    folder = image_folder(tmp_path / "big", {"fig": 8, "kiwi": 9}, 4, pad=300_000)
    before = stats(daemon.url)
    out = edgecl("teach", str(folder), "--url", daemon.url)
    assert out.returncode == 0, out.stderr
    assert "sending at most" in out.stderr
    assert "the daemon took 8 new" in out.stdout
    assert stats(daemon.url)["samples_learned"] == before["samples_learned"] + 8

    # A single file over the limit cannot be split: named, with the limit to look at.
    huge = tmp_path / "huge" / "fig"
    huge.mkdir(parents=True)
    (huge / "0.png").write_bytes(image(8, seed=1, pad=3_000_000))
    out = edgecl("teach", str(tmp_path / "huge"), "--url", daemon.url)
    assert out.returncode == 1
    assert f"the request held 1 file(s): {huge / '0.png'}" in out.stderr
    assert "limit" in out.stderr or "EDGECL_MAX_BODY_BYTES" in out.stderr


@pytest.mark.slow
def test_the_progress_bar_redraws_on_a_terminal(daemon: Daemon, tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "pty", {"lime": 10}, 6)
    controller, terminal = pty.openpty()
    try:
        env = {**edgecl_env(), "EDGECL_API_TOKEN": TOKEN}
        process = subprocess.run(
            [sys.executable, "-m", "service", "predict", str(folder), "--url", daemon.url,
             "--batch", "2"],
            env=env, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=120,
        )  # fmt: skip
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal's other end is closed: all is read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert len(process.stdout.splitlines()) == 6
    text = shown.decode()
    assert "\r\x1b[K" in text and "predict [" in text and "/6 " in text and "ETA" in text
    assert "predict: 6/6 images" in text


def test_an_unreachable_daemon_is_one_sentence(tmp_path: Path) -> None:
    image_folder(tmp_path / "f", {"a": 0}, 2)
    url = f"http://127.0.0.1:{free_port()}"
    for command in ("teach", "predict"):
        out = edgecl(command, str(tmp_path / "f"), "--url", url)
        assert out.returncode == 1
        (line,) = out.stderr.splitlines()
        assert line.startswith(f"edgecl: error: cannot reach the edgecl daemon at {url}")
        assert "make run" in line


def test_nothing_to_send_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty" / "label").mkdir(parents=True)
    out = edgecl("teach", str(tmp_path / "empty"))
    assert out.returncode == 2
    assert out.stderr.startswith(f"edgecl: error: no images to send in {tmp_path / 'empty'}")
    # Images not in label folders cannot be taught without --label.
    (tmp_path / "loose.png").write_bytes(image(0, seed=0))
    out = edgecl("teach", str(tmp_path / "loose.png"))
    assert out.returncode == 2 and "give --label" in out.stderr
    out = edgecl("predict", str(tmp_path / "missing"))
    assert out.returncode == 2 and "no such file or folder" in out.stderr


@pytest.mark.slow
def test_teach_and_predict_photos_on_the_shipped_int8_backbone(tmp_path: Path) -> None:
    """Three scenes, two photos of each taught from a folder; the third photo of each (not
    taught) is recognised."""
    scenes = {"dog": "lomiri-friends", "pagoda": "sklearn-china", "brushes": "lomiri-picture-1a"}
    for label, name in scenes.items():
        for part, crops in (("taught", (0, 1)), ("new", (2,))):
            (tmp_path / part / label).mkdir(parents=True)
            for k in crops:
                shutil.copy(PHOTOS / f"photo-{name}-{k}.jpg", tmp_path / part / label)
    env = edgecl_env(api_token=TOKEN, probe_share="0", log_level="warning")
    with Daemon(tmp_path / "data", env) as daemon:
        out = edgecl("teach", str(tmp_path / "taught"), "--url", daemon.url)
        assert out.returncode == 0, out.stderr
        assert "sent 6 images: brushes 2, dog 2, pagoda 2" in out.stdout
        assert "it knows 3 classes" in out.stdout

        for part in ("taught", "new"):
            out = edgecl("predict", str(tmp_path / part), "--url", daemon.url, "--json",
                         "--evaluate")  # fmt: skip
            assert out.returncode == 0, out.stderr
            *rows, summary = [json.loads(line) for line in out.stdout.splitlines()]
            assert [r["label"] for r in rows] == [r["truth"] for r in rows], rows
            assert summary["accuracy"] == 1.0
