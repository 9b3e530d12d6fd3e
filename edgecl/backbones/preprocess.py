"""Images (encoded bytes or arrays) to normalised model input tensors.

Accepted images: JPEG/PNG/BMP/WebP bytes, and arrays ``HxW``, ``HxWx1``, ``HxWx3`` of
``uint8`` (0..255) or float (0..1). Grayscale becomes RGB, the image is resized to the model
input by a policy, then normalised per channel. Anything else is a ``ValueError`` that says
what was wrong, before any work is done on the batch.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFile, ImageOps

from edgecl.types import FloatArray

ResizePolicy = Literal["stretch", "pad", "center-crop"]
RESIZE_POLICIES: tuple[str, ...] = ("stretch", "pad", "center-crop")
#: Larger images are refused (decompression bombs); 40 MP covers phone cameras.
DEFAULT_MAX_PIXELS = 40_000_000
#: What Pillow may open (the first frame of a GIF or TIFF is taken).
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "GIF", "TIFF")
FORMAT_NAMES = "JPEG, PNG, BMP, WebP, GIF or TIFF"
UInt8Image = npt.NDArray[np.uint8]


def _check_size(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"image has zero size ({height}x{width})")
    if height * width > max_pixels:
        raise ValueError(
            f"image of {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels} pixels"
        )


@contextmanager
def opened_image(data: object) -> Iterator[tuple[Image.Image, str]]:
    """Image bytes opened (the header read, no pixel decoded) by Pillow, with the sentence
    to raise if decoding fails; ``ValueError`` with a sentence when they are not an image
    of :data:`FORMATS`. Pillow's pixel limits are left to the callers' own."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"expected image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError("image bytes are empty")
    undecodable = f"cannot decode image bytes ({len(data)} bytes); expected {FORMAT_NAMES}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=FORMATS)
        except Image.DecompressionBombError:
            # Pillow's own guard (past about 180 MP) answers before ours could: open the
            # header without it, so that the caller refuses the image in its own words.
            img = _unguarded(bytes(data), undecodable)
        except (OSError, SyntaxError, ValueError):
            raise ValueError(undecodable) from None
    with img:
        yield img, undecodable


def _unguarded(data: bytes, undecodable: str) -> ImageFile.ImageFile:
    """The image opened as ``Image.open`` does, less Pillow's pixel limit (only called
    once ``Image.open`` has registered the formats' openers)."""
    for name in FORMATS:
        factory, accept = Image.OPEN.get(name, (None, None))
        if factory is not None and (accept is None or accept(data[:16]) is True):
            try:
                return factory(io.BytesIO(data), "")
            except (OSError, SyntaxError, ValueError, IndexError, TypeError):
                continue
    raise ValueError(undecodable)


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> UInt8Image:
    """Decode JPEG/PNG/BMP/WebP/GIF/TIFF bytes to an RGB ``uint8`` array ``(H, W, 3)``.

    The size is checked from the header, before the pixels are decoded.

    >>> buf = io.BytesIO()
    >>> Image.new("L", (4, 2), 200).save(buf, format="PNG")
    >>> decode_image(buf.getvalue()).shape
    (2, 4, 3)
    >>> decode_image(b"not an image")
    Traceback (most recent call last):
    ...
    ValueError: cannot decode image bytes (12 bytes); expected JPEG, PNG, BMP, WebP, GIF or TIFF
    """
    with opened_image(data) as (img, undecodable):
        _check_size(img.height, img.width, max_pixels)
        try:
            img.load()
            rgb = ImageOps.exif_transpose(img).convert("RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"{undecodable}: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)


