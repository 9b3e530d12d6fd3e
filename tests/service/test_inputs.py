"""Embedder: every input form reaches the backbone as it expects; errors name the sample."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from edgecl.types import FloatArray, State
from service.bootstrap import make_embedder
from service.errors import SampleError
from service.inputs import Embedder, SampleInput
from service.settings import Settings
from tests.service.conftest import png


class MeanRGB:
    """An image backbone stand-in: the mean of each channel of HxWxC uint8 images."""

    latent_shape: tuple[int, ...] = (3,)

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def embed(self, x: np.ndarray[Any, Any]) -> FloatArray:
        self.batches.append(tuple(x.shape))
        rgb = np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x
        out: FloatArray = rgb.mean(axis=(1, 2)).astype(np.float32)
        return out

    def spec(self) -> State:
        return {"kind": "test"}


def image_embedder() -> tuple[Embedder, MeanRGB]:
    backbone = MeanRGB()
    return Embedder(backbone, "image"), backbone


def test_image_forms_are_decoded_and_batched_by_shape() -> None:
    embedder, backbone = image_embedder()
    samples = [
        SampleInput("image", png([[255, 255], [255, 255]])),  # decoded to RGB
        SampleInput("array", np.full((2, 2), 255)),  # JSON integers become uint8
        SampleInput("array", np.full((3, 3, 3), 0.5)),  # float in [0, 1]
        SampleInput("features", np.array([1.0, 2.0, 3.0])),  # bypasses the backbone
        SampleInput("image", png([[0, 0], [0, 0]])),
    ]
    z = embedder.embed(samples)
    np.testing.assert_allclose(z[[0, 1, 4], 0], [255.0, 255.0, 0.0])
    np.testing.assert_allclose(z[2], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(z[3], [1.0, 2.0, 3.0])
    # The two decoded PNGs went through the backbone together.
    assert sorted(backbone.batches) == [(1, 2, 2, 1), (1, 3, 3, 3), (2, 2, 2, 3)]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (SampleInput("image", b"GIF89a nope"), "samples[1]: cannot decode image bytes"),
        (SampleInput("array", np.full((2, 2), 300)), "samples[1]: integer pixel values"),
        (SampleInput("array", np.zeros((2, 2, 2))), "samples[1]: image of shape (2, 2, 2)"),
        (SampleInput("array", np.full((2, 2), 1.5)), "samples[1]: float image values"),
        (SampleInput("features", np.zeros(4)), "samples[1]: latent dimension mismatch"),
        (SampleInput("features", np.array([1e300, 0, 0])), "samples[1]: values overflow"),
    ],
)
def test_bad_samples_name_their_index(bad: SampleInput, message: str) -> None:
    embedder, _ = image_embedder()
    with pytest.raises(SampleError) as info:
        embedder.embed([SampleInput("features", np.zeros(3)), bad])
    assert str(info.value).startswith(message)
    assert info.value.index == 1


class Slow(MeanRGB):
    """A stand-in that counts the runs under way at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0
        self.lock = threading.Lock()

    def embed(self, x: np.ndarray[Any, Any]) -> FloatArray:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(0.02)
        with self.lock:
            self.now -= 1
        return super().embed(x)


def test_without_a_batcher_at_most_max_runs_requests_run_the_backbone_at_once() -> None:
    """Each run holds its own activations: without embed batching, memory would grow with
    the requests that embed at once."""
    backbone = Slow()
    embedder = Embedder(backbone, "image", max_runs=2)
    image = [SampleInput("image", png([[9, 9], [9, 9]]))]
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda _: embedder.embed(image), range(16)))
    assert backbone.most == 2 and len(backbone.batches) == 16
    assert all(float(z[0, 0]) == 9.0 for z in out)
    with pytest.raises(ValueError, match="max_runs"):
        Embedder(backbone, "image", max_runs=0)


def test_the_daemon_without_embed_batching_runs_embed_lanes_requests_at_once() -> None:
    settings = Settings(backbone="identity", embed_batching=False, embed_lanes=3)
    backbone = Slow()
    embedder = make_embedder(settings, backbone, "image")
    assert embedder.batcher is None
    image = [SampleInput("image", png([[9, 9], [9, 9]]))]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: embedder.embed(image), range(16)))
    assert backbone.most == 3
