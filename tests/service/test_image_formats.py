"""Images as users have them: GIF and TIFF (first frame), base64 data URLs, and images too
large, each refused with edgecl's one sentence naming the size, the limit and the setting
(never Pillow's own text); nothing is learned from a refused request."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.bootstrap import build_runtime
from tests.service.conftest import make_settings, png, stats_counts

LEFT, RIGHT = [[255, 0], [0, 0]], [[0, 255], [0, 0]]


def encoded(frames: list[Image.Image], fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=len(frames) > 1, append_images=frames[1:], **options)
    return buf.getvalue()


def gray(pixels: list[list[int]]) -> Image.Image:
    return Image.fromarray(np.array(pixels, dtype=np.uint8), mode="L")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's header)."""
    raw = png([[0]])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return raw[:8] + chunk + raw[8 + 25 :]


def taught(client: TestClient) -> TestClient:
    body = {"samples": [{"image": b64(png(LEFT)), "label": "left"}]}
    body["samples"].append({"image": b64(png(RIGHT)), "label": "right"})
    assert client.post("/learn", json=body).status_code == 200
    return client


def predicted(client: TestClient, image: str) -> Any:
    response = client.post("/predict", json={"samples": [{"image": image}]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["label"]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [("GIF", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"})],
)
def test_gif_and_tiff_take_their_first_frame(
    client: TestClient, fmt: str, options: dict[str, Any]
) -> None:
    taught(client)
    # Two frames: the first looks like "left", the second like "right".
    image = encoded([gray(LEFT), gray(RIGHT)], fmt, **options)
    assert predicted(client, b64(image)) == "left"
    image = encoded([gray(RIGHT), gray(LEFT)], fmt, **options)
    assert predicted(client, b64(image)) == "right"
    # Learned from a multipart upload too.
    files = [("file", (f"x.{fmt.lower()}", image, f"image/{fmt.lower()}"))]
    assert client.post("/learn", files=files, data={"label": "right"}).status_code == 200


def test_data_url_is_taken_when_it_holds_an_image(client: TestClient) -> None:
    taught(client)
    assert predicted(client, "data:image/png;base64," + b64(png(LEFT))) == "left"
    # The media type is the client's word; the bytes say what the image is.
    assert predicted(client, "DATA:image/jpeg;base64," + b64(png(RIGHT))) == "right"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            "data:text/plain;base64," + b64(png(LEFT)),
            "samples[0].image: image is a data URL of type 'text/plain', not an image",
        ),
        ("data:image/png," + b64(png(LEFT)), "samples[0].image: image is a data URL without"),
        ("data:image/png;base64", "samples[0].image: image is a data URL without a comma"),
        ("data:image/png;base64,@@@", "samples[0].image: image is not valid base64"),
    ],
)
def test_bad_data_url_is_refused(client: TestClient, image: str, message: str) -> None:
    taught(client)
    before = stats_counts(client)
    response = client.post("/learn", json={"samples": [{"image": image, "label": "x"}]})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(message)
    assert stats_counts(client) == before


@pytest.fixture(scope="module")
def image_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """A daemon on the shipped int8 image backbone, with the default decode budget."""
    settings = make_settings(
        backbone="onnx",
        backbone_dir=Path(tmp_path_factory.mktemp("backbone")),
        backbone_threads=1,
        store={"kind": None},
    )
    with TestClient(create_app(settings, build_runtime(settings, durable=False))) as client:
        yield client


def jpeg(width: int, height: int) -> bytes:
    return encoded([Image.new("L", (width, height), 128)], "JPEG", quality=50)


LIMITS = (
    "a JPEG is decoded reduced, up to 40000000 pixels, other formats whole, "
    "up to EDGECL_DECODE_PIXELS = 4000000"
)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            png_claiming(20000, 20000),  # past Pillow's own guard: it would answer first
            "image of 20000x20000 = 400000000 pixels is over the limit of 4000000 pixels for "
            f"a PNG image: {LIMITS}",
        ),
        (
            jpeg(8000, 6000),
            "image of 8000x6000 = 48000000 pixels is over the limit of 40000000 pixels for a "
            f"JPEG image: {LIMITS}",
        ),
        (
            encoded([Image.new("P", (3000, 2000))], "GIF"),
            "image of 3000x2000 = 6000000 pixels is over the limit of 4000000 pixels for a "
            f"GIF image: {LIMITS}",
        ),
        (
            encoded([Image.new("RGB", (2500, 2000))], "TIFF", compression="tiff_lzw"),
            "image of 2500x2000 = 5000000 pixels is over the limit of 4000000 pixels for a "
            f"TIFF image: {LIMITS}",
        ),
    ],
    ids=["png-bomb", "jpeg", "gif", "tiff"],
)
def test_every_image_too_large_gets_one_sentence(
    image_client: TestClient, image: bytes, message: str
) -> None:
    before = stats_counts(image_client)
    files = [("file", ("big", image, "application/octet-stream"))]
    response = image_client.post("/learn", files=files, data={"label": "big"})
    assert response.status_code == 422
    assert response.json()["detail"] == f"samples[0]: {message}"
    assert "bomb" not in response.text
    assert stats_counts(image_client) == before


def test_large_palette_and_16_bit_images_are_reduced(image_client: TestClient) -> None:
    """Palette (GIF, PNG) and 16-bit TIFF images larger than the backbone's input are
    reduced while decoded, which Pillow only does for RGB-like modes."""
    ramp = np.tile(np.arange(600, dtype=np.uint16) * 100, (500, 1))
    images = {
        "gif": encoded([Image.new("P", (900, 700), 3)], "GIF"),
        "png": encoded([Image.new("P", (900, 700), 3)], "PNG"),
        "tiff": encoded(
            [
                Image.fromarray(
                    ramp,
                )
            ],
            "TIFF",
        ),
        "webp": encoded([Image.new("RGB", (500, 500), (9, 9, 9))], "WEBP"),
    }
    files = [("file", (name, data, "application/octet-stream")) for name, data in images.items()]
    response = image_client.post("/learn", files=files, data={"label": "flat"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 4


def test_a_grayscale_image_embeds_as_its_rgb_copy(image_client: TestClient) -> None:
    """Grayscale images are resized before they are widened to RGB (a third of the work):
    a grayscale PNG gets exactly the scores of the same picture saved as RGB."""
    rng = np.random.default_rng(3)
    pictures = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(3)]
    teach = [
        {"image": base64.b64encode(encoded([Image.fromarray(p)], "PNG")).decode(),
         "label": f"p{i}"}
        for i, p in enumerate(pictures)
    ]  # fmt: skip
    assert image_client.post("/learn", json={"samples": teach}).status_code == 200
    asked = {}
    for mode in ("L", "RGB"):
        image = Image.fromarray(pictures[0]).convert(mode)
        data = base64.b64encode(encoded([image], "PNG")).decode()
        body = {"samples": [{"image": data}], "top_k": 3}
        reply = image_client.post("/predict", json=body)
        assert reply.status_code == 200, reply.text
        asked[mode] = reply.json()["predictions"][0]
    assert asked["L"]["top_k"] == asked["RGB"]["top_k"]