def check_image(image: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> npt.NDArray[Any]:
    """Validate one image array (``HxW``, ``HxWx1`` or ``HxWx3``; uint8 or float in [0, 1]).

    Returns it as ``HxWxC`` (C is 1 or 3), unchanged in dtype.

    >>> check_image(np.zeros((2, 3), dtype=np.uint8)).shape
    (2, 3, 1)
    >>> check_image(np.zeros((2, 3), dtype=np.int64))
    Traceback (most recent call last):
    ...
    ValueError: image dtype int64 is not supported; give uint8 (0..255) or float (0..1)
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8 and arr.dtype.kind != "f":
        raise ValueError(
            f"image dtype {arr.dtype} is not supported; give uint8 (0..255) or float (0..1)"
        )
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ValueError(
            f"image of shape {tuple(arr.shape)} is not HxW, HxWx1 or HxWx3 (channels last)"
        )
    _check_size(arr.shape[0], arr.shape[1], max_pixels)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)):
            raise ValueError("float image contains NaN or infinite values")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise ValueError(
                f"float image values must lie in [0, 1], got [{arr.min():g}, {arr.max():g}]"
            )
    return arr


def _to_uint8(arr: npt.NDArray[Any]) -> UInt8Image:
    if arr.dtype == np.uint8:
        return cast(UInt8Image, arr)
    return np.rint(arr * 255.0).astype(np.uint8)


def _target(size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    return h, w


def resize(
    image: UInt8Image,
    size: int | Sequence[int],
    policy: str = "center-crop",
    fill: Sequence[int] = (0, 0, 0),
) -> UInt8Image:
    """Resize ``HxWxC`` uint8 to the target ``(h, w)`` with a policy.

    ``stretch`` ignores the aspect ratio; ``pad`` fits the whole image and fills the borders
    with ``fill`` (letterbox); ``center-crop`` fills the target and cuts the overflow.

    >>> img = np.zeros((10, 20, 3), dtype=np.uint8)
    >>> [resize(img, 8, p).shape for p in ("stretch", "pad", "center-crop")]
    [(8, 8, 3), (8, 8, 3), (8, 8, 3)]
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; choose one of {RESIZE_POLICIES}")
    th, tw = _target(size)
    h, w, c = image.shape
    pil = Image.fromarray(image[:, :, 0] if c == 1 else image)
    bilinear = Image.Resampling.BILINEAR
    if (h, w) == (th, tw):
        out = pil
    elif policy == "pad" and h * tw != w * th:
        scale = min(th / h, tw / w)
        nh, nw = min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))
        colour: int | tuple[int, ...] = fill[0] if c == 1 else tuple(fill[:3])
        out = Image.new(pil.mode, (tw, th), colour)
        out.paste(pil.resize((nw, nh), bilinear), ((tw - nw) // 2, (th - nh) // 2))
    elif policy == "center-crop" and h * tw != w * th:
        # Resample only the centred source box of the target's aspect ratio (one pass).
        if w * th > h * tw:
            half = h * tw / th / 2
            box = (w / 2 - half, 0.0, w / 2 + half, float(h))
        else:
            half = w * th / tw / 2
            box = (0.0, h / 2 - half, float(w), h / 2 + half)
        out = pil.resize((tw, th), bilinear, box=box)
    else:
        out = pil.resize((tw, th), bilinear)
    arr = np.asarray(out, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def _images(images: Any, max_pixels: int, offset: int) -> list[npt.NDArray[Any]]:
    """Split a batch into validated ``HxWxC`` images (bytes are decoded)."""
    if isinstance(images, (bytes, bytearray, memoryview)):
        raise ValueError("expected a batch of images; wrap a single image in a list")
    if isinstance(images, np.ndarray):
        if images.ndim not in (3, 4):
            raise ValueError(
                f"image batch of shape {tuple(images.shape)} is not (N,H,W), (N,H,W,1) or (N,H,W,3)"
            )
        items: Sequence[Any] = list(images)
    elif isinstance(images, Sequence) and not isinstance(images, str):
        items = images
    else:
        raise ValueError(f"expected a batch of images, got {type(images).__name__}")
    if len(items) == 0:
        raise ValueError("the batch is empty; give at least one image")
    out = []
    for i, item in enumerate(items):
        try:
            if isinstance(item, (bytes, bytearray, memoryview)):
                out.append(decode_image(bytes(item), max_pixels=max_pixels))
            else:
                out.append(check_image(item, max_pixels=max_pixels))
        except ValueError as exc:
            raise ValueError(f"image {offset + i}: {exc}") from None
    return out


def to_uint8(
    images: Any,
    size: int | Sequence[int],
    policy: str = "center-crop",
    fill: Sequence[int] = (0, 0, 0),
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    index_offset: int = 0,
) -> npt.NDArray[np.uint8]:
    """A batch of images resized to ``(N, h, w, 3)`` uint8: what a backbone sees, before
    normalisation (raw-image replay stores exactly this).

    >>> to_uint8(np.zeros((2, 28, 28), dtype=np.uint8), 32).shape
    (2, 32, 32, 3)
    """
    if policy not in RESIZE_POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; choose one of {RESIZE_POLICIES}")
    th, tw = _target(size)
    checked = _images(images, max_pixels, index_offset)
    batch = np.empty((len(checked), th, tw, 3), dtype=np.uint8)
    for i, img in enumerate(checked):
        # Resizing grayscale before widening to RGB does a third of the work; an image
        # already of the target size (prepared before) is only widened.
        img = _to_uint8(img)
        img = img if img.shape[:2] == (th, tw) else resize(img, (th, tw), policy, fill)
        if img.shape[2] == 1:  # a plane at a time: broadcasting 1 to 3 channels is 5x slower
            batch[i, :, :, 0] = batch[i, :, :, 1] = batch[i, :, :, 2] = img[:, :, 0]
        else:
            batch[i] = img
    return batch


def to_tensor(
    images: Any,
    size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    policy: str = "center-crop",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    index_offset: int = 0,
) -> FloatArray:
    """A batch of images to a normalised float32 tensor ``(N, 3, h, w)``.

    ``images``: an array ``(N,H,W)``, ``(N,H,W,1)`` or ``(N,H,W,3)``, or a sequence of single
    images (arrays of any size, or encoded bytes). ``mean``/``std`` are per channel, on the
    0..1 scale: ``out = (pixel / 255 - mean) / std``. Float images are rounded to 8 bits
    before resizing. ``index_offset`` shifts the image numbers in error messages (for callers
    that split a batch).

    >>> batch = np.full((2, 28, 28), 255, dtype=np.uint8)
    >>> t = to_tensor(batch, 32, mean=[0.5] * 3, std=[0.5] * 3)
    >>> t.shape, float(t.min()), float(t.max())
    ((2, 3, 32, 32), 1.0, 1.0)
    """
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    if m.shape != (3,) or s.shape != (3,) or np.any(s <= 0):
        raise ValueError("mean and std must have 3 values each, std > 0")
    batch = to_uint8(
        images,
        size,
        policy,
        pad_fill(m),
        max_pixels=max_pixels,
        index_offset=index_offset,
    )
    # Channels-first before the float maths: numpy is slow on a last axis of length 3.
    out = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)
    out *= (1.0 / (255.0 * s))[None, :, None, None]
    out -= (m / s)[None, :, None, None]
    return out


def pad_fill(mean: Sequence[float] | FloatArray) -> tuple[int, ...]:
    """The border colour of ``pad``: the normalisation mean, so borders normalise to 0."""
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    return tuple(int(v) for v in np.clip(np.rint(m * 255.0), 0, 255))
