"""Image decoding, validation, resizing and normalisation (edgecl.backbones.preprocess)."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgecl.backbones.preprocess import (
    DEFAULT_MAX_PIXELS,
    check_image,
    decode_image,
    resize,
    to_tensor,
    to_uint8,
)

MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]


def encode(img: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return buf.getvalue()


def gradient(h: int = 12, w: int = 16) -> np.ndarray[Any, np.dtype[np.uint8]]:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 20, xx * 15, (yy + xx) * 8], axis=-1).astype(np.uint8)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` (a decompression bomb's header)."""
    raw = encode(Image.new("L", (1, 1)), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return raw[:8] + chunk + raw[8 + 25 :]


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("WEBP", {"lossless": True}),
        ("JPEG", {"quality": 100, "subsampling": 0}),
    ],
)
def test_decodes_each_supported_format_to_rgb(fmt: str, options: dict[str, Any]) -> None:
    pixels = gradient()
    out = decode_image(encode(Image.fromarray(pixels), fmt, **options))
    assert out.dtype == np.uint8 and out.shape == (12, 16, 3)
    tolerance = 8 if fmt == "JPEG" else 0
    assert np.abs(out.astype(int) - pixels.astype(int)).max() <= tolerance


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "1"])
def test_decodes_other_modes_to_rgb(mode: str) -> None:
    img = Image.fromarray(gradient()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image(encode(img, fmt))
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8


def test_grayscale_bytes_become_equal_rgb_channels() -> None:
    out = decode_image(encode(Image.fromarray(gradient()[:, :, 0]), "PNG"))
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 0], out[:, :, 2])


def test_exif_orientation_is_applied() -> None:
    img = Image.fromarray(gradient(12, 16))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    out = decode_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.shape == (16, 12, 3)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "image bytes are empty"),
        (b"definitely not an image", "cannot decode image bytes"),
        (encode(Image.new("RGB", (64, 64), "red"), "PNG")[:60], "cannot decode image bytes"),
        (encode(Image.new("RGB", (64, 64), "red"), "JPEG")[:200], "cannot decode image bytes"),
        (encode(Image.new("RGB", (4, 4)), "ICO"), "cannot decode image bytes"),
        (png_claiming(8000, 8000), "over the limit"),
        # Past Pillow's own guard too: the same sentence, not Pillow's.
        (png_claiming(100_000, 100_000), "100000x100000 = 10000000000 pixels is over the limit"),
        (png_claiming(0, 10), "cannot decode image bytes"),
    ],
    ids=[
        "empty",
        "garbage",
        "truncated-png",
        "truncated-jpeg",
        "ico",
        "bomb",
        "huge-bomb",
        "zero-width",
    ],
)
def test_bad_bytes_raise_a_clear_value_error(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_image(data)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_gif_and_tiff_decode_to_rgb(fmt: str) -> None:
    img = Image.new("RGB", (6, 4), (200, 10, 10))
    out = decode_image(encode(img.convert("P") if fmt == "GIF" else img, fmt))
    assert out.shape == (4, 6, 3) and out[0, 0, 0] > 150


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (20, 20)), "PNG")
    assert decode_image(data, max_pixels=400).shape == (20, 20, 3)
    with pytest.raises(ValueError, match="400 pixels is over the limit of 399"):
        decode_image(data, max_pixels=399)
    with pytest.raises(ValueError, match="over the limit"):
        check_image(np.zeros((20, 20), np.uint8), max_pixels=399)
    assert DEFAULT_MAX_PIXELS >= 12_000_000  # a 12 MP phone photo passes by default


def test_non_bytes_are_refused_by_decode() -> None:
    with pytest.raises(ValueError, match="expected image bytes, got str"):
        decode_image("cat.jpg")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((0, 5), np.uint8), "zero size"),
        (np.zeros((5, 0, 3), np.uint8), "zero size"),
        (np.zeros((4, 4), np.int64), "dtype int64 is not supported"),
        (np.zeros((4, 4), np.bool_), "dtype bool is not supported"),
        (np.zeros((4, 4), np.complex64), "dtype complex64 is not supported"),
        (np.array([["a"]]), "dtype <U1 is not supported"),
        (np.zeros(5, np.uint8), "not HxW, HxWx1 or HxWx3"),
        (np.zeros((2, 4, 4, 3), np.uint8), "not HxW, HxWx1 or HxWx3"),
        (np.zeros((4, 4, 2), np.uint8), "not HxW, HxWx1 or HxWx3"),
        (np.zeros((4, 4, 4), np.uint8), "not HxW, HxWx1 or HxWx3"),
        (np.full((4, 4), 1.5, np.float32), r"must lie in \[0, 1\]"),
        (np.full((4, 4), -0.1, np.float64), r"must lie in \[0, 1\]"),
        (np.full((4, 4), np.nan, np.float32), "NaN or infinite"),
    ],
    ids=[
        "zero-height",
        "zero-width",
        "int64",
        "bool",
        "complex",
        "str",
        "rank1",
        "rank4",
        "2-channels",
        "4-channels",
        "float>1",
        "float<0",
        "nan",
    ],
)
def test_bad_arrays_raise_a_clear_value_error(image: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_image(image)
    with pytest.raises(ValueError, match="^image 0: .*" + message):
        to_tensor([image], 8, MEAN, STD)


def test_bad_batches_raise_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="batch is empty"):
        to_tensor([], 8, MEAN, STD)
    with pytest.raises(ValueError, match="wrap a single image in a list"):
        to_tensor(b"\x89PNG", 8, MEAN, STD)
    with pytest.raises(ValueError, match=r"is not \(N,H,W\)"):
        to_tensor(np.zeros((4, 4), np.uint8), 8, MEAN, STD)
    with pytest.raises(ValueError, match="image 2: cannot decode"):
        ok = encode(Image.new("L", (4, 4)), "PNG")
        to_tensor([ok, ok, b"junk"], 8, MEAN, STD)
    with pytest.raises(ValueError, match="image 7: "):
        to_tensor([b"junk"], 8, MEAN, STD, index_offset=7)
    with pytest.raises(ValueError, match="unknown resize policy"):
        to_tensor([np.zeros((4, 4), np.uint8)], 8, MEAN, STD, policy="squash")
    with pytest.raises(ValueError, match="3 values each"):
        to_tensor([np.zeros((4, 4), np.uint8)], 8, [0.5], STD)


