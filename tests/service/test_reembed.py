"""A daemon whose store keeps raw images (encoding lz4) survives a backbone change: it
refuses to start on the new backbone, `edgecl store reembed` moves the checkpoint and the
WAL's images to it, and the daemon then answers as before."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from edgecl.backbones.onnx import sha256_file
from edgecl.datasets import FASHION_CLASSES, load_fixture
from tests.service.daemon import Daemon
from tests.service.test_serve_fashion import png

FIRST, THEN = (1, 8), (0, 7)
PER_CLASS = 20

CONFIG = """
strategy: {name: ncm}
store: {kind: class_balanced, encoding: lz4, max_bytes: 8388608}
probe_share: 0
checkpoint_on_stop: true
log_level: warning
"""


def backbone_folder(manifest: Path, root: Path, model: str) -> Path:
    """A folder of builds whose pooled build runs ``model`` (int8 or the fp32 original)."""
    build = root / manifest.parent.name
    build.mkdir(parents=True)
    shutil.copy(manifest.parent / model, build / model)
    shutil.copy(manifest.parent / "selfcheck.npz", build / "selfcheck.npz")
    spec = json.loads(manifest.read_text())
    path = build / model
    spec["model"] = {"file": model, "sha256": sha256_file(path), "bytes": path.stat().st_size}
    (build / "manifest.json").write_text(json.dumps(spec))
    return root


def learn(url: str, images: np.ndarray[Any, Any], labels: np.ndarray[Any, Any], tag: str) -> None:
    samples = [
        {
            "image": base64.b64encode(png(img)).decode(),
            "label": FASHION_CLASSES[int(y)],
            "id": f"{tag}-{i}",
        }
        for i, (img, y) in enumerate(zip(images, labels, strict=True))
    ]
    response = httpx.post(f"{url}/learn", json={"samples": samples}, timeout=120)
    assert response.status_code == 200, response.text


def pick(classes: tuple[int, ...]) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    train, _ = load_fixture()
    idx = np.concatenate([np.flatnonzero(train.labels == c)[:PER_CLASS] for c in classes])
    return train.images[idx], train.labels[idx]


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_store_reembed_moves_a_daemon_to_a_new_backbone(
    tmp_path: Path, backbone_manifest: Path
) -> None:
    old = backbone_folder(backbone_manifest, tmp_path / "old", "model.int8.onnx")
    new = backbone_folder(backbone_manifest, tmp_path / "new", "model.fp32.onnx")
    config = tmp_path / "edgecl.yaml"
    config.write_text(CONFIG)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECL_")}
    old_env = {**env, "EDGECL_BACKBONE_DIR": str(old)}
    new_env = {**env, "EDGECL_BACKBONE_DIR": str(new)}
    args = ["--config", str(config), "--data-dir", str(data)]

    with Daemon(data, old_env, ["--config", str(config)]) as daemon:
        learn(daemon.url, *pick(FIRST), "first")
        vector = {"samples": [{"features": [0.0] * 1280, "label": "x"}]}
        response = httpx.post(f"{daemon.url}/learn", json=vector, timeout=30)
        assert response.status_code == 422 and "raw images" in response.text
    # SIGTERM checkpointed the first classes; the next ones stay in the WAL only.
    with Daemon(data, old_env, ["--config", str(config)]) as daemon:
        learn(daemon.url, *pick(THEN), "then")
        busy = cli(["store", "reembed", *args], new_env)
        assert busy.returncode == 2 and "in use by another edgecl process" in busy.stderr
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(10)

    with pytest.raises(RuntimeError, match="store reembed"):
        with Daemon(data, new_env, ["--config", str(config)], ready_timeout=60):
            pass

    done = cli(["store", "reembed", *args], new_env)
    assert done.returncode == 0, done.stderr
    assert f"re-embedded {2 * PER_CLASS} stored images and {2 * PER_CLASS} WAL samples" in (
        done.stdout
    )
    info = json.loads(cli(["store", "info", *args], new_env).stdout)
    assert str(new) in info["backbone"] and info["store"]["holds"] == "inputs"
    assert info["store"]["items"] == 4 * PER_CLASS and len(info["classes"]) == 4

    with Daemon(data, new_env, ["--config", str(config)]) as daemon:
        stats = httpx.get(f"{daemon.url}/stats").json()
        assert stats["samples_learned"] == 4 * PER_CLASS and len(stats["classes"]) == 4
        _, test = load_fixture()
        held = test.classes([*FIRST, *THEN])
        body = {"samples": [{"image": base64.b64encode(png(i)).decode()} for i in held.images]}
        response = httpx.post(f"{daemon.url}/predict", json=body, timeout=120)
        assert response.status_code == 200, response.text
        predicted = [p["label"] for p in response.json()["predictions"]]
        truth = [FASHION_CLASSES[int(y)] for y in held.labels]
        assert float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])) > 0.8


@pytest.mark.parametrize("action", ["reembed", "info"])
def test_store_commands_on_an_empty_data_dir_exit_with_a_sentence(
    tmp_path: Path, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.__main__ import main

    assert main(["store", action, "--data-dir", str(tmp_path / "none")]) == 2
    assert f"{tmp_path / 'none'} holds no" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()  # nothing was created (nor a backbone built)
