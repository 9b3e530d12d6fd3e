"""The daemon on the real int8 backbone: learn Fashion-MNIST classes over HTTP, two then two
more, and label held-out images of all four."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import msgpack
import numpy as np
import pytest
from PIL import Image

from edgecl.datasets import FASHION_CLASSES, load_fixture
from tests.service.daemon import Daemon, edgecl_env

FIRST, THEN = (1, 8), (0, 7)  # trouser, bag; then t-shirt, sneaker
PER_CLASS = 100


def png(image: np.ndarray[Any, Any]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def learn_classes(url: str, images: np.ndarray[Any, Any], labels: np.ndarray[Any, Any]) -> int:
    version = 0
    for start in range(0, len(images), 50):
        samples = [
            {
                "image": base64.b64encode(png(img)).decode(),
                "label": FASHION_CLASSES[int(y)],
                "id": f"train-{start + i}-{int(y)}",
            }
            for i, (img, y) in enumerate(
                zip(images[start : start + 50], labels[start : start + 50], strict=True)
            )
        ]
        response = httpx.post(f"{url}/learn", json={"samples": samples}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] > version
        version = response.json()["model_version"]
    return version


@pytest.mark.slow
def test_daemon_learns_fashion_mnist_on_the_int8_backbone(
    tmp_path: Path, built_backbone: Path
) -> None:
    train, test = load_fixture()
    # probe_share 0: the test counts learned samples, so hold none back.
    env = edgecl_env(backbone_dir=str(built_backbone), log_level="warning", probe_share="0")
    with Daemon(tmp_path / "data", env) as daemon:
        url = daemon.url
        rng = np.random.default_rng(0)
        for classes in (FIRST, THEN):
            part = train.classes(list(classes))
            picked = np.concatenate(
                [rng.choice(np.flatnonzero(part.labels == c), PER_CLASS, replace=False)
                 for c in classes]
            )  # fmt: skip
            rng.shuffle(picked)
            learn_classes(url, part.images[picked], part.labels[picked])

        # A multipart upload as `curl -F file=@bag.png -F label=bag` sends it.
        bag = train.images[np.flatnonzero(train.labels == 8)[-1]]
        files = {"file": ("bag.png", png(bag), "image/png")}
        response = httpx.post(f"{url}/learn", files=files, data={"label": "bag"}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1 and response.json()["classes"] == 4
        response = httpx.post(f"{url}/predict", files=files, timeout=60)
        assert response.json()["predictions"][0]["label"] == "bag"

        # Held-out images of all four classes, as raw bytes in msgpack bodies.
        held = test.classes([*FIRST, *THEN])
        predicted = []
        for start in range(0, len(held.images), 50):
            body = {"samples": [{"image": png(img)} for img in held.images[start : start + 50]]}
            response = httpx.post(
                f"{url}/predict",
                content=msgpack.packb(body),
                headers={"content-type": "application/msgpack", "accept": "application/msgpack"},
                timeout=120,
            )
            assert response.status_code == 200, response.text
            predicted += [p["label"] for p in msgpack.unpackb(response.content)["predictions"]]
        truth = [FASHION_CLASSES[int(y)] for y in held.labels]
        accuracy = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
        assert accuracy > 0.85, accuracy

        stats = httpx.get(f"{url}/stats").json()
        assert stats["strategy"]["name"] == "slda"
        assert set(stats["classes"]) == {FASHION_CLASSES[c] for c in (*FIRST, *THEN)}
        assert stats["samples_learned"] == 4 * PER_CLASS + 1
        # slda's paper keeps no replay memory, and the default store is the paper's.
        assert stats["store"]["kind"] is None and stats["store"]["items"] == 0
        assert 0.0 < stats["prequential"]["accuracy"] <= 1.0