def test_normalisation_and_layout() -> None:
    batch = np.zeros((2, 4, 4, 3), np.uint8)
    batch[:, :, :, 0] = 255
    batch[:, :, :, 1] = 128
    t = to_tensor(batch, 4, MEAN, STD)
    assert t.dtype == np.float32 and t.shape == (2, 3, 4, 4) and t.flags.c_contiguous
    assert np.allclose(t[:, 0], (1.0 - 0.5) / 0.25, atol=1e-5)
    assert np.allclose(t[:, 1], (128 / 255 - 0.5) / 0.25, atol=1e-5)
    assert np.allclose(t[:, 2], -2.0, atol=1e-5)


def test_all_layouts_and_float_images_agree() -> None:
    gray = gradient()[:, :, 0]
    as_hw = to_tensor(gray[None], 8, MEAN, STD)
    as_hw1 = to_tensor(gray[None, :, :, None], 8, MEAN, STD)
    as_rgb = to_tensor(np.repeat(gray[None, :, :, None], 3, axis=3), 8, MEAN, STD)
    as_float = to_tensor([gray.astype(np.float64) / 255.0], 8, MEAN, STD)
    as_png = to_tensor([encode(Image.fromarray(gray), "PNG")], 8, MEAN, STD)
    for other in (as_hw1, as_rgb, as_float, as_png):
        assert np.array_equal(as_hw, other)


@pytest.mark.parametrize("policy", ["stretch", "pad", "center-crop"])
@pytest.mark.parametrize("shape", [(9, 14), (6, 6)])  # resized, or only widened to RGB
def test_grayscale_gives_the_pixels_of_its_rgb_copy(policy: str, shape: tuple[int, int]) -> None:
    gray = gradient(*shape)[:, :, :1]
    rgb = np.repeat(gray, 3, axis=2)
    out = to_uint8([gray, rgb], 6, policy, fill=(9, 9, 9))
    assert out.shape == (2, 6, 6, 3) and np.array_equal(out[0], out[1])
    assert np.array_equal(out[0, :, :, 0], out[0, :, :, 2])


def test_images_of_different_sizes_form_one_batch() -> None:
    t = to_tensor(
        [gradient(12, 16), gradient(30, 7)[:, :, :1], gradient(5, 5)[:, :, 0]], 10, MEAN, STD
    )
    assert t.shape == (3, 3, 10, 10)


def test_resize_policies_keep_or_drop_the_borders() -> None:
    wide = np.full((10, 40, 3), 200, np.uint8)
    stretched = resize(wide, 20, "stretch")
    assert stretched.shape == (20, 20, 3) and (stretched == 200).all()
    padded = resize(wide, 20, "pad", fill=(7, 7, 7))
    assert padded.shape == (20, 20, 3)
    assert (padded[0] == 7).all() and (padded[-1] == 7).all() and (padded[10] == 200).all()
    cropped = resize(
        np.concatenate([np.zeros((10, 10, 3), np.uint8), wide], axis=1), 20, "center-crop"
    )
    assert cropped.shape == (20, 20, 3) and (cropped == 200).all()
    tall = resize(np.zeros((50, 10, 1), np.uint8), (8, 6), "pad")
    assert tall.shape == (8, 6, 1)


def test_pad_fills_with_the_mean_so_borders_normalise_to_zero() -> None:
    t = to_tensor([np.full((10, 40), 255, np.uint8)], 20, MEAN, STD, policy="pad")
    assert np.allclose(t[0, :, 0, :], (128 / 255 - 0.5) / 0.25, atol=1e-5)  # fill 128


def test_inputs_are_not_modified() -> None:
    batch = gradient()[None].copy()
    before = batch.copy()
    to_tensor(batch, 8, MEAN, STD)
    assert np.array_equal(batch, before)
