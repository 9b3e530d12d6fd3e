"""Through the daemon on the shipped int8 backbone: after a few Fashion-MNIST classes are
taught from images, held-out images of those classes are mostly accepted as known (the
fitted threshold accepts 95% of held-back known samples) and images of other things —
photographs most of all, handwritten digits and untaught clothes less often — come back
``unknown: true``."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from edgecl.datasets import load_fixture
from service.app import create_app
from service.bootstrap import build_runtime
from tests.service.conftest import make_settings, png

TAUGHT = (1, 7, 8)  # trouser, sneaker, bag
PHOTOS = Path(__file__).parents[2] / "edgecl/data/calibration"


def encode(image: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(png(image.tolist())).decode()


def digits(n: int) -> list[str]:
    from sklearn.datasets import load_digits

    images = load_digits().images[:n]  # 8x8, 0..16
    return [encode((im * 255 / 16).astype(np.uint8).repeat(4, 0).repeat(4, 1)) for im in images]


def photos() -> list[str]:
    out = []
    for path in sorted(PHOTOS.glob("*.jpg")):
        buf = io.BytesIO()
        Image.open(path).convert("RGB").resize((224, 224)).save(buf, format="PNG")
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def unknown_rate(client: TestClient, images: list[str]) -> float:
    flags = []
    for start in range(0, len(images), 32):
        body = {"samples": [{"image": im} for im in images[start : start + 32]]}
        reply = client.post("/predict", json=body)
        assert reply.status_code == 200, reply.text
        flags += [p["unknown"] for p in reply.json()["predictions"]]
    return float(np.mean(flags))


def test_things_never_taught_come_back_unknown(tmp_path: Path) -> None:
    train, test = load_fixture()
    settings = make_settings(
        backbone="onnx",
        backbone_dir=tmp_path / "backbone",
        backbone_threads=1,
        strategy={"name": "slda"},
        store={"kind": None},
        probe_share=0.2,
        probe_every=40,
    )
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        idx = np.flatnonzero(np.isin(train.labels, TAUGHT))
        rng = np.random.default_rng(0)
        rng.shuffle(idx)
        for start in range(0, len(idx), 32):
            part = idx[start : start + 32]
            samples = [
                {"image": encode(train.images[i]), "label": f"c{train.labels[i]}"} for i in part
            ]
            assert client.post("/learn", json={"samples": samples}).status_code == 200
        calibration = client.get("/stats").json()["calibration"]
        assert calibration["status"] == "fitted", calibration
        assert calibration["in_use"] is not None and calibration["acceptance"] == 0.95

        known = [encode(test.images[i]) for i in np.flatnonzero(np.isin(test.labels, TAUGHT))]
        other = [encode(test.images[i]) for i in np.flatnonzero(~np.isin(test.labels, TAUGHT))]
        rates = {
            "known": unknown_rate(client, known),
            "other clothes": unknown_rate(client, other[:150]),
            "digits": unknown_rate(client, digits(150)),
            "photos": unknown_rate(client, photos()),
        }
        # The threshold accepts 95% of held-back known samples: few known test images
        # may exceed it (a small held-back set: allow for its spread). Photographs are far
        # from clothes on a plain ground; blocky 8x8 digits and untaught clothes are
        # nearer, but flagged far more often than the known classes (measured when
        # written: known 0.02, other clothes 0.34, digits 0.59, photos 1.00).
        assert rates["known"] <= 0.15, rates
        assert rates["photos"] >= 0.9, rates
        assert rates["digits"] >= 0.4 and rates["other clothes"] >= 0.2, rates
        # A request's own threshold wins: above every novelty, nothing is unknown.
        body = {"samples": [{"image": known[0]}, {"image": digits(1)[0]}], "threshold": 1e12}
        reply = client.post("/predict", json=body).json()
        assert reply["threshold"] == 1e12
        assert [p["unknown"] for p in reply["predictions"]] == [False, False]
